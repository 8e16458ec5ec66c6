#include "core/page_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "core/error.h"

namespace qv {

namespace {
int64_t page_bytes() {
  static const int64_t n = static_cast<int64_t>(sysconf(_SC_PAGESIZE));
  return n;
}
}  // namespace

template <class T>
int64_t PageArray<T>::per_page() {
  return page_bytes() / static_cast<int64_t>(sizeof(T));
}

template <class T>
int64_t PageArray<T>::floats_per_page() {
  return page_bytes() / static_cast<int64_t>(sizeof(float));
}

template <class T>
PageArray<T>::~PageArray() {
  if (data_) munmap(data_, mapped_bytes_);
}

template <class T>
void PageArray<T>::swap(PageArray& o) noexcept {
  std::swap(data_, o.data_);
  std::swap(size_, o.size_);
  std::swap(mapped_bytes_, o.mapped_bytes_);
}

template <class T>
void PageArray<T>::allocate(int64_t n) {
  PageArray old(std::move(*this));
  if (n == 0) return;
  const size_t page = static_cast<size_t>(page_bytes());
  mapped_bytes_ = (static_cast<size_t>(n) * sizeof(T) + page - 1) / page * page;
  void* p =
      mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  QV_CHECK(p != MAP_FAILED, "cannot map ", mapped_bytes_, " bytes for a parameter buffer");
  data_ = static_cast<T*>(p);
  size_ = n;
}

template <class T>
void PageArray<T>::discard(int64_t offset, int64_t n) {
  const int64_t pp = per_page();
  QV_CHECK(offset % pp == 0 && n % pp == 0 && offset >= 0 && offset + n <= size_,
           "PageArray::discard: range [", offset, ", ", offset + n, ") is not whole pages");
  if (n == 0) return;
  // Private anonymous pages read back as zeros after MADV_DONTNEED.
  QV_CHECK(madvise(data_ + offset, n * sizeof(T), MADV_DONTNEED) == 0, "madvise failed");
}

template <class T>
void PageArray<T>::discard_inside(int64_t offset, int64_t n) {
  const int64_t pp = per_page();
  const int64_t first = (offset + pp - 1) / pp * pp, last = (offset + n) / pp * pp;
  if (last > first) discard(first, last - first);
}

template <class T>
void PageArray<T>::fill_zero() {
  if (data_) std::memset(static_cast<void*>(data_), 0, size_ * sizeof(T));
}

template class PageArray<float>;
template class PageArray<bf16>;

}  // namespace qv
