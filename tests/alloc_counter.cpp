#include "alloc_counter.h"

#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

#include "kernels/cpu/gemm.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_count{0};

std::atomic<int> g_traces_left{0};
thread_local bool t_in_trace = false;

// Prints the stack of a counted allocation (QV_TRACE_ALLOCATIONS=N traces the first N), without
// allocating itself: backtrace_symbols_fd writes straight to stderr.
void trace_allocation() {
  if (t_in_trace || g_traces_left.fetch_sub(1) <= 0) return;
  t_in_trace = true;
  void* frames[24];
  const int n = backtrace(frames, 24);
  static const char kHeader[] = "---- counted allocation ----\n";
  [[maybe_unused]] auto w = write(2, kHeader, sizeof(kHeader) - 1);
  backtrace_symbols_fd(frames, n, 2);
  t_in_trace = false;
}

void* counted_alloc(std::size_t size, std::size_t align) {
  if (g_counting.load(std::memory_order_relaxed) && !qv::kernels::cpu::in_bf16_matmul_execution()) {
    g_count.fetch_add(1, std::memory_order_relaxed);
    trace_allocation();
  }
  if (size == 0) size = 1;
  void* p = align <= alignof(std::max_align_t)
                ? std::malloc(size)
                : std::aligned_alloc(align, (size + align - 1) / align * align);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

namespace qv::testing {
void start_counting_allocations() {
  const char* trace = std::getenv("QV_TRACE_ALLOCATIONS");
  g_traces_left = trace ? std::atoi(trace) : 0;
  g_count = 0;
  g_counting = true;
}
int64_t stop_counting_allocations() {
  g_counting = false;
  return g_count.load();
}
}  // namespace qv::testing

// Replacements of every global allocation and deallocation function, so that all of them pair
// malloc with free (a sanitizer's own operator new must never meet this free).
void* operator new(std::size_t size) {
  return counted_alloc(size, alignof(std::max_align_t));
}
void* operator new[](std::size_t size) {
  return counted_alloc(size, alignof(std::max_align_t));
}
void* operator new(std::size_t size, std::align_val_t align) {
  return counted_alloc(size, static_cast<std::size_t>(align));
}
void* operator new[](std::size_t size, std::align_val_t align) {
  return counted_alloc(size, static_cast<std::size_t>(align));
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(size, alignof(std::max_align_t));
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept {
  return operator new(size, tag);
}
void* operator new(std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(size, static_cast<std::size_t>(align));
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, std::align_val_t align, const std::nothrow_t& tag) noexcept {
  return operator new(size, align, tag);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  std::free(p);
}
