// Integers from JSON without undefined behaviour: nlohmann's get<int64_t>() converts a float
// such as 1e300 with a cast whose result is undefined, and narrows silently to smaller types.
#pragma once
#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <type_traits>
#include <utility>

namespace qv::io {

// The value as a T when it is an integer (or a float with an integral value, as some writers
// emit) inside T's range; nullopt for anything else.
template <typename T>
std::optional<T> json_integer(const nlohmann::json& v) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (!std::in_range<T>(u)) return std::nullopt;
    return static_cast<T>(u);
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (!std::in_range<T>(i)) return std::nullopt;
    return static_cast<T>(i);
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // [-2^63, 2^63) holds every int64; the comparisons are false for NaN.
    if (!(d >= -0x1p63 && d < 0x1p63) || d != std::trunc(d)) return std::nullopt;
    const auto i = static_cast<int64_t>(d);
    if (!std::in_range<T>(i)) return std::nullopt;
    return static_cast<T>(i);
  }
  return std::nullopt;
}

}  // namespace qv::io
