#include "core/page_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "core/error.h"

namespace qv {

int64_t PageBuffer::floats_per_page() {
  static const int64_t n = static_cast<int64_t>(sysconf(_SC_PAGESIZE)) / sizeof(float);
  return n;
}

PageBuffer::~PageBuffer() {
  if (data_) munmap(data_, mapped_bytes_);
}

void PageBuffer::swap(PageBuffer& o) noexcept {
  std::swap(data_, o.data_);
  std::swap(size_, o.size_);
  std::swap(mapped_bytes_, o.mapped_bytes_);
}

void PageBuffer::allocate(int64_t n) {
  PageBuffer old(std::move(*this));
  if (n == 0) return;
  const size_t page = static_cast<size_t>(floats_per_page()) * sizeof(float);
  mapped_bytes_ = (static_cast<size_t>(n) * sizeof(float) + page - 1) / page * page;
  void* p =
      mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  QV_CHECK(p != MAP_FAILED, "cannot map ", mapped_bytes_, " bytes for a parameter buffer");
  data_ = static_cast<float*>(p);
  size_ = n;
}

void PageBuffer::discard(int64_t offset, int64_t n) {
  const int64_t fpp = floats_per_page();
  QV_CHECK(offset % fpp == 0 && n % fpp == 0 && offset >= 0 && offset + n <= size_,
           "PageBuffer::discard: range [", offset, ", ", offset + n, ") is not whole pages");
  if (n == 0) return;
  // Private anonymous pages read back as zeros after MADV_DONTNEED.
  QV_CHECK(madvise(data_ + offset, n * sizeof(float), MADV_DONTNEED) == 0, "madvise failed");
}

void PageBuffer::fill_zero() {
  if (data_) std::memset(data_, 0, size_ * sizeof(float));
}

}  // namespace qv
