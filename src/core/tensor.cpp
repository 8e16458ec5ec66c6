#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/allocator.h"

namespace qv {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF64:
    case DType::kI64:
      return 8;
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kBF16:
    case DType::kF16:
      return 2;
    case DType::kU8:
    case DType::kBool:
      return 1;
  }
  return 0;
}

std::string dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF64:
      return "F64";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kI64:
      return "I64";
    case DType::kI32:
      return "I32";
    case DType::kU8:
      return "U8";
    case DType::kBool:
      return "BOOL";
  }
  return "?";
}

DType dtype_from_name(const std::string& name) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F32", DType::kF32}, {"F64", DType::kF64}, {"BF16", DType::kBF16}, {"F16", DType::kF16},
      {"I64", DType::kI64}, {"I32", DType::kI32}, {"U8", DType::kU8},     {"BOOL", DType::kBool}};
  for (const auto& [n, d] : kNames)
    if (name == n) return d;
  fail("unsupported dtype '", name, "' (supported: F32 F64 BF16 F16 I64 I32 U8 BOOL)");
}

int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    QV_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
    QV_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / d, "shape ", shape_str(shape),
             " overflows");
    n *= d;
  }
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Tensor::Tensor(DType dtype, Shape shape, Device device)
    : dtype_(dtype), device_(device), shape_(std::move(shape)) {
  const size_t bytes = std::max<size_t>(64, (nbytes() + 63) / 64 * 64);
  Allocator& allocator = allocator_for(device);
  void* p = allocator.allocate(bytes);
  allocator.zero(p, bytes);
  storage_ = std::shared_ptr<std::byte>(
      static_cast<std::byte*>(p),
      [&allocator, bytes](std::byte* q) { allocator.deallocate(q, bytes); });
}

Tensor Tensor::reshaped(Shape shape) const {
  QV_CHECK(qv::numel(shape) == numel(), "cannot reshape ", shape_str(shape_), " to ",
           shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

namespace {
double load_as_double(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kF32:
      return t.data<float>()[i];
    case DType::kF64:
      return t.data<double>()[i];
    case DType::kBF16:
      return bf16_to_f32(t.data<uint16_t>()[i]);
    case DType::kF16:
      return f16_to_f32(t.data<uint16_t>()[i]);
    case DType::kI64:
      return static_cast<double>(t.data<int64_t>()[i]);
    case DType::kI32:
      return t.data<int32_t>()[i];
    case DType::kU8:
      return t.data<uint8_t>()[i];
    case DType::kBool:
      return t.data<uint8_t>()[i] != 0;
  }
  return 0;
}
}  // namespace

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  QV_CHECK(device_.is_cpu(), "Tensor::to(", dtype_name(dtype), "): the tensor is on ",
           to_string(device_), "; conversions run on the host");
  Tensor out(dtype, shape_);
  const int64_t n = numel();
  const bool int_to_int =
      (dtype_ == DType::kI64 || dtype_ == DType::kI32 || dtype_ == DType::kU8) &&
      (dtype == DType::kI64 || dtype == DType::kI32);
  for (int64_t i = 0; i < n; ++i) {
    if (int_to_int) {
      int64_t v = dtype_ == DType::kI64   ? data<int64_t>()[i]
                  : dtype_ == DType::kI32 ? data<int32_t>()[i]
                                          : data<uint8_t>()[i];
      if (dtype == DType::kI64)
        out.data<int64_t>()[i] = v;
      else
        out.data<int32_t>()[i] = static_cast<int32_t>(v);
      continue;
    }
    const double v = load_as_double(*this, i);
    switch (dtype) {
      case DType::kF32:
        out.data<float>()[i] = static_cast<float>(v);
        break;
      case DType::kF64:
        out.data<double>()[i] = v;
        break;
      case DType::kBF16:
        out.data<uint16_t>()[i] = f32_to_bf16(static_cast<float>(v));
        break;
      case DType::kF16:
        out.data<uint16_t>()[i] = f32_to_f16(static_cast<float>(v));
        break;
      case DType::kI64:
        out.data<int64_t>()[i] = static_cast<int64_t>(v);
        break;
      case DType::kI32:
        out.data<int32_t>()[i] = static_cast<int32_t>(v);
        break;
      case DType::kU8:
        out.data<uint8_t>()[i] = static_cast<uint8_t>(v);
        break;
      case DType::kBool:
        out.data<uint8_t>()[i] = v != 0;
        break;
    }
  }
  return out;
}

Tensor Tensor::from_f32(std::span<const float> values, Shape shape) {
  Tensor t(DType::kF32, std::move(shape));
  QV_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "from_f32: ", values.size(),
           " values for shape ", shape_str(t.shape()));
  std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

Tensor Tensor::from_i64(std::span<const int64_t> values, Shape shape) {
  Tensor t(DType::kI64, std::move(shape));
  QV_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "from_i64: ", values.size(),
           " values for shape ", shape_str(t.shape()));
  std::memcpy(t.raw(), values.data(), t.nbytes());
  return t;
}

float bf16_to_f32(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // overflow -> inf
  if (abs < 0x38800000u) {                        // subnormal or zero in f16
    if (abs < 0x33000000u) return sign;           // rounds to zero
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    // value = mant * 2^(exp-150); the f16 subnormal unit is 2^-24, so q = mant * 2^(exp-126).
    const int rshift = 126 - static_cast<int>(exp);
    uint32_t q = mant >> rshift;
    const uint32_t rem = mant & ((1u << rshift) - 1);
    const uint32_t halfway = 1u << (rshift - 1);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return sign | static_cast<uint16_t>(q);
  }
  uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u) - ((127 - 15) << 23);
  return sign | static_cast<uint16_t>(r >> 13);
}

}  // namespace qv
