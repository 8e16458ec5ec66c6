// Where a forward pass reports its intermediate tensors under Hugging Face fixture names (the
// golden tests and `qwen3vl forward` compare them with transformers' own). Every stage calls the
// recorder unconditionally; a default-constructed one does nothing and builds no name or shape,
// so a training step that records nothing allocates nothing.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <span>
#include <string>

#include "core/tensor.h"

namespace qv::model {

class Recorder {
 public:
  using Sink = std::function<void(const std::string& name, Tensor tensor)>;
  Recorder() = default;  // records nothing
  explicit Recorder(Sink sink, std::string prefix = "")
      : sink_(std::move(sink)), prefix_(std::move(prefix)) {}

  // Records into `map` (ForwardResult::recorded), which must outlive the recorder.
  static Recorder into(std::map<std::string, Tensor>& map) {
    return Recorder([&map](const std::string& name, Tensor t) { map[name] = std::move(t); });
  }

  bool enabled() const { return static_cast<bool>(sink_); }
  // The same sink with `prefix` put before every name (e.g. "debug.image.").
  Recorder under(const char* prefix) const {
    return enabled() ? Recorder(sink_, prefix_ + prefix) : Recorder();
  }
  // name -> float values of the given shape.
  void operator()(const char* name, std::span<const float> values,
                  std::initializer_list<int64_t> shape) const {
    if (enabled()) sink_(prefix_ + name, Tensor::from_f32(values, Shape(shape)));
  }
  // "name.index" -> values (per-layer tensors: "layer_input.3").
  void operator()(const char* name, int64_t index, std::span<const float> values,
                  std::initializer_list<int64_t> shape) const {
    if (enabled())
      sink_(prefix_ + name + "." + std::to_string(index), Tensor::from_f32(values, Shape(shape)));
  }
  // A tensor made only when recording (make is not called otherwise).
  template <typename Make>
  void tensor(const char* name, Make&& make) const {
    if (enabled()) sink_(prefix_ + name, make());
  }

 private:
  Sink sink_;
  std::string prefix_;
};

}  // namespace qv::model
