#include "core/allocator.h"

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
};

Allocator* g_cuda_allocator = nullptr;

}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator cpu;
  return cpu;
}

void register_allocator(DeviceKind kind, Allocator* allocator) {
  QV_CHECK(kind == DeviceKind::kCuda, "the CPU allocator is built in and cannot be replaced");
  g_cuda_allocator = allocator;
}

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
  QV_CHECK(g_cuda_allocator != nullptr,
           "device " + to_string(device) + ": this binary was built without the CUDA backend");
  return *g_cuda_allocator;
}

}  // namespace qv
