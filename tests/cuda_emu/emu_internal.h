// CUDA emulator (tests/cuda_emu, docs/CUDA.md): what its implementation files share, not seen by
// the emulated code: the sticky launch error and the checks of device pointers and streams.
#pragma once
#include <cuda_runtime.h>

namespace qvemu {

// The error cudaGetLastError() returns next (launch failures are reported this way).
void set_last_error(cudaError_t err);
// Whether [p, p + bytes) lies inside one live device allocation (or pinned host block when
// pinned_ok); bytes == 0 accepts the one-past-the-end pointer.
bool valid_range(const void* p, size_t bytes, bool pinned_ok);
// The device a stream belongs to (nullptr: the current device's default stream), or -1 when the
// handle is not a live stream.
int stream_device(cudaStream_t s);
int current_device();

}  // namespace qvemu
