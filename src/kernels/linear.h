// Dense layers: y = x . w^T (+ bias), the layout of torch.nn.Linear weights [out, in]. They are
// composed once, in linear.cpp, of the GEMMs (kernels/gemm.h) and two bias primitives that each
// backend implements (at the end of this file); bf16 operands are rounded into arena scratch.
#pragma once
#include <cstdint>

#include "core/bf16.h"
#include "kernels/gemm.h"

namespace qv::kernels {

// A weight matrix [N, K] as the products read it: its float values, and its bf16 copy when the
// model multiplies in bf16. With the copy, the activation operand (x forward; dy and x
// backward) is rounded to bf16 as well and products accumulate in float: torch autocast's
// matmul, except that outputs and gradients stay float. Without it, everything is float.
struct Weight {
  const float* f32 = nullptr;
  const bf16* b16 = nullptr;
};

// y[M,N] = x[M,K] . w[N,K]^T (+ bias[N] when non-null). y is overwritten.
template <typename T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, int64_t M, int64_t K, int64_t N);
void linear_forward(const float* x, Weight w, const float* bias, float* y, int64_t M, int64_t K,
                    int64_t N);

// Given dy[M,N]: dx[M,K] = dy . w (overwritten, or added when accumulate_dx), dw[N,K] += dy^T . x,
// dbias[N] += column sums of dy. Any of dx, dw, dbias may be null to skip it.
template <typename T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* dbias, int64_t M,
                     int64_t K, int64_t N, bool accumulate_dx = false);
void linear_backward(const float* x, Weight w, const float* dy, float* dx, float* dw, float* dbias,
                     int64_t M, int64_t K, int64_t N, bool accumulate_dx = false);

// The bf16 backward with dy already in bf16 (from cross_entropy's bf16 gradient; row m at
// dy + m * ldy, ldy >= N): dx = dy . w (overwritten), dw += dy^T . x, with x rounded to bf16 as
// in the overload above. w.b16 is required. Either of dx, dw may be null.
void linear_backward(const float* x, Weight w, const bf16* dy, int64_t ldy, float* dx, float* dw,
                     int64_t M, int64_t K, int64_t N);

// The primitives, run on the calling thread's device:
// y[m, :] = bias for every row m < M.
template <typename T>
void broadcast_bias(const T* bias, T* y, int64_t M, int64_t N);
// dbias[N] += column sums of dy[M, N], in an order that does not depend on the thread count.
template <typename T>
void bias_grad(const T* dy, T* dbias, int64_t M, int64_t N);

}  // namespace qv::kernels
