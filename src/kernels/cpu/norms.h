// The CPU implementation of kernels/norms.h (OpenMP; see that header for what each op does).
#pragma once
#include <cstdint>

#include "kernels/norms.h"

namespace qv::kernels::cpu {

template <typename T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t rows, int64_t D, T eps);
template <typename T>
void rmsnorm_backward(const T* x, const T* w, const T* rstd, const T* dy, T* dx, T* dw,
                      int64_t rows, int64_t D);
template <typename T>
void layernorm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows,
                       int64_t D, T eps);
template <typename T>
void layernorm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx,
                        T* dw, T* db, int64_t rows, int64_t D);

}  // namespace qv::kernels::cpu
