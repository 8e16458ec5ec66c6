// Memory of one device. Buffers, the activation arena and the parameter store allocate through an
// Allocator instead of new/mmap directly, so the same model code owns device memory when it runs
// on a GPU. The CPU allocator is always there; a backend built into the binary registers its own
// (kernels/cuda registers the CUDA one at start-up), and a test may stand in for the CPU one to
// see every allocation the model makes.
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

  // Page-granular memory for buffers whose parts are handed back while the rest stays in use
  // (the parameter store: sharded training releases the shards other ranks own). `bytes` is a
  // multiple of page_bytes(); the memory comes zeroed, aligned to a page, and keeps its address.
  virtual void* allocate_pages(size_t bytes) = 0;
  virtual void deallocate_pages(void* p, size_t bytes) = 0;
  // Whole pages [p, p + bytes) of an allocate_pages block read as zeros afterwards; where the
  // device allows it (the CPU: madvise) they cost no memory until written again.
  virtual void release_pages(void* p, size_t bytes) = 0;
};

// The page unit of allocate_pages on every device: the host's page size (4 KiB on x86-64 Linux).
// One unit for all devices keeps a parameter layout the same wherever it lives.
size_t page_bytes();

// Host memory: 64-byte aligned, from the C++ heap; pages from anonymous mappings.
Allocator& cpu_allocator();

// Makes `allocator` the one for its device kind and returns the previous one. A backend
// registers its allocator once at start-up (the guarded test device's, kernels/guarded/guard.h,
// is registered by the test that uses it); a test may stand in for the CPU allocator (nullptr
// restores the built-in one). Register before buffers are made and restore after they are gone:
// memory is always returned to the allocator registered at the time, and allocator_for running
// concurrently sees either the old or the new one.
Allocator* register_allocator(DeviceKind kind, Allocator* allocator);

// The allocator of `device`'s kind. Throws qv::Error saying the binary was built without that
// backend when none is registered.
Allocator& allocator_for(Device device);

}  // namespace qv
