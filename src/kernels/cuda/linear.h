// CUDA: dense layers y = x . w^T (+ bias), as kernels/cpu/linear.h (same signatures, device
// memory). With a bf16 weight copy the activation operand is rounded to bf16 and products
// accumulate in float (gemm_bf16); outputs and gradients stay float.
#pragma once
#include <cstdint>

#include "kernels/linear.h"

namespace qv::kernels::cuda {

using qv::kernels::Weight;

template <typename T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, int64_t M, int64_t K, int64_t N);
void linear_forward(const float* x, Weight w, const float* bias, float* y, int64_t M, int64_t K,
                    int64_t N);

template <typename T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* dbias, int64_t M,
                     int64_t K, int64_t N, bool accumulate_dx = false);
void linear_backward(const float* x, Weight w, const float* dy, float* dx, float* dw, float* dbias,
                     int64_t M, int64_t K, int64_t N, bool accumulate_dx = false);
void linear_backward(const float* x, Weight w, const bf16* dy, int64_t ldy, float* dx, float* dw,
                     int64_t M, int64_t K, int64_t N);

}  // namespace qv::kernels::cuda
