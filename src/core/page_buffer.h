// An array of whole pages from its device's Allocator (core/allocator.h: allocate_pages):
// page-aligned, zero-filled, and its address never changes. Whole pages can be handed back
// (they then read as zeros and, on the CPU, cost no memory until written), which is how sharded
// training frees the parts of the parameter and gradient buffers that another rank owns.
// PageBuffer holds floats (parameters, gradients); PageArray<bf16> holds the bf16 copies of
// parameters that bf16 matrix products read. The memory is on device(): element access, begin()
// / end() and to_vector() are for host arrays only (to_vector checks it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/bf16.h"
#include "core/device.h"

namespace qv {

template <class T>
class PageArray {
 public:
  PageArray() = default;
  explicit PageArray(int64_t n, Device device = kCpuDevice) { allocate(n, device); }
  ~PageArray();
  PageArray(const PageArray&) = delete;
  PageArray& operator=(const PageArray&) = delete;
  PageArray(PageArray&& o) noexcept { swap(o); }
  PageArray& operator=(PageArray&& o) noexcept {
    swap(o);
    return *this;
  }

  // n zero elements on `device` (any previous contents are released).
  void allocate(int64_t n, Device device = kCpuDevice);
  Device device() const { return device_; }
  // Returns elements [offset, offset + n) to the device (they read as zeros); both must be
  // multiples of per_page().
  void discard(int64_t offset, int64_t n);
  // Returns the whole pages inside [offset, offset + n) to the device (any offsets).
  void discard_inside(int64_t offset, int64_t n);
  void fill_zero();  // writes zeros (keeps the pages)

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](int64_t i) { return data_[i]; }
  const T& operator[](int64_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }
  std::vector<T> to_vector() const;  // host arrays only

  static int64_t per_page();  // elements in one page
  // Floats in one page: the alignment of parameter units, whatever the element type.
  static int64_t floats_per_page();

 private:
  void swap(PageArray& o) noexcept;
  T* data_ = nullptr;
  int64_t size_ = 0;
  Device device_ = kCpuDevice;
  size_t mapped_bytes_ = 0;
};

using PageBuffer = PageArray<float>;

extern template class PageArray<float>;
extern template class PageArray<bf16>;

}  // namespace qv
