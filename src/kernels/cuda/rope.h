// CUDA: Rotary position embedding in "rotate_half" form: element i pairs with i + hd/2.
// Same signatures and semantics as kernels/cpu/rope.h; every pointer is device memory of the
// current device, and ops run on its stream (kernels/cuda/runtime.h). T = float or qv::bf16
// (bf16 elements are computed in float and rounded once on store).
#pragma once
#include <cstdint>

namespace qv::kernels::cuda {

// x, y: [rows, heads, hd]; cos, sin: [rows, hd] shared by all heads. y may alias x.
template <typename T>
void rope_forward(const T* x, const T* cos, const T* sin, T* y, int64_t rows, int64_t heads,
                  int64_t hd);

// The transpose rotation; dx may alias dy.
template <typename T>
void rope_backward(const T* dy, const T* cos, const T* sin, T* dx, int64_t rows, int64_t heads,
                   int64_t hd);

}  // namespace qv::kernels::cuda
