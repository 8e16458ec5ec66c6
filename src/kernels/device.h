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

// Copies `bytes` from src to dst, both on the current device, in order with its ops (on a GPU
// it returns before the copy is done, like an op). The ranges must not overlap.
void copy_on_device(void* dst, const void* src, size_t bytes);

// Copies a forward's inputs from the host (token ids, pixels, the index arrays the host computes)
// to dst on the current device without waiting for the copy: on a GPU the bytes are staged in
// pinned host memory and copied on a copy stream that every later op on the device waits for,
// so `host` may be reused on return and the transfer overlaps the host's work (kernels/cuda/
// runtime.h BatchUploader). On the CPU a memcpy (callers skip it: ops read host arrays there).
void upload_input(void* dst, const void* host, size_t bytes);

// The same for an input uploaded ahead of its forward (a trainer's next step, issued while the
// current one computes), on a copy path of its own. With AheadWait::kNone the copy does not
// wait for the device's earlier work, so it overlaps the compute: the caller guarantees that
// no device work issued before still reads or writes dst (model/device_inputs.h: a buffer of
// its own, last read by a step the host has waited for). kEarlierWork: it waits, as
// upload_input does (for memory just taken from the allocator, which work still pending may
// have freed). Later ops on the device see the data. On the CPU a memcpy.
enum class AheadWait { kNone, kEarlierWork };
void upload_input_ahead(void* dst, const void* host, size_t bytes, AheadWait wait);

}  // namespace qv::kernels
