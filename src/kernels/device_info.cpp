// kernels/device_info.h: answered by kernels/cuda/runtime.h when the backend is built.
#include "kernels/device_info.h"

#include "core/error.h"
#if QWEN3VL_HAS_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace qv::kernels {

#if QWEN3VL_HAS_CUDA
bool cuda_built() {
  return true;
}
int cuda_device_count() {
  return cuda::device_count();
}
std::string cuda_unavailable_reason() {
  return cuda::unavailable_reason();
}

std::string describe_device(Device device) {
  if (!device.is_cuda()) return to_string(device);
  return to_string(device) + " " + cuda::describe_device(device.index);
}

double bf16_dense_peak_tflops(Device device) {
  return !device.is_cuda() ? 0 : cuda::bf16_dense_peak_tflops(device.index);
}

DeviceMemory device_memory(Device device) {
  if (!device.is_cuda() || cuda::device_count() == 0) return {};
  const cuda::MemoryStats s = cuda::memory_stats(device.index);
  return {s.allocated, s.reserved, s.peak};
}

std::string format_device_memory(Device device) {
  if (!device.is_cuda()) return "";
  const DeviceMemory m = device_memory(device);
  return to_string(device) + " " + cuda::format_memory({m.allocated, m.reserved, m.peak});
}

void* cuda_native_stream() {
  return cuda::stream();
}

void synchronize_device() {
  if (current_device().is_cuda()) cuda::synchronize();
}
#else
namespace {
constexpr const char* kNotBuilt =
    "this binary was built without the CUDA backend (build with the CUDA toolkit, "
    "-DQWEN3VL_CUDA=ON)";
}  // namespace

bool cuda_built() {
  return false;
}
int cuda_device_count() {
  return 0;
}
std::string cuda_unavailable_reason() {
  return kNotBuilt;
}
std::string describe_device(Device device) {
  QV_CHECK(!device.is_cuda(), "device ", to_string(device), ": ", kNotBuilt);
  return to_string(device);
}
double bf16_dense_peak_tflops(Device) {
  return 0;
}
DeviceMemory device_memory(Device) {
  return {};
}
std::string format_device_memory(Device) {
  return "";
}
void* cuda_native_stream() {
  fail(kNotBuilt);
}
void synchronize_device() {}
#endif

}  // namespace qv::kernels
