#include "core/allocator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <new>
#include <string>

#include "core/error.h"

namespace qv {
namespace {

constexpr std::align_val_t kAlign{64};

class CpuAllocator final : public Allocator {
 public:
  Device device() const override { return kCpuDevice; }
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = ::operator new(bytes, kAlign, std::nothrow);
    QV_CHECK(p != nullptr, "out of host memory allocating " + std::to_string(bytes) + " bytes");
    return p;
  }
  void deallocate(void* p, size_t) override {
    if (p) ::operator delete(p, kAlign);
  }
  void zero(void* p, size_t bytes) override {
    if (bytes) std::memset(p, 0, bytes);
  }
  // Anonymous private mappings: zero-filled, and pages read as zeros again after MADV_DONTNEED.
  void* allocate_pages(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    QV_CHECK(p != MAP_FAILED, "cannot map ", bytes, " bytes of host memory");
    return p;
  }
  void deallocate_pages(void* p, size_t bytes) override {
    if (p) munmap(p, bytes);
  }
  void release_pages(void* p, size_t bytes) override {
    if (bytes) QV_CHECK(madvise(p, bytes, MADV_DONTNEED) == 0, "madvise failed");
  }
};

std::atomic<Allocator*> g_cpu_override{nullptr};
std::atomic<Allocator*> g_cuda_allocator{nullptr};
std::atomic<Allocator*> g_guarded_allocator{nullptr};

std::atomic<Allocator*>& slot(DeviceKind kind) {
  return kind == DeviceKind::kGuarded ? g_guarded_allocator : g_cuda_allocator;
}

}  // namespace

size_t page_bytes() {
  static const auto n = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return n;
}

Allocator& cpu_allocator() {
  static CpuAllocator cpu;
  return cpu;
}

Allocator* register_allocator(DeviceKind kind, Allocator* allocator) {
  if (kind == DeviceKind::kCpu) {
    Allocator* previous = g_cpu_override.exchange(allocator);
    return previous ? previous : &cpu_allocator();
  }
  return slot(kind).exchange(allocator);
}

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) {
    Allocator* a = g_cpu_override.load();
    return a ? *a : cpu_allocator();
  }
  Allocator* a = slot(device.kind).load();
  QV_CHECK(a != nullptr, "device " + to_string(device) +
                             (device.is_cuda() ? ": this binary was built without the CUDA backend"
                                               : ": no allocator registered (a test registers "
                                                 "kernels::guarded::allocator())"));
  return *a;
}

}  // namespace qv
