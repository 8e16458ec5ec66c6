// The activation arena: a caching allocator for the buffers a training step creates and frees
// (activations, gradients of activations, kernel scratch), one per device, each over its
// device's Allocator (core/allocator.h). Freed blocks go to per-size-class free lists instead of
// back to the system, so from the second step of the same shape on a step makes no heap allocation
// at all. Size classes round up to 4 significant bits (at most 6.25% waste) so steps of slightly
// different shapes still reuse blocks; end_step() returns blocks that stayed unused for a whole
// step, which bounds the cache when shapes change.
//
// PoolVector<T> is a std::vector in the arena of the device that was current when it was made
// (objects with owning members, like a struct of buffers, always live on the host). Its elements
// are constructed by the host, so a PoolVector on a GPU may be sized (reserve) and moved, and its
// memory handed to ops, but not value-initialised or read by host code: activations use
// kernels/device_buffer.h's DeviceBuffer instead. HostVector<T> is the host arena's vector
// whatever the current device (arrays host code computes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/device.h"

namespace qv {

struct BufferPoolStats {
  int64_t in_use_bytes = 0;  // handed out now (class-rounded sizes)
  int64_t cached_bytes = 0;  // free blocks held for reuse
  int64_t peak_in_use_bytes = 0;
  int64_t peak_reserved_bytes = 0;  // max of in_use + cached: the arena's footprint
  int64_t system_allocations = 0;   // blocks obtained from the system allocator
  int64_t reuses = 0;               // requests served from a free list
};

class BufferPool {
 public:
  // The arena of `device`.
  static BufferPool& of(Device device);
  // The arena of the calling thread's current device.
  static BufferPool& instance() { return of(current_device()); }
  Device device() const { return device_; }
  void* allocate(size_t bytes);
  void deallocate(void* p, size_t bytes) noexcept;
  // Releases blocks that no request needed since the previous end_step (call between steps).
  void end_step();
  // Releases every cached block.
  void release_cached();
  BufferPoolStats stats() const;
  void reset_peaks();
  // Bytes actually reserved for a request of `bytes` (its size class).
  static size_t class_bytes(size_t bytes);

  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;
  ~BufferPool();

 private:
  explicit BufferPool(Device device);
  struct Impl;
  Device device_;
  std::unique_ptr<Impl> impl_;
  Impl& impl() const { return *impl_; }
};

// std-compatible allocator drawing from the arena of its device: the current device when made
// (the host for objects with owning members). The device travels with the container's moves,
// copies and swaps, so memory always goes back to the arena it came from.
template <class T>
struct PoolAllocator {
  using value_type = T;
  using propagate_on_container_copy_assignment = std::true_type;
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using is_always_equal = std::false_type;

  PoolAllocator() noexcept
      : device(std::is_trivially_copyable_v<T> ? current_device() : kCpuDevice) {}
  explicit PoolAllocator(Device d) noexcept : device(d) {}
  template <class U>
  PoolAllocator(const PoolAllocator<U>& o) noexcept : device(o.device) {}
  T* allocate(size_t n) { return static_cast<T*>(BufferPool::of(device).allocate(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { BufferPool::of(device).deallocate(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const PoolAllocator<U>& o) const noexcept {
    return device == o.device;
  }

  Device device;
};

// A vector whose storage lives in the activation arena.
template <class T>
using PoolVector = std::vector<T, PoolAllocator<T>>;

// The allocator of HostVector: the host's arena whatever the current device.
template <class T>
struct HostPoolAllocator : PoolAllocator<T> {
  template <class U>
  struct rebind {
    using other = HostPoolAllocator<U>;
  };
  HostPoolAllocator() noexcept : PoolAllocator<T>(kCpuDevice) {}
  template <class U>
  HostPoolAllocator(const HostPoolAllocator<U>&) noexcept : PoolAllocator<T>(kCpuDevice) {}
};

// A vector in the host's arena, for arrays host code computes and reads (index arrays before
// their upload, placeholder positions, routing statistics) on any device.
template <class T>
using HostVector = std::vector<T, HostPoolAllocator<T>>;

}  // namespace qv
