// CUDA: fused AdamW (adamw.h). Explicitly rounded intrinsics (__fmul_rn, __fadd_rn, __fsqrt_rn,
// __fdiv_rn) keep nvcc from contracting a * b + c into an FMA, which the CPU update never does.
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/common.cuh"

namespace qv::kernels::cuda {
namespace {

__global__ void adamw_k(AdamWScalars s, float* p, const float* g, float* m, float* v,
                        __nv_bfloat16* pb, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    float pi = __fmul_rn(p[i], s.decay);
    const float mi = __fadd_rn(__fmul_rn(m[i], s.b1), __fmul_rn(s.one_b1, gi));
    const float vi = __fadd_rn(__fmul_rn(v[i], s.b2), __fmul_rn(__fmul_rn(s.one_b2, gi), gi));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
    pi = __fadd_rn(pi, __fmul_rn(s.step_size, __fdiv_rn(mi, denom)));
    m[i] = mi;
    v[i] = vi;
    p[i] = pi;
    if (pb) pb[i] = __float2bfloat16_rn(pi);
  }
}

}  // namespace

void adamw_update(const AdamWScalars& s, float* p, const float* g, float* m, float* v, bf16* p_bf16,
                  int64_t n) {
  if (n <= 0) return;
  adamw_k<<<grid_for(n, 256), 256, 0, cuda_stream()>>>(s, p, g, m, v, dev(p_bf16), n);
  QV_CUDA_LAUNCHED();
}

}  // namespace qv::kernels::cuda
