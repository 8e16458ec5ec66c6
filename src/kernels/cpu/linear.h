// The CPU primitives of kernels/linear.h's dense layers (OpenMP; the layers themselves are
// composed in kernels/linear.cpp from these and the GEMMs).
#pragma once
#include <cstdint>

namespace qv::kernels::cpu {

template <typename T>
void broadcast_bias(const T* bias, T* y, int64_t M, int64_t N);
template <typename T>
void bias_grad(const T* dy, T* dbias, int64_t M, int64_t N);

}  // namespace qv::kernels::cpu
