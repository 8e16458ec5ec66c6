// The mixture-of-experts model (qwen3_vl_moe) beyond the golden fixture: config parsing and
// export, parameter counts, sharded bf16 checkpoints, the load-balancing loss's gradient,
// activation checkpointing and incremental decoding.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "model/hf_weights.h"
#include "model/inputs_io.h"
#include "model/qwen3vl.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
const std::string kMoe = std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/hf-tiny-moe";

model::ModelConfig moe_config() {
  return model::ModelConfig::from_json_file(kMoe + "/config.json");
}

TEST(MoeConfig, FixtureConfigParses) {
  const auto c = moe_config();
  EXPECT_EQ(c.text.num_experts, 4);
  EXPECT_EQ(c.text.num_experts_per_tok, 2);
  EXPECT_EQ(c.text.moe_intermediate_size, 48);
  EXPECT_TRUE(c.text.norm_topk_prob);
  EXPECT_EQ(c.text.mlp_only_layers, std::vector<int64_t>{1});
  EXPECT_DOUBLE_EQ(c.text.router_aux_loss_coef, 0.001);
  EXPECT_TRUE(c.text.is_sparse_layer(0));
  EXPECT_FALSE(c.text.is_sparse_layer(1));
  EXPECT_TRUE(c.text.is_sparse_layer(2));
  model::Qwen3VLModel m(c);
  EXPECT_NE(m.store().find("model.language_model.layers.0.mlp.experts.gate_up_proj"), nullptr);
  EXPECT_EQ(m.store().find("model.language_model.layers.0.mlp.experts.gate_up_proj")->shape,
            (Shape{4, 64, 96}));
  EXPECT_EQ(m.store().find("model.language_model.layers.2.mlp.experts.down_proj")->shape,
            (Shape{4, 48, 64}));
  EXPECT_NE(m.store().find("model.language_model.layers.1.mlp.gate_proj.weight"), nullptr);
  EXPECT_EQ(m.store().find("model.language_model.layers.1.mlp.gate.weight"), nullptr);
}

TEST(MoeConfig, DecoderSparseStepSelectsLayers) {
  auto c = moe_config();
  c.text.decoder_sparse_step = 2;
  c.text.mlp_only_layers = {};
  EXPECT_FALSE(c.text.is_sparse_layer(0));  // (l + 1) % 2 == 0: layers 1, 3, ...
  EXPECT_TRUE(c.text.is_sparse_layer(1));
  EXPECT_FALSE(c.text.is_sparse_layer(2));
  EXPECT_EQ(c.text.sparse_layers(), 1);
}

TEST(MoeConfig, JsonRoundTripKeepsTheMoeFields) {
  for (const std::string& name : {std::string("debugmodel_moe"), std::string("30B-A3B")}) {
    const auto c = model::ModelConfig::flavor(name);
    const std::string text = c.to_json_text();
    const auto j = nlohmann::json::parse(text);
    EXPECT_EQ(j["model_type"], "qwen3_vl_moe");
    EXPECT_EQ(j["architectures"][0], "Qwen3VLMoeForConditionalGeneration");
    EXPECT_EQ(j["text_config"]["num_experts"], c.text.num_experts);
    const auto back = model::ModelConfig::from_json_text(text, name);
    EXPECT_EQ(back.to_json_text(), text);
  }
  // The fixture's own config survives a round trip field by field.
  const auto c = moe_config();
  const auto back = model::ModelConfig::from_json_text(c.to_json_text(), "fixture");
  EXPECT_EQ(back.text.mlp_only_layers, c.text.mlp_only_layers);
  EXPECT_EQ(back.text.moe_intermediate_size, c.text.moe_intermediate_size);
}

