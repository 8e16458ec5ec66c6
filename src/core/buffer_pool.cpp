#include "core/buffer_pool.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <mutex>
#include <new>

#include "core/allocator.h"

// gcc defines __SANITIZE_ADDRESS__; clang reports the feature instead.
#if defined(__SANITIZE_ADDRESS__)
#define QV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QV_ASAN 1
#endif
#endif
#if defined(QV_ASAN)
#include <sanitizer/asan_interface.h>
#define QV_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define QV_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define QV_POISON(p, n) ((void)(p), (void)(n))
#define QV_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace qv {

namespace {
constexpr size_t kMinBlock = 64;  // also the alignment: a cache line, enough for any SIMD load
constexpr int kBits = 4;          // significant bits kept: at most 1/16 = 6.25% rounding waste
constexpr int kSubClasses = 1 << kBits;
constexpr int kClasses = 64 * kSubClasses;

size_t round_to_class(size_t bytes) {
  if (bytes <= kMinBlock) return kMinBlock;
  const int e = std::bit_width(bytes - 1);  // 2^(e-1) < bytes <= 2^e
  const size_t step = size_t{1} << (e - kBits - 1);
  return (bytes + step - 1) / step * step;
}

int class_index(size_t rounded) {
  const int e = std::bit_width(rounded) - 1;       // floor(log2)
  const size_t mantissa = rounded >> (e - kBits);  // in [16, 32)
  return e * kSubClasses + static_cast<int>(mantissa - kSubClasses);
}

// Inverse of class_index (only called for classes that have held a block, so e >= 6).
size_t class_size(int index) {
  return (size_t{kSubClasses} + index % kSubClasses) << (index / kSubClasses - kBits);
}

struct FreeBlock {
  FreeBlock* next;
};

// What a block of a size class takes from the host allocator: whole alignment units (classes
// below 1 KiB step by less than kMinBlock).
size_t system_bytes(size_t class_bytes) {
  return (class_bytes + kMinBlock - 1) / kMinBlock * kMinBlock;
}

struct SizeClass {
  FreeBlock* head = nullptr;
  int64_t free_count = 0;
  int64_t min_free = 0;  // low-water mark of free_count since the last end_step()
};
}  // namespace

struct BufferPool::Impl {
  mutable std::mutex mu;
  SizeClass classes[kClasses];
  BufferPoolStats stats;

  void note_peaks() {
    stats.peak_in_use_bytes = std::max(stats.peak_in_use_bytes, stats.in_use_bytes);
    stats.peak_reserved_bytes =
        std::max(stats.peak_reserved_bytes, stats.in_use_bytes + stats.cached_bytes);
  }
  void release_from(SizeClass& c, size_t bytes, int64_t count) {
    for (int64_t i = 0; i < count && c.head; ++i) {
      FreeBlock* b = c.head;
      QV_UNPOISON(b, bytes);
      c.head = b->next;
      --c.free_count;
      stats.cached_bytes -= static_cast<int64_t>(bytes);
      cpu_allocator().deallocate(b, system_bytes(bytes));
    }
  }
};

BufferPool& BufferPool::instance() {
  static BufferPool pool;
  return pool;
}

BufferPool::Impl& BufferPool::impl() const {
  static Impl impl;
  return impl;
}

size_t BufferPool::class_bytes(size_t bytes) {
  return round_to_class(bytes);
}

void* BufferPool::allocate(size_t bytes) {
  const size_t rounded = round_to_class(bytes);
  Impl& im = impl();
  {
    std::lock_guard<std::mutex> lock(im.mu);
    SizeClass& c = im.classes[class_index(rounded)];
    if (c.head) {
      FreeBlock* b = c.head;
      c.head = b->next;
      c.min_free = std::min(c.min_free, --c.free_count);
      QV_UNPOISON(b, rounded);
      im.stats.cached_bytes -= static_cast<int64_t>(rounded);
      im.stats.in_use_bytes += static_cast<int64_t>(rounded);
      ++im.stats.reuses;
      im.note_peaks();
      return b;
    }
  }
  void* p = cpu_allocator().allocate(system_bytes(rounded));
  std::lock_guard<std::mutex> lock(im.mu);
  im.stats.in_use_bytes += static_cast<int64_t>(rounded);
  ++im.stats.system_allocations;
  im.note_peaks();
  return p;
}

void BufferPool::deallocate(void* p, size_t bytes) noexcept {
  if (!p) return;
  const size_t rounded = round_to_class(bytes);
  Impl& im = impl();
  std::lock_guard<std::mutex> lock(im.mu);
  SizeClass& c = im.classes[class_index(rounded)];
  auto* b = static_cast<FreeBlock*>(p);
  b->next = c.head;
  c.head = b;
  ++c.free_count;
  im.stats.in_use_bytes -= static_cast<int64_t>(rounded);
  im.stats.cached_bytes += static_cast<int64_t>(rounded);
  // A cached block is not live memory: poison it so a use after free still trips ASan. The link
  // stays readable, so LeakSanitizer can follow the free list and does not call it a leak.
  QV_POISON(reinterpret_cast<char*>(b) + sizeof(FreeBlock), rounded - sizeof(FreeBlock));
}

void BufferPool::end_step() {
  Impl& im = impl();
  std::lock_guard<std::mutex> lock(im.mu);
  for (int i = 0; i < kClasses; ++i) {
    SizeClass& c = im.classes[i];
    if (c.free_count == 0) continue;
    im.release_from(c, class_size(i), c.min_free);
    c.min_free = c.free_count;
  }
}

void BufferPool::release_cached() {
  Impl& im = impl();
  std::lock_guard<std::mutex> lock(im.mu);
  for (int i = 0; i < kClasses; ++i) {
    SizeClass& c = im.classes[i];
    if (c.free_count > 0) im.release_from(c, class_size(i), c.free_count);
    c.min_free = 0;
  }
}

BufferPoolStats BufferPool::stats() const {
  Impl& im = impl();
  std::lock_guard<std::mutex> lock(im.mu);
  return im.stats;
}

void BufferPool::reset_peaks() {
  Impl& im = impl();
  std::lock_guard<std::mutex> lock(im.mu);
  im.stats.peak_in_use_bytes = im.stats.in_use_bytes;
  im.stats.peak_reserved_bytes = im.stats.in_use_bytes + im.stats.cached_bytes;
}

}  // namespace qv
