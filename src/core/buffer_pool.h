// The activation arena: a caching allocator for the buffers a training step creates and frees
// (activations, gradients of activations, kernel scratch), over the host Allocator
// (core/allocator.h). Freed blocks go to per-size-class free lists instead of back to the
// system, so from the second step of the same shape on a step makes no heap allocation at all. Size
// classes round up to 4 significant bits (at most 6.25% waste) so steps of slightly different
// shapes still reuse blocks; end_step() returns blocks that stayed unused for a whole step, which
// bounds the cache when shapes change.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

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
  static BufferPool& instance();
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

 private:
  BufferPool() = default;
  struct Impl;
  Impl& impl() const;
};

// std-compatible allocator drawing from the pool; stateless, so containers compare equal.
template <class T>
struct PoolAllocator {
  using value_type = T;
  PoolAllocator() noexcept = default;
  template <class U>
  PoolAllocator(const PoolAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(BufferPool::instance().allocate(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { BufferPool::instance().deallocate(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const PoolAllocator<U>&) const noexcept {
    return true;
  }
};

// A vector whose storage lives in the activation arena.
template <class T>
using PoolVector = std::vector<T, PoolAllocator<T>>;

}  // namespace qv
