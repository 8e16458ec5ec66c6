// Memory of one device. Buffers, the activation arena and the parameter store allocate through an
// Allocator instead of new/mmap directly, so the same model code owns device memory when it runs
// on a GPU. The CPU allocator is always there; a backend built into the binary registers its own
// (kernels/cuda registers the CUDA one at start-up).
#pragma once
#include <cstddef>

#include "core/device.h"

namespace qv {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual Device device() const = 0;
  // At least `bytes` bytes aligned to 64; throws qv::Error (naming the device and the size) when
  // the device is out of memory. allocate(0) returns nullptr.
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* p, size_t bytes) = 0;
  // Sets `bytes` bytes at p (memory of this allocator) to zero.
  virtual void zero(void* p, size_t bytes) = 0;
};

// Host memory: 64-byte aligned, from the C++ heap.
Allocator& cpu_allocator();

// Makes `allocator` the one for its device kind (a backend calls this once; not thread-safe with
// allocator_for running concurrently, so register before training starts).
void register_allocator(DeviceKind kind, Allocator* allocator);

// The allocator of `device`'s kind. Throws qv::Error saying the binary was built without that
// backend when none is registered.
Allocator& allocator_for(Device device);

}  // namespace qv
