#include "model/activation_checkpoint.h"

#include "core/error.h"

namespace qv::model {

Checkpointing Checkpointing::parse(const std::string& mode, const std::string& option) {
  Checkpointing c;
  if (mode == "none") return c;
  if (mode == "full") {
    c.mode_ = Mode::kFull;
    return c;
  }
  QV_CHECK(mode == "selective", "activation_checkpoint mode '", mode,
           "' is not one of: none, selective, full");
  if (option == "op") {
    c.mode_ = Mode::kSelectiveOp;
    return c;
  }
  bool digits = !option.empty() && option.size() <= 9;
  for (char ch : option) digits = digits && ch >= '0' && ch <= '9';
  QV_CHECK(digits, "activation_checkpoint.selective_ac_option '", option,
           "' is neither 'op' nor a layer interval (a non-negative integer)");
  c.mode_ = Mode::kSelectiveLayer;
  c.every_ = std::stoll(option);
  return c;
}

// torchtitan's _apply_layer_sac increments a counter before each block it wraps and checkpoints
// the block when the counter is a multiple of the interval: with "2", layers 1, 3, 5, ...
//
// Per-op ("op"): torchtitan wraps every decoder layer with a policy that saves the outputs of
// matrix products (all but every second one) and attention, and recomputes the rest (norms,
// rotary, SwiGLU, residual adds). Our layers have one explicit forward and backward each; a
// layer is either kept or rebuilt from its input, so "op" rebuilds every decoder layer (the
// memory of "full", not op's middle ground; the extra compute is one layer forward, as "full").
bool Checkpointing::decoder_layer(int64_t l) const {
  switch (mode_) {
    case Mode::kNone:
      return false;
    case Mode::kFull:
    case Mode::kSelectiveOp:
      return true;
    case Mode::kSelectiveLayer:
      return nth(l + 1);
  }
  return false;
}

// The vision tower: torchtitan calls apply_ac(model.visual, ...) without a save list, so per-op
// mode saves nothing inside a block and recomputes all of it: a whole-block recompute, exactly
// what "op" does here. Layer mode continues the decoder's count.
bool Checkpointing::vision_block(int64_t b, int64_t decoder_layers) const {
  switch (mode_) {
    case Mode::kNone:
      return false;
    case Mode::kFull:
    case Mode::kSelectiveOp:
      return true;
    case Mode::kSelectiveLayer:
      return nth(decoder_layers + b + 1);
  }
  return false;
}

}  // namespace qv::model
