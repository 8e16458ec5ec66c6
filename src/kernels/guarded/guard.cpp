#include "kernels/guarded/guard.h"

#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "core/error.h"

namespace qv::kernels::guarded {
namespace {

constexpr Device kGuardedDevice{DeviceKind::kGuarded, 0};

// Every live block (start -> bytes, whole pages) and the process-wide open depth.
struct Registry {
  std::mutex mu;
  std::map<uintptr_t, size_t> blocks;
  int open_depth = 0;
  std::atomic<int64_t> opens{0};
};

Registry& registry() {
  static auto* r = new Registry;  // never destroyed: blocks may be freed at exit
  return *r;
}

size_t round_to_pages(size_t bytes) {
  const size_t page = page_bytes();
  return (bytes + page - 1) / page * page;
}

void protect(uintptr_t base, size_t bytes, bool open) {
  const int prot = open ? PROT_READ | PROT_WRITE : PROT_NONE;
  QV_CHECK(mprotect(reinterpret_cast<void*>(base), bytes, prot) == 0,
           "guarded device: mprotect failed");
}

void protect_all(Registry& r, bool open) {
  for (const auto& [base, bytes] : r.blocks) protect(base, bytes, open);
}

class GuardedAllocator final : public Allocator {
 public:
  Device device() const override { return kGuardedDevice; }
  // Whole pages, so that protecting one block never touches host memory next to it.
  void* allocate(size_t bytes) override { return map(bytes); }
  void deallocate(void* p, size_t bytes) override { unmap(p, bytes); }
  void zero(void* p, size_t bytes) override {
    if (bytes == 0) return;
    OpenScope open;
    std::memset(p, 0, bytes);
  }
  void* allocate_pages(size_t bytes) override { return map(bytes); }
  void deallocate_pages(void* p, size_t bytes) override { unmap(p, bytes); }
  void release_pages(void* p, size_t bytes) override {
    if (bytes) QV_CHECK(madvise(p, bytes, MADV_DONTNEED) == 0, "madvise failed");
  }

 private:
  static void* map(size_t bytes) {
    if (bytes == 0) return nullptr;
    const size_t mapped = round_to_pages(bytes);
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    const int prot = r.open_depth > 0 ? PROT_READ | PROT_WRITE : PROT_NONE;
    void* p = mmap(nullptr, mapped, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    QV_CHECK(p != MAP_FAILED, "guarded device: cannot map ", mapped, " bytes");
    r.blocks[reinterpret_cast<uintptr_t>(p)] = mapped;
    return p;
  }
  static void unmap(void* p, size_t) {
    if (!p) return;
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    const auto it = r.blocks.find(reinterpret_cast<uintptr_t>(p));
    QV_CHECK(it != r.blocks.end(), "guarded device: freeing a block it did not hand out");
    munmap(p, it->second);
    r.blocks.erase(it);
  }
};

}  // namespace

Allocator& allocator() {
  static GuardedAllocator a;
  return a;
}

OpenScope::OpenScope() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.open_depth++ == 0) protect_all(r, true);
  r.opens.fetch_add(1, std::memory_order_relaxed);
}

OpenScope::~OpenScope() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  // Also re-protects blocks a fault handler opened (open_block) since.
  if (--r.open_depth == 0) protect_all(r, false);
}

bool find_block(const void* address, uintptr_t* base, size_t* bytes) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  const auto a = reinterpret_cast<uintptr_t>(address);
  auto it = r.blocks.upper_bound(a);
  if (it == r.blocks.begin()) return false;
  --it;
  if (a >= it->first + it->second) return false;
  *base = it->first;
  *bytes = it->second;
  return true;
}

void open_block(uintptr_t base, size_t bytes) {
  mprotect(reinterpret_cast<void*>(base), bytes, PROT_READ | PROT_WRITE);
}

namespace {
std::atomic<HostPointerHook> g_hook{nullptr};
}  // namespace

void set_host_pointer_hook(HostPointerHook hook) {
  g_hook = hook;
}

void report_if_host(const char* op, const void* pointer) {
  const HostPointerHook hook = g_hook.load();
  uintptr_t base = 0;
  size_t bytes = 0;
  if (hook && !find_block(pointer, &base, &bytes)) hook(op, pointer);
}

namespace {
std::atomic<TransferHook> g_transfer_hook{nullptr};
}  // namespace

void set_transfer_hook(TransferHook hook) {
  g_transfer_hook = hook;
}

void note_transfer(Transfer kind, size_t bytes) {
  if (const TransferHook hook = g_transfer_hook.load()) hook(kind, bytes);
}

int64_t live_blocks() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  return static_cast<int64_t>(r.blocks.size());
}

int64_t ops_opened() {
  return registry().opens.load(std::memory_order_relaxed);
}

}  // namespace qv::kernels::guarded
