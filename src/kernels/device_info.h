// What this binary and machine offer beyond the host, for the commands and the communicator
// (which see only neutral headers): whether the CUDA backend is built in, how many GPUs there
// are and why none, a device's description and peak rates, per-device memory statistics for the
// step line, and the native stream that GPU collectives (NCCL) enqueue on.
#pragma once
#include <cstdint>
#include <string>

#include "core/device.h"

namespace qv::kernels {

// Whether this binary has the CUDA backend (QWEN3VL_HAS_CUDA).
bool cuda_built();
// Usable GPUs: 0 without the backend, the driver or a device. Never throws.
int cuda_device_count();
// Why cuda_device_count() is 0: "this binary was built without the CUDA backend ..." or
// "no CUDA device (<the driver's reason>)"; empty when there is a GPU.
std::string cuda_unavailable_reason();

// "cpu", or "cuda:0 NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB)".
std::string describe_device(Device device);
// The bf16 dense tensor-core peak of a known GPU in TFLOP/s (0 unknown, and for the CPU).
double bf16_dense_peak_tflops(Device device);

// Device memory through the backend's allocator (zeros for the CPU): bytes handed out now,
// held from the driver, and the most handed out at once.
struct DeviceMemory {
  int64_t allocated = 0, reserved = 0, peak = 0;
};
DeviceMemory device_memory(Device device);
// "mem cuda:0 alloc 1.23 GiB reserved 2.00 GiB peak 1.80 GiB"; empty for the CPU.
std::string format_device_memory(Device device);

// Waits until the current device has finished the work issued to it (ops on a GPU return
// before they finish; timing needs this). Nothing to wait for on the CPU.
void synchronize_device();

// The current GPU's cudaStream_t, as void*: the stream every op of that GPU runs on.
void* cuda_native_stream();

}  // namespace qv::kernels