TEST(MoeConfig, BadMoeFieldsAreNamed) {
  const std::string base = io::read_file(kMoe + "/config.json");
  const auto with = [&](const std::string& from, const std::string& to) {
    std::string s = base;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  const auto expect_error = [](const std::string& text, const std::string& words) {
    try {
      model::ModelConfig::from_json_text(text, "cfg.json");
      FAIL() << "accepted: " << words;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  expect_error(with("\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 5"),
               "num_experts_per_tok");
  expect_error(with("\"mlp_only_layers\": [\n      1\n    ]", "\"mlp_only_layers\": [7]"),
               "mlp_only_layers");
  expect_error(with("\"decoder_sparse_step\": 1", "\"decoder_sparse_step\": 0"),
               "decoder_sparse_step");
  expect_error(with("\"num_experts\": 4", "\"num_experts\": \"four\""), "num_experts");
  expect_error(with("\"qwen3_vl_moe\",\n  \"text", "\"qwen3_moe\",\n  \"text"), "model_type");
}

// Total = every parameter in the layout; active = total minus the experts a token skips.
TEST(MoeConfig, ParamCountsMatchLayout) {
  for (const std::string& name : {std::string("fixture"), std::string("debugmodel_moe")}) {
    const auto c = name == "fixture" ? moe_config() : model::ModelConfig::flavor(name);
    model::Qwen3VLModel m(c);
    int64_t total = 0;
    for (const auto& e : m.store().entries()) total += e.ref.numel;
    const auto n = model::count_params(c);
    EXPECT_EQ(n.total(), total) << name;
    const auto& t = c.text;
    EXPECT_EQ(n.inactive_experts, t.sparse_layers() * (t.num_experts - t.num_experts_per_tok) * 3 *
                                      t.hidden_size * t.moe_intermediate_size)
        << name;
  }
}

TEST(MoeWeights, ShardedBf16ExportLoadsBackWithHfNames) {
  auto m = model::Qwen3VLModel::from_pretrained(kMoe);
  const fs::path dir = fs::temp_directory_path() / "qwen3vl_moe_export";
  fs::remove_all(dir);
  model::save_hf_checkpoint(dir.string(), m->config(), m->store(), DType::kBF16, 256 << 10);
  const auto index =
      nlohmann::json::parse(io::read_file((dir / "model.safetensors.index.json").string()));
  EXPECT_TRUE(index["weight_map"].contains("model.language_model.layers.0.mlp.experts.down_proj"));
  EXPECT_TRUE(index["weight_map"].contains("model.language_model.layers.2.mlp.gate.weight"));
  auto back = model::Qwen3VLModel::from_pretrained(dir.string());
  EXPECT_TRUE(back->config().text.is_moe());
  ASSERT_EQ(back->store().total(), m->store().total());
  for (int64_t i = 0; i < m->store().total(); ++i) {
    const float want = to_float(to_bf16(m->store().values()[i]));
    ASSERT_EQ(back->store().values()[i], want) << i;
  }
  fs::remove_all(dir);
}

model::ModelInputs fixture_inputs() {
  return model::load_inputs(kMoe + "/inputs.safetensors");
}

double aux_at(model::Qwen3VLModel& m, const model::ModelInputs& in) {
  return m.forward(in).aux_loss;
}

// The load-balancing loss's gradient (coef x d aux / d theta, the difference between training
// with and without it) against central differences of aux_loss. Routing stays fixed: a step of
// 1e-3 in one router weight moves a router probability by at most ~3e-4, below the fixture's
// smallest top-k margin (2.2e-3). Float forward noise in aux (~1e-7) over 2h gives ~5e-5.
TEST(MoeModel, AuxLossGradientMatchesFiniteDifferences) {
  auto m = model::Qwen3VLModel::from_pretrained(kMoe);
  const auto in = fixture_inputs();
  const double coef = 1.0;
  std::vector<float> grads[2];
  for (int with = 0; with < 2; ++with) {
    model::ForwardOptions o;
    o.backward = true;
    o.router_aux_loss_coef = with ? coef : 0.0;
    m->store().zero_grads();
    m->forward(in, o);
    m->backward();
    grads[with] = m->store().grads().to_vector();
  }
  int checked = 0;
  for (const char* name : {"model.language_model.layers.0.mlp.gate.weight",
                           "model.language_model.layers.2.mlp.gate.weight",
                           "model.language_model.layers.0.mlp.experts.gate_up_proj"}) {
    const model::ParamEntry* e = m->store().find(name);
    ASSERT_NE(e, nullptr);
    // The five entries with the largest aux gradient.
    std::vector<int64_t> idx(e->ref.numel);
    for (int64_t i = 0; i < e->ref.numel; ++i) idx[i] = i;
    auto aux_grad = [&](int64_t i) {
      return (grads[1][e->ref.offset + i] - grads[0][e->ref.offset + i]) / coef;
    };
    std::partial_sort(idx.begin(), idx.begin() + 5, idx.end(), [&](int64_t a, int64_t b) {
      return std::fabs(aux_grad(a)) > std::fabs(aux_grad(b));
    });
    for (int k = 0; k < 5; ++k) {
      float* w = m->store().value(e->ref) + idx[k];
      const float w0 = *w, h = 1e-3f;
      *w = w0 + h;
      const double up = aux_at(*m, in);
      *w = w0 - h;
      const double down = aux_at(*m, in);
      *w = w0;
      const double numeric = (up - down) / (2.0 * h);
      EXPECT_NEAR(aux_grad(idx[k]), numeric, 1e-4 + 2e-2 * std::fabs(numeric))
          << name << "[" << idx[k] << "]";
      ++checked;
    }
    EXPECT_GT(std::fabs(aux_grad(idx[0])), 1e-3) << name << ": the aux term reached it";
  }
  EXPECT_EQ(checked, 15);
}

TEST(MoeModel, ActivationCheckpointingGivesIdenticalGradients) {
  auto m = model::Qwen3VLModel::from_pretrained(kMoe);
  const auto in = fixture_inputs();
  std::vector<float> reference;
  for (const char* mode : {"none", "selective", "full"}) {
    model::ForwardOptions o;
    o.backward = true;
    o.checkpointing = model::Checkpointing::parse(mode, "2");
    o.router_aux_loss_coef = 0.01;
    m->store().zero_grads();
    m->forward(in, o);
    m->backward();
    if (reference.empty()) {
      reference = m->store().grads().to_vector();
      continue;
    }
    EXPECT_EQ(m->store().grads().to_vector(), reference) << mode;
  }
}

TEST(MoeModel, IncrementalDecodeMatchesFullForward) {
  auto m = model::Qwen3VLModel::from_pretrained(kMoe);
  model::ModelInputs prompt = fixture_inputs();
  prompt.labels.clear();
  prompt.attention_mask.clear();  // batch of one, no padding
  model::ModelInputs full = prompt;
  const std::vector<int64_t> extra = {40, 41, 42};
  full.input_ids.insert(full.input_ids.end(), extra.begin(), extra.end());
  full.seq += 3;
  model::ForwardOptions o;
  o.want_logits = true;
  const auto ref = m->forward(full, o);
  model::KvCache cache;
  o.kv_cache = &cache;
  m->forward(prompt, o);
  const int64_t V = m->config().text.vocab_size;
  for (size_t i = 0; i < extra.size(); ++i) {
    const auto logits = m->decode(extra[i], cache);
    const float* want = ref.logits.data<float>() + (prompt.seq + i) * V;
    double diff = 0;
    for (int64_t v = 0; v < V; ++v) diff = std::max(diff, std::fabs(double(logits[v]) - want[v]));
    EXPECT_LT(diff, 1e-5) << "token " << i;
  }
}

}  // namespace
}  // namespace qv
