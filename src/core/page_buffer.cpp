#include "core/page_buffer.h"

#include <utility>

#include "core/allocator.h"
#include "core/error.h"

namespace qv {

template <class T>
int64_t PageArray<T>::per_page() {
  return static_cast<int64_t>(page_bytes() / sizeof(T));
}

template <class T>
int64_t PageArray<T>::floats_per_page() {
  return static_cast<int64_t>(page_bytes() / sizeof(float));
}

template <class T>
PageArray<T>::~PageArray() {
  if (data_) allocator_for(device_).deallocate_pages(data_, mapped_bytes_);
}

template <class T>
void PageArray<T>::swap(PageArray& o) noexcept {
  std::swap(data_, o.data_);
  std::swap(size_, o.size_);
  std::swap(mapped_bytes_, o.mapped_bytes_);
  std::swap(device_, o.device_);
}

template <class T>
void PageArray<T>::allocate(int64_t n, Device device) {
  PageArray old(std::move(*this));
  device_ = device;
  if (n == 0) return;
  const size_t page = page_bytes();
  const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + page - 1) / page * page;
  data_ = static_cast<T*>(allocator_for(device).allocate_pages(bytes));
  mapped_bytes_ = bytes;
  size_ = n;
}

template <class T>
void PageArray<T>::discard(int64_t offset, int64_t n) {
  const int64_t pp = per_page();
  QV_CHECK(offset % pp == 0 && n % pp == 0 && offset >= 0 && offset + n <= size_,
           "PageArray::discard: range [", offset, ", ", offset + n, ") is not whole pages");
  if (n == 0) return;
  allocator_for(device_).release_pages(data_ + offset, n * sizeof(T));
}

template <class T>
void PageArray<T>::discard_inside(int64_t offset, int64_t n) {
  const int64_t pp = per_page();
  const int64_t first = (offset + pp - 1) / pp * pp, last = (offset + n) / pp * pp;
  if (last > first) discard(first, last - first);
}

template <class T>
void PageArray<T>::fill_zero() {
  if (data_) allocator_for(device_).zero(data_, size_ * sizeof(T));
}

template <class T>
std::vector<T> PageArray<T>::to_vector() const {
  QV_CHECK(device_.is_cpu(), "PageArray::to_vector: the array is on ", to_string(device_),
           "; copy it to the host first");
  return std::vector<T>(begin(), end());
}

template class PageArray<float>;
template class PageArray<bf16>;

}  // namespace qv
