// Memory operations between and on devices. The device an op runs on is the calling thread's
// current device (core/device.h: current_device(), DeviceScope): every op in
// src/kernels/<family>.h runs there, and the pointers it is given must live there.
#pragma once
#include <cstddef>

#include "core/device.h"

namespace qv::kernels {

// Copies `bytes` from src on src_device to dst on dst_device (host <-> device, device <->
// device, host <-> host); returns when the copy is complete.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);

// Sets `bytes` bytes at p (on the current device) to zero.
void zero_bytes(void* p, size_t bytes);

}  // namespace qv::kernels
