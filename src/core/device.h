// Where memory lives and kernels run: the host CPU or a CUDA GPU. A closed set; each kind has one
// backend folder under src/kernels/ and one Allocator (core/allocator.h).
#pragma once
#include <string>
#include <string_view>

namespace qv {

enum class DeviceKind { kCpu, kCuda };

struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int index = 0;  // which GPU; 0 for the CPU

  bool operator==(const Device&) const = default;
  bool is_cpu() const { return kind == DeviceKind::kCpu; }
};

inline constexpr Device kCpuDevice{};

// "cpu", "cuda" (= cuda:0) or "cuda:N". Throws qv::Error naming the text otherwise.
Device parse_device(std::string_view text);

// "cpu" or "cuda:N".
std::string to_string(Device device);

// The calling thread's current device: where the ops of src/kernels run and where new buffers
// are allocated. Chosen by the code that owns the memory (the trainer, the generator) with a
// DeviceScope around its work; the default is the CPU, so code that never opens a scope runs on
// the host.
Device current_device();

// Makes `device` current on this thread until the scope ends (scopes nest).
class DeviceScope {
 public:
  explicit DeviceScope(Device device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  Device previous_;
};

}  // namespace qv
