// Where a forward pass reports its intermediate tensors under Hugging Face fixture names (the
// golden tests and `qwen3vl forward` compare them with transformers' own). Every stage calls the
// recorder unconditionally; a default-constructed one does nothing and builds no name or shape,
// so a training step that records nothing allocates nothing. Activations (DeviceBuffer) are
// copied out of their device's memory; spans are host memory.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <span>
#include <string>

#include "core/error.h"
#include "core/tensor.h"
#include "kernels/device.h"
#include "kernels/device_buffer.h"

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
  // The same for activations, on whichever device they are: copied to the host tensor
  // (kernels::copy_bytes), never read by host code in place.
  void operator()(const char* name, const DeviceBuffer<float>& values,
                  std::initializer_list<int64_t> shape) const {
    if (enabled()) sink_(prefix_ + name, to_host(values, Shape(shape)));
  }
  void operator()(const char* name, int64_t index, const DeviceBuffer<float>& values,
                  std::initializer_list<int64_t> shape) const {
    if (enabled())
      sink_(prefix_ + name + "." + std::to_string(index), to_host(values, Shape(shape)));
  }
  // A tensor made only when recording (make is not called otherwise).
  template <typename Make>
  void tensor(const char* name, Make&& make) const {
    if (enabled()) sink_(prefix_ + name, make());
  }

 private:
  static Tensor to_host(const DeviceBuffer<float>& values, Shape shape) {
    QV_CHECK(static_cast<int64_t>(values.size()) == numel(shape), "recorder: ", values.size(),
             " values for shape ", shape_str(shape));
    Tensor t(DType::kF32, std::move(shape));
    kernels::copy_bytes(t.raw(), kCpuDevice, values.data(), values.device(), t.nbytes());
    return t;
  }

  Sink sink_;
  std::string prefix_;
};

}  // namespace qv::model
