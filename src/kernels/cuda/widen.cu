// CUDA: float values widened to double on the device (the deferred cross-entropy's row terms,
// kernels/cuda/cross_entropy.h cross_entropy_terms): the host later reads the doubles back in
// one copy, and double(float) is exact, so the sum is the one the returning op computes.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cross_entropy.h"

namespace qv::kernels::cuda {
namespace {

__global__ void widen_k(const float* x, double* y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = static_cast<double>(x[i]);
}

}  // namespace

void widen_to_double(const float* x, double* y, int64_t n) {
  if (n <= 0) return;
  QV_LAUNCH(grid_for(n, 256), 256, 0, cuda_stream(), widen_k)(x, y, n);
  QV_CUDA_LAUNCHED();
}

}  // namespace qv::kernels::cuda
