// CUDA: kernels/optim.h (adamw.h): fused AdamW (clipping and the bf16 copy in the pass), gradient
// norm. Explicitly rounded
// intrinsics (__fmul_rn, __fadd_rn, __fsqrt_rn,
// __fdiv_rn) keep nvcc from contracting a * b + c into an FMA, which the CPU update never does.
#include <vector>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/common.cuh"

namespace qv::kernels::cuda {
namespace {

__global__ void adamw_k(AdamWScalars s, float* p, const float* g, float* m, float* v,
                        __nv_bfloat16* pb, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float gi = __fmul_rn(g[i], s.grad_scale);
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

constexpr int64_t kNormBlock = int64_t{1} << 15;  // as kernels/cpu/optim.cpp
constexpr int kNormThreads = 256;

// One CUDA block per norm block: sums[k] = sum of x[j]^2 over [begin[k], end[k]) in double.
__global__ void block_sq_k(const float* x, const FlatPiece* blocks, double* sums) {
  __shared__ double scratch[32];
  const FlatPiece b = blocks[blockIdx.x];
  double sq = 0;
  for (int64_t j = b.begin + threadIdx.x; j < b.end; j += blockDim.x)
    sq += static_cast<double>(x[j]) * x[j];
  sq = block_sum(sq, scratch);
  if (threadIdx.x == 0) sums[blockIdx.x] = sq;
}

}  // namespace

double squared_norm(const float* x, std::span<const FlatPiece> pieces) {
  std::vector<FlatPiece> blocks;
  for (const FlatPiece& piece : pieces)
    for (int64_t b = piece.begin; b < piece.end; b += kNormBlock)
      blocks.push_back({b, b + kNormBlock < piece.end ? b + kNormBlock : piece.end});
  if (blocks.empty()) return 0;
  const int64_t nb = static_cast<int64_t>(blocks.size());
  DeviceArray<FlatPiece> dblocks(blocks.data(), nb);
  DeviceArray<double> dsums(nb);
  for (int64_t k0 = 0; k0 < nb;
       k0 += 65535) {  // grid x limit per launch is far above; chunk anyway
    const int64_t cnt = nb - k0 < 65535 ? nb - k0 : 65535;
    QV_LAUNCH(static_cast<unsigned>(cnt), kNormThreads, 0, cuda_stream(), block_sq_k)
    (x, dblocks.data() + k0, dsums.data() + k0);
    QV_CUDA_LAUNCHED();
  }
  std::vector<double> sums(static_cast<size_t>(nb));
  dsums.download(sums.data());
  double sq = 0;
  for (double v : sums) sq += v;  // in order, as the CPU op
  return sq;
}

void adamw_update(const AdamWScalars& s, float* p, const float* g, float* m, float* v, bf16* p_bf16,
                  int64_t n) {
  if (n <= 0) return;
  QV_LAUNCH(grid_for(n, 256), 256, 0, cuda_stream(), adamw_k)(s, p, g, m, v, dev(p_bf16), n);
  QV_CUDA_LAUNCHED();
}

}  // namespace qv::kernels::cuda
