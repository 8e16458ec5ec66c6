// CUDA: the dense layers' primitives (kernels/linear.h composes the layers of them and the
// GEMMs): broadcast_bias here (gemm.cu), bias_grad in norms.h (a column sum, norms.cu).
#pragma once
#include <cstdint>

namespace qv::kernels::cuda {

// y[m, :] = bias for every row m < M (device memory).
template <typename T>
void broadcast_bias(const T* bias, T* y, int64_t M, int64_t N);

}  // namespace qv::kernels::cuda
