// A test stand-in for a device's Allocator: forwards to the host allocator and records every
// block and page range it hands out, so a test can check that a model's memory came from the
// allocator of the device it was built for. RecordingAllocator::Scope registers one for a device
// kind and restores the previous allocator when it ends. Registered for kCuda it lets a test
// place buffers "on a GPU" without one: the memory is host memory, so only code that never
// dereferences it (allocation, arenas, moves) may run under such a scope.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

#include "core/allocator.h"

namespace qv::testing {

class RecordingAllocator final : public Allocator {
 public:
  explicit RecordingAllocator(Device device) : device_(device) {}
  Device device() const override { return device_; }
  void* allocate(size_t bytes) override {
    void* p = cpu_allocator().allocate(bytes);
    note(p, bytes, false);
    return p;
  }
  void deallocate(void* p, size_t bytes) override {
    forget(p);
    cpu_allocator().deallocate(p, bytes);
  }
  void zero(void* p, size_t bytes) override { cpu_allocator().zero(p, bytes); }
  void* allocate_pages(size_t bytes) override {
    void* p = cpu_allocator().allocate_pages(bytes);
    note(p, bytes, true);
    return p;
  }
  void deallocate_pages(void* p, size_t bytes) override {
    forget(p);
    cpu_allocator().deallocate_pages(p, bytes);
  }
  void release_pages(void* p, size_t bytes) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++page_releases_;
      released_bytes_ += static_cast<int64_t>(bytes);
    }
    cpu_allocator().release_pages(p, bytes);
  }

  // Whether [p, p + bytes) lies inside one live block (pages: an allocate_pages block).
  bool owns(const void* p, size_t bytes, bool pages = false) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.upper_bound(reinterpret_cast<uintptr_t>(p));
    if (it == live_.begin()) return false;
    --it;
    const auto a = reinterpret_cast<uintptr_t>(p);
    return it->second.pages == pages && a + bytes <= it->first + it->second.bytes;
  }
  int64_t block_allocations() const { return get(blocks_); }
  int64_t page_allocations() const { return get(page_blocks_); }
  int64_t page_releases() const { return get(page_releases_); }
  // Frees of memory this allocator did not hand out (made before it was registered).
  int64_t foreign_frees() const { return get(foreign_frees_); }
  int64_t released_bytes() const { return get(released_bytes_); }
  int64_t live_blocks() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int64_t>(live_.size());
  }

  // Registers `allocator` for `kind` while the scope lives.
  class Scope {
   public:
    Scope(DeviceKind kind, RecordingAllocator& allocator)
        : kind_(kind), previous_(register_allocator(kind, &allocator)) {}
    ~Scope() {
      // The built-in CPU allocator is restored with nullptr; a CUDA one (or none) as it was.
      register_allocator(kind_, previous_ == &cpu_allocator() ? nullptr : previous_);
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    DeviceKind kind_;
    Allocator* previous_;
  };

 private:
  struct Block {
    size_t bytes;
    bool pages;
  };
  void note(void* p, size_t bytes, bool pages) {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    live_[reinterpret_cast<uintptr_t>(p)] = {bytes, pages};
    ++(pages ? page_blocks_ : blocks_);
  }
  void forget(void* p) {
    if (!p) return;
    std::lock_guard<std::mutex> lock(mu_);
    if (live_.erase(reinterpret_cast<uintptr_t>(p)) == 0) ++foreign_frees_;
  }
  int64_t get(const int64_t& v) const {
    std::lock_guard<std::mutex> lock(mu_);
    return v;
  }
  Device device_;
  mutable std::mutex mu_;
  std::map<uintptr_t, Block> live_;
  int64_t blocks_ = 0, page_blocks_ = 0, page_releases_ = 0, released_bytes_ = 0,
          foreign_frees_ = 0;
};

}  // namespace qv::testing
