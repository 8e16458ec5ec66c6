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

#include "core/device.h"
#include "core/error.h"
#include "core/tensor.h"
#include "kernels/device.h"

namespace qv::model {

class Recorder {
 public:
  using Sink = std::function<void(const std::string& name, Tensor tensor)>;
  Recorder() = default;  // records nothing
  // `device`: where the activations given to operator() live (they are copied to the host
  // through kernels::copy_bytes off the CPU).
  explicit Recorder(Sink sink, std::string prefix = "", Device device = kCpuDevice)
      : sink_(std::move(sink)), prefix_(std::move(prefix)), device_(device) {}

  // Records into `map` (ForwardResult::recorded), which must outlive the recorder.
  static Recorder into(std::map<std::string, Tensor>& map, Device device = kCpuDevice) {
    return Recorder([&map](const std::string& name, Tensor t) { map[name] = std::move(t); }, "",
                    device);
  }

  bool enabled() const { return static_cast<bool>(sink_); }
  // The same sink with `prefix` put before every name (e.g. "debug.image.").
  Recorder under(const char* prefix) const {
    return enabled() ? Recorder(sink_, prefix_ + prefix, device_) : Recorder();
  }
  // name -> float values of the given shape: an activation on the recorder's device.
  void operator()(const char* name, std::span<const float> values,
                  std::initializer_list<int64_t> shape) const {
    if (enabled()) sink_(prefix_ + name, to_host(values, device_, shape));
  }
  // "name.index" -> values (per-layer tensors: "layer_input.3").
  void operator()(const char* name, int64_t index, std::span<const float> values,
                  std::initializer_list<int64_t> shape) const {
    if (enabled())
      sink_(prefix_ + name + "." + std::to_string(index), to_host(values, device_, shape));
  }
  // name -> float values host code computed (a host array whatever the device).
  void host(const char* name, std::span<const float> values,
            std::initializer_list<int64_t> shape) const {
    if (enabled()) sink_(prefix_ + name, to_host(values, kCpuDevice, shape));
  }
  // A tensor made only when recording (make is not called otherwise).
  template <typename Make>
  void tensor(const char* name, Make&& make) const {
    if (enabled()) sink_(prefix_ + name, make());
  }

 private:
  static Tensor to_host(std::span<const float> values, Device from,
                        std::initializer_list<int64_t> shape) {
    if (from.is_cpu()) return Tensor::from_f32(values, Shape(shape));
    Tensor t(DType::kF32, Shape(shape));
    QV_CHECK(t.numel() == static_cast<int64_t>(values.size()), "recorder: ", values.size(),
             " values for a tensor of ", t.numel());
    kernels::copy_bytes(t.raw(), kCpuDevice, values.data(), from, t.nbytes());
    return t;
  }
  Sink sink_;
  std::string prefix_;
  Device device_ = kCpuDevice;
};

}  // namespace qv::model
