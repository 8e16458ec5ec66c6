// Rotary position embedding in "rotate_half" form: element i pairs with i + hd/2.
// y = x * cos + rotate_half(x) * sin, rotate_half([a, b]) = [-b, a].
#pragma once
#include <cstdint>

namespace qv::kernels {

// x, y: [rows, heads, hd]; cos, sin: [rows, hd] shared by all heads. y may alias x.
template <typename T>
void rope_forward(const T* x, const T* cos, const T* sin, T* y, int64_t rows, int64_t heads,
                  int64_t hd);

// The transpose rotation; dx may alias dy.
template <typename T>
void rope_backward(const T* dy, const T* cos, const T* sin, T* dx, int64_t rows, int64_t heads,
                   int64_t hd);

}  // namespace qv::kernels
