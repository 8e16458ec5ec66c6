// A float array in its own anonymous memory mapping: page-aligned, zero-filled, and its address
// never changes. Whole pages can be handed back to the operating system (they then read as
// zeros and cost no memory until written), which is how sharded training frees the parts of the
// parameter and gradient buffers that another rank owns.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qv {

class PageBuffer {
 public:
  PageBuffer() = default;
  explicit PageBuffer(int64_t n) { allocate(n); }
  ~PageBuffer();
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;
  PageBuffer(PageBuffer&& o) noexcept { swap(o); }
  PageBuffer& operator=(PageBuffer&& o) noexcept {
    swap(o);
    return *this;
  }

  // Maps n zero floats (any previous contents are released).
  void allocate(int64_t n);
  // Returns floats [offset, offset + n) to the OS; both must be multiples of floats_per_page().
  void discard(int64_t offset, int64_t n);
  void fill_zero();  // writes zeros (keeps the pages)

  float* data() { return data_; }
  const float* data() const { return data_; }
  int64_t size() const { return size_; }
  float& operator[](int64_t i) { return data_[i]; }
  const float& operator[](int64_t i) const { return data_[i]; }
  float* begin() { return data_; }
  float* end() { return data_ + size_; }
  const float* begin() const { return data_; }
  const float* end() const { return data_ + size_; }
  std::vector<float> to_vector() const { return std::vector<float>(begin(), end()); }

  static int64_t floats_per_page();

 private:
  void swap(PageBuffer& o) noexcept;
  float* data_ = nullptr;
  int64_t size_ = 0;
  size_t mapped_bytes_ = 0;
};

}  // namespace qv
