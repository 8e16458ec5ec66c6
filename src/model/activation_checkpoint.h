// Which decoder layers and vision blocks activation checkpointing drops after forward and
// recomputes in backward. The choice follows torchtitan's apply_ac
// (torchtitan/distributed/activation_checkpoint.py, as the qwen3_vl experiment at 4c2285389
// calls it from infra/parallelize.py): the decoder's layers first, then the vision tower's
// blocks, counted together. docs/COMPATIBILITY.md says where per-op mode differs.
#pragma once
#include <cstdint>
#include <string>

namespace qv::model {

class Checkpointing {
 public:
  enum class Mode {
    kNone,
    kFull,            // every decoder layer and vision block keeps only its input
    kSelectiveLayer,  // every n-th layer / block, counted as torchtitan does
    kSelectiveOp,     // torchtitan's per-op option; see decoder_layer()
  };
  // mode: "none" | "selective" | "full"; selective_option: a layer interval ("2") or "op".
  // Errors name the bad value.
  static Checkpointing parse(const std::string& mode, const std::string& selective_option);

  Mode mode() const { return mode_; }
  // Whether decoder layer l (0-based) is recomputed in backward.
  bool decoder_layer(int64_t l) const;
  // Whether vision block b is recomputed; decoder_layers: the decoder's layer count, as
  // torchtitan's layer counter runs on from the decoder into the vision tower.
  bool vision_block(int64_t b, int64_t decoder_layers) const;

 private:
  bool nth(int64_t count) const { return every_ == 0 || count % every_ == 0; }
  Mode mode_ = Mode::kNone;
  int64_t every_ = 0;  // kSelectiveLayer: the interval (0 = every layer, as torchtitan)
};

}  // namespace qv::model
