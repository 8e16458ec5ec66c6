// The activation arena's size by formula: what a training step keeps from forward for backward
// plus the largest transient on top of it, from the model config and the batch shape alone.
// `qwen3vl bench train` prints it next to the arena's measured peak; docs/PERFORMANCE.md states it.
#pragma once
#include <cstdint>

#include "model/activation_checkpoint.h"
#include "model/config.h"

namespace qv::model {

struct StepShape {
  int64_t tokens = 0;           // batch x seq
  int64_t loss_tokens = 0;      // tokens with a target (rows of the classifier)
  int64_t patches = 0;          // vision patches of the batch (all images together)
  Checkpointing checkpointing;  // default: none
  int64_t classifier_chunk = 256;
};

struct ActivationBytes {
  int64_t decoder_saved = 0;  // decoder layers' saved activations
  int64_t vision_saved = 0;   // vision blocks, mergers and position tables
  int64_t other_saved = 0;    // final norm, its gradient, rotary tables, positions
  int64_t transient = 0;      // the larger of the classifier chunk and one layer's backward
  int64_t total() const { return decoder_saved + vision_saved + other_saved + transient; }
};

ActivationBytes activation_arena_bytes(const ModelConfig& config, const StepShape& shape);

}  // namespace qv::model
