// The CPU implementation of kernels/rope.h (OpenMP; see that header for what each op does).
#pragma once
#include <cstdint>

#include "kernels/rope.h"

namespace qv::kernels::cpu {

template <typename T>
void rope_forward(const T* x, const T* cos, const T* sin, T* y, int64_t rows, int64_t heads,
                  int64_t hd);
template <typename T>
void rope_backward(const T* dy, const T* cos, const T* sin, T* dx, int64_t rows, int64_t heads,
                   int64_t hd);

}  // namespace qv::kernels::cpu
