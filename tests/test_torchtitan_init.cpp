// torchtitan's initialisation from scratch ([model] init = "torchtitan", model/params.cpp) checked
// by the statistics of the tensors it fills: each parameter kind's mean and standard deviation
// within sampling error of torchtitan's rule (written out again here from torchtitan's source,
// independently of params.cpp), truncation bounds held, and the same values for the same seed.
// Also which layers activation checkpointing picks (model/activation_checkpoint.h).
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/error.h"
#include "model/activation_checkpoint.h"
#include "model/qwen3vl.h"
#include "model_test_utils.h"

namespace qv {
namespace {

model::ModelConfig config(bool tied) {
  model::ModelConfig c = testing::tiny_config();
  c.text.vocab_size = 2048;
  c.text.hidden_size = 128;
  c.text.intermediate_size = 256;
  c.text.num_layers = 4;
  c.text.head_dim = 32;
  c.vision.out_hidden_size = 128;
  c.tie_word_embeddings = tied;
  c.image_token_id = 2000;
  c.video_token_id = 2001;
  c.vision_start_token_id = 2002;
  c.vision_end_token_id = 2003;
  return c;
}

// The standard deviation of N(0, s) truncated to [-c s, c s].
double truncated_std(double s, double c) {
  const double phi = std::exp(-0.5 * c * c) / std::sqrt(2 * M_PI);
  const double mass = std::erf(c / std::sqrt(2.0));
  return s * std::sqrt(1 - 2 * c * phi / mass);
}

struct Expected {
  double std;    // of the distribution sampled (before truncation)
  double bound;  // |w| <= bound (infinity: none)
};

// torchtitan's rule for a parameter, by HF name (see the sources cited in model/params.cpp).
Expected expected(const model::ModelConfig& c, const std::string& name) {
  const double inf = std::numeric_limits<double>::infinity();
  const double out = 1 / std::sqrt(static_cast<double>(c.text.hidden_size));
  if (name.rfind("model.visual.", 0) == 0) return {0.02, 2};
  if (name == "lm_head.weight") return {out, 3 * out};
  if (name == "model.language_model.embed_tokens.weight")
    return c.tie_word_embeddings ? Expected{out, 3 * out} : Expected{1, inf};
  const std::string prefix = "model.language_model.layers.";
  const int layer = std::stoi(name.substr(prefix.size()));
  const bool first =
      name.find("q_proj") != std::string::npos || name.find("k_proj") != std::string::npos ||
      name.find("v_proj") != std::string::npos || name.find("gate_proj") != std::string::npos;
  return {first ? 0.02 : 0.02 / std::sqrt(2.0 * (layer + 1)), 2};
}

void check_statistics(bool tied) {
  const model::ModelConfig c = config(tied);
  model::Qwen3VLModel m(c);
  model::init_params(c, m.store(), 7, model::InitScheme::kTorchtitan);
  int checked = 0;
  for (const model::ParamEntry& e : m.store().entries()) {
    const float* w = m.store().value(e.ref);
    const int64_t n = e.ref.numel;
    if (!e.is_matrix) {
      const float want = e.is_norm_weight ? 1.0f : 0.0f;
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(w[i], want) << e.name;
      continue;
    }
    const Expected x = expected(c, e.name);
    double sum = 0, sq = 0, max_abs = 0;
    for (int64_t i = 0; i < n; ++i) {
      sum += w[i];
      sq += static_cast<double>(w[i]) * w[i];
      max_abs = std::max(max_abs, std::fabs(static_cast<double>(w[i])));
    }
    const double mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
    const double sigma = std::isinf(x.bound) ? x.std : truncated_std(x.std, x.bound / x.std);
    // Sampling error: the mean's standard error is sigma / sqrt(n); the sample standard
    // deviation's is at most sigma / sqrt(2 n) (a normal's; truncation only lowers it). 5 of
    // them: a false failure has odds below 1e-6 per tensor.
    EXPECT_LT(std::fabs(mean), 5 * sigma / std::sqrt(n)) << e.name;
    EXPECT_LT(std::fabs(sd - sigma), 5 * sigma / std::sqrt(2.0 * n)) << e.name << " n " << n;
    EXPECT_LE(max_abs, static_cast<float>(x.bound)) << e.name;
    if (x.bound / x.std < 4 && n > 10000) {
      // A +-3 std truncation that held: without it, 0.27% of n values would lie outside, and
      // the largest in n >= 10^4 draws is beyond 2.5 std.
      EXPECT_GT(max_abs, 2.5 * x.std) << e.name;
    }
    if (std::isinf(x.bound) && n > 10000) {
      EXPECT_GT(max_abs, 3 * x.std) << e.name;  // not cut
    }
    ++checked;
  }
  EXPECT_GT(checked, 20);
}

TEST(TorchtitanInit, StatisticsPerParameterKindUntied) {
  check_statistics(false);
}
TEST(TorchtitanInit, StatisticsPerParameterKindTied) {
  check_statistics(true);
}

TEST(TorchtitanInit, DeterministicForASeed) {
  const model::ModelConfig c = config(false);
  model::Qwen3VLModel a(c), b(c), d(c);
  model::init_params(c, a.store(), 11, model::InitScheme::kTorchtitan);
  model::init_params(c, b.store(), 11, model::InitScheme::kTorchtitan);
  model::init_params(c, d.store(), 12, model::InitScheme::kTorchtitan);
  EXPECT_EQ(a.store().values().to_vector(), b.store().values().to_vector());
  EXPECT_NE(a.store().values().to_vector(), d.store().values().to_vector());
}

TEST(TorchtitanInit, SchemeNames) {
  EXPECT_EQ(model::parse_init_scheme("hf"), model::InitScheme::kHf);
  EXPECT_EQ(model::parse_init_scheme("torchtitan"), model::InitScheme::kTorchtitan);
  EXPECT_THROW(model::parse_init_scheme("xavier"), Error);
}

// torchtitan's _apply_layer_sac counts blocks from 1 across the decoder and then the vision
// tower, checkpointing the multiples of the interval; "op" recomputes every vision block (no
// save list for the tower) and, here, every decoder layer.
TEST(Checkpointing, LayersPickedAsTorchtitan) {
  using model::Checkpointing;
  const int64_t L = 5, depth = 3;
  auto picked = [&](const char* mode, const char* option) {
    const Checkpointing ac = Checkpointing::parse(mode, option);
    std::string s;
    for (int64_t l = 0; l < L; ++l) s += ac.decoder_layer(l) ? '1' : '0';
    s += '|';
    for (int64_t b = 0; b < depth; ++b) s += ac.vision_block(b, L) ? '1' : '0';
    return s;
  };
  EXPECT_EQ(picked("none", "2"), "00000|000");
  EXPECT_EQ(picked("full", "2"), "11111|111");
  EXPECT_EQ(picked("selective", "2"), "01010|101");  // counts 2, 4 | 6, 8
  EXPECT_EQ(picked("selective", "3"), "00100|100");  // counts 3 | 6
  EXPECT_EQ(picked("selective", "1"), "11111|111");
  EXPECT_EQ(picked("selective", "0"), "11111|111");  // torchtitan: `not ac_freq` wraps all
  EXPECT_EQ(picked("selective", "op"), "11111|111");
  EXPECT_THROW(Checkpointing::parse("selective", "two"), Error);
  EXPECT_THROW(Checkpointing::parse("selective", "-1"), Error);
  EXPECT_THROW(Checkpointing::parse("some", "2"), Error);
}

}  // namespace
}  // namespace qv
