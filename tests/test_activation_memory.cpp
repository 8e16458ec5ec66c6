// The arena size formula (model/activation_memory.h) against the arena's measured peak over a
// training step, for each activation checkpointing mode, dense and mixture-of-experts.
#include <gtest/gtest.h>

#include "core/buffer_pool.h"
#include "model/activation_memory.h"
#include "model/qwen3vl.h"
#include "model_test_utils.h"

namespace qv {
namespace {

model::ModelConfig midsize_config() {
  model::ModelConfig c = testing::tiny_config();
  c.text.vocab_size = 2048;
  c.text.hidden_size = 128;
  c.text.intermediate_size = 256;
  c.text.num_layers = 4;
  c.text.head_dim = 32;
  c.vision.hidden_size = 64;
  c.vision.intermediate_size = 128;
  c.vision.out_hidden_size = 128;
  c.vision.depth = 6;  // deep enough that vision checkpointing changes the total
  c.vision.deepstack_visual_indexes = {1, 3};
  c.image_token_id = 2000;
  c.video_token_id = 2001;
  c.vision_start_token_id = 2002;
  c.vision_end_token_id = 2003;
  return c;
}

// The same with every decoder layer sparse: 8 experts of 128, 2 per token.
model::ModelConfig midsize_moe_config() {
  model::ModelConfig c = midsize_config();
  c.text.num_experts = 8;
  c.text.num_experts_per_tok = 2;
  c.text.moe_intermediate_size = 128;
  c.text.decoder_sparse_step = 1;
  return c;
}

// "[moe/]MODE" or "[moe/]selective:OPTION" (selective_ac_option).
class ArenaFormula : public ::testing::TestWithParam<const char*> {
 protected:
  bool moe() const { return std::string(GetParam()).rfind("moe/", 0) == 0; }
  std::string param() const { return std::string(GetParam()).substr(moe() ? 4 : 0); }
  std::string mode() const {
    const std::string p = param();
    return p.substr(0, p.find(':'));
  }
  std::string option() const {
    const std::string p = param();
    return p.find(':') == std::string::npos ? "2" : p.substr(p.find(':') + 1);
  }
};

TEST_P(ArenaFormula, PredictsTheMeasuredPeak) {
  const model::ModelConfig c = moe() ? midsize_moe_config() : midsize_config();
  model::Qwen3VLModel model(c);
  model::init_params(c, model.store(), 5);
  model::ModelInputs in;
  in.batch = 2;
  in.seq = 384;
  const model::Grid grid{1, 16, 16};  // 256 patches, 64 merged tokens
  for (int64_t b = 0; b < in.batch; ++b) {
    std::vector<int64_t> row = {1, 2, 3};
    testing::append_vision(row, c, grid.patches() / c.vision.merge_unit());
    while (static_cast<int64_t>(row.size()) < in.seq) row.push_back(4 + row.size() % 1500);
    in.input_ids.insert(in.input_ids.end(), row.begin(), row.end());
    in.image_grids.push_back(grid);
  }
  in.labels = in.input_ids;
  in.pixel_values = testing::random_pixels(2 * grid.patches(), c.vision.patch_dim(), 3);
  model::ForwardOptions opt;
  opt.backward = true;
  opt.checkpointing = model::Checkpointing::parse(mode(), option());
  opt.classifier_chunk = 128;

  BufferPool& pool = BufferPool::instance();
  pool.end_step();
  const int64_t base = pool.stats().in_use_bytes;
  pool.reset_peaks();
  model.store().zero_grads();
  const auto r = model.forward(in, opt);
  model.backward();
  const int64_t measured = pool.stats().peak_in_use_bytes - base;

  model::StepShape shape;
  shape.tokens = in.tokens();
  shape.loss_tokens = r.kept_tokens;
  shape.patches = 2 * grid.patches();
  shape.checkpointing = opt.checkpointing;
  shape.classifier_chunk = opt.classifier_chunk;
  const int64_t formula = model::activation_arena_bytes(c, shape).total();
  const double ratio = static_cast<double>(measured) / static_cast<double>(formula);
  EXPECT_GT(ratio, 0.85) << "measured " << measured << " B, formula " << formula << " B";
  EXPECT_LT(ratio, 1.15) << "measured " << measured << " B, formula " << formula << " B";
}

INSTANTIATE_TEST_SUITE_P(ActivationCheckpoint, ArenaFormula,
                         ::testing::Values("none", "selective", "selective:3", "selective:op",
                                           "full", "moe/none", "moe/selective", "moe/full"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '/' || ch == ':') ch = '_';
                           return n;
                         });

}  // namespace
}  // namespace qv
