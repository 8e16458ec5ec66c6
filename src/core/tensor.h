// Tensor: a shape, a dtype, a device and shared storage from that device's allocator
// (core/allocator.h). Used at the edges of the system (files, batches, tool outputs); kernels work
// on raw pointers and explicit sizes. Element access, conversions and the from_* builders are
// host-side and refuse a tensor on another device.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/error.h"

namespace qv {

enum class DType { kF32, kF64, kBF16, kF16, kI64, kI32, kU8, kBool };

size_t dtype_size(DType dtype);
std::string dtype_name(DType dtype);             // safetensors spelling: "F32", "BF16", ...
DType dtype_from_name(const std::string& name);  // throws on unknown names

using Shape = std::vector<int64_t>;
int64_t numel(const Shape& shape);
std::string shape_str(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  // Zero-filled, 64-byte aligned, on `device`.
  Tensor(DType dtype, Shape shape, Device device = kCpuDevice);

  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return qv::numel(shape_); }
  size_t nbytes() const { return numel() * dtype_size(dtype_); }
  bool defined() const { return storage_ != nullptr; }

  void* raw() { return storage_.get(); }
  const void* raw() const { return storage_.get(); }
  template <typename T>
  T* data() {
    return static_cast<T*>(raw());
  }
  template <typename T>
  const T* data() const {
    return static_cast<const T*>(raw());
  }

  // Same storage, new shape with the same element count.
  Tensor reshaped(Shape shape) const;
  // Converted copy (F32 <-> F64 <-> BF16 <-> F16, and integer kinds among themselves / to float).
  Tensor to(DType dtype) const;

  static Tensor from_f32(std::span<const float> values, Shape shape);
  static Tensor from_i64(std::span<const int64_t> values, Shape shape);
  static Tensor from_f32(const std::vector<float>& values, Shape shape) {
    return from_f32(std::span<const float>(values), std::move(shape));
  }
  static Tensor from_i64(const std::vector<int64_t>& values, Shape shape) {
    return from_i64(std::span<const int64_t>(values), std::move(shape));
  }

 private:
  DType dtype_ = DType::kF32;
  Device device_ = kCpuDevice;
  Shape shape_;
  std::shared_ptr<std::byte> storage_;
};

// bfloat16 / float16 conversions (round to nearest even).
float bf16_to_f32(uint16_t v);
uint16_t f32_to_bf16(float v);
float f16_to_f32(uint16_t v);
uint16_t f32_to_f16(float v);

}  // namespace qv
