#include "core/buffer_pool.h"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <utility>

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

// Free blocks of one size class. A host block links to the next through its own first bytes (so
// caching a block allocates nothing); the host cannot write device memory, so a device arena
// keeps its blocks' addresses in a host list instead.
struct SizeClass {
  FreeBlock* head = nullptr;       // host arena
  std::vector<void*> device_free;  // device arena
  int64_t free_count = 0;
  int64_t min_free = 0;  // low-water mark of free_count since the last end_step()
};
}  // namespace

struct BufferPool::Impl {
  explicit Impl(Device d) : device(d) {}
  Device device;
  mutable std::mutex mu;
  SizeClass classes[kClasses];
  BufferPoolStats stats;

  void push(SizeClass& c, void* p, size_t bytes) {
    if (device.is_cpu()) {
      auto* b = static_cast<FreeBlock*>(p);
      b->next = c.head;
      c.head = b;
      // A cached block is not live memory: poison it so a use after free still trips ASan. The
      // link stays readable, so LeakSanitizer can follow the free list and does not call it a
      // leak.
      QV_POISON(reinterpret_cast<char*>(b) + sizeof(FreeBlock), bytes - sizeof(FreeBlock));
    } else {
      c.device_free.push_back(p);
    }
    ++c.free_count;
  }
  // The most recently freed block of the class, or nullptr.
  void* pop(SizeClass& c, size_t bytes) {
    if (c.free_count == 0) return nullptr;
    --c.free_count;
    if (!device.is_cpu()) {
      void* p = c.device_free.back();
      c.device_free.pop_back();
      return p;
    }
    FreeBlock* b = c.head;
    QV_UNPOISON(b, bytes);
    c.head = b->next;
    return b;
  }

  void note_peaks() {
    stats.peak_in_use_bytes = std::max(stats.peak_in_use_bytes, stats.in_use_bytes);
    stats.peak_reserved_bytes =
        std::max(stats.peak_reserved_bytes, stats.in_use_bytes + stats.cached_bytes);
  }
  void release_from(SizeClass& c, size_t bytes, int64_t count) {
    for (int64_t i = 0; i < count && c.free_count > 0; ++i) {
      void* b = pop(c, bytes);
      stats.cached_bytes -= static_cast<int64_t>(bytes);
      allocator_for(device).deallocate(b, system_bytes(bytes));
    }
  }
};

BufferPool::BufferPool(Device device) : device_(device), impl_(std::make_unique<Impl>(device)) {}
BufferPool::~BufferPool() = default;

BufferPool& BufferPool::of(Device device) {
  // One arena per device, made on first use and kept for the process (never destroyed: buffers
  // of static objects may still return memory at exit).
  static BufferPool* const host = new BufferPool(kCpuDevice);
  if (device.is_cpu()) return *host;
  static std::mutex mu;
  static auto* pools = new std::map<std::pair<int, int>, BufferPool*>;
  const std::pair<int, int> key{static_cast<int>(device.kind), device.index};
  std::lock_guard<std::mutex> lock(mu);
  BufferPool*& pool = (*pools)[key];
  if (!pool) pool = new BufferPool(device);
  return *pool;
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
    if (void* b = im.pop(c, rounded)) {
      c.min_free = std::min(c.min_free, c.free_count);
      im.stats.cached_bytes -= static_cast<int64_t>(rounded);
      im.stats.in_use_bytes += static_cast<int64_t>(rounded);
      ++im.stats.reuses;
      im.note_peaks();
      return b;
    }
  }
  void* p = allocator_for(device_).allocate(system_bytes(rounded));
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
  im.push(im.classes[class_index(rounded)], p, rounded);
  im.stats.in_use_bytes -= static_cast<int64_t>(rounded);
  im.stats.cached_bytes += static_cast<int64_t>(rounded);
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
