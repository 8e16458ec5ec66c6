// Golden tests: the model against Hugging Face transformers' own Qwen3-VL outputs
// (tests/fixtures/hf-tiny-*, produced from the same weights and inputs).
#include <gtest/gtest.h>

#include "golden_compare.h"

namespace qv {
namespace {

using testing::run_golden;

TEST(Golden, TinyImageMatchesHuggingFace) {
  run_golden("hf-tiny-image");
}
TEST(Golden, TinyTextMatchesHuggingFace) {
  run_golden("hf-tiny-text");
}
// Mixture of experts (qwen3_vl_moe): sparse layers 0 and 2, dense layer 1 (mlp_only_layers);
// also compares aux_loss and loss_with_aux (HF's load-balancing loss).
TEST(Golden, TinyMoeMatchesHuggingFace) {
  run_golden("hf-tiny-moe");
}

}  // namespace
}  // namespace qv
