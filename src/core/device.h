// Where memory lives and kernels run: the host CPU, a CUDA GPU, or guarded host memory (a test
// device). A closed set; each kind has one backend folder under src/kernels/ and one Allocator
// (core/allocator.h).
#pragma once
#include <string>
#include <string_view>

namespace qv {

// kGuarded: host memory that host code cannot touch outside the ops of src/kernels, which run
// the CPU kernels over it (kernels/guarded/guard.h). It stands in for a GPU on a machine without
// one: a test runs the model there, and every place where model code would read or write device
// memory from the host faults instead (tests/guard_census.h records them). Not a production
// device: parse_device does not accept it.
enum class DeviceKind { kCpu, kCuda, kGuarded };

struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int index = 0;  // which GPU; 0 for the CPU

  bool operator==(const Device&) const = default;
  // Whether host code may touch this device's memory directly (only the CPU's).
  bool is_cpu() const { return kind == DeviceKind::kCpu; }
  bool is_cuda() const { return kind == DeviceKind::kCuda; }
};

inline constexpr Device kCpuDevice{};

// "cpu", "cuda" (= cuda:0) or "cuda:N". Throws qv::Error naming the text otherwise.
Device parse_device(std::string_view text);

// "cpu", "cuda:N" or "guarded".
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
