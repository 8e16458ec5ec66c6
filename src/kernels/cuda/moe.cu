// CUDA: the mixture-of-experts ops of kernels/moe.h (float), see kernels/cuda/moe.h.
//  - softmax and its backward: one warp per row (warp sums: another summation order than the
//    CPU's sequential one, within the float tolerance of tests/test_cuda_kernels.cpp);
//  - top-k and bucketing: the CPU op on a host copy (torch's tie order and the stable counting
//    sort are defined by the CPU code; E and the slot count are small), then an upload. They
//    wait for the stream (the device-to-host copy), once each per sparse layer and forward;
//  - top-k backward, dispatch, combine and their backwards, router statistics, the aux-loss
//    gradient: plain kernels without atomics that add in the CPU op's order (each output
//    element's terms in the same sequence, products rounded before the sum with __fmul_rn so
//    no fused multiply-add changes the bits); only the combine backward's d_weight (a dot over
//    H, warp sums) is summed in another order;
//  - the experts: per expert, cuBLASLt GEMMs over the expert's contiguous slot rows (gemm.h; in
//    bf16 with the activations rounded to bf16 as the CPU op rounds them) and SwiGLU kernels on
//    the fused [gate | up] rows. The host needs the slot count of each expert to launch those
//    GEMMs: one copy of offsets (E + 1 values) per forward and per backward, which waits for
//    the stream.
#include <vector>

#include "core/device.h"
#include "kernels/cpu/moe.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/moe.h"

namespace qv::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = 4;  // row kernels: one warp per row, 4 rows a block

#define QV_GRID_STRIDE(i, n)                                                             \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// The warp's row, or -1 past the last one.
__device__ __forceinline__ int64_t warp_row(int64_t rows) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + (threadIdx.x >> 5);
  return r < rows ? r : -1;
}

unsigned row_blocks(int64_t rows) {
  return static_cast<unsigned>(ceil_div(rows, kWarpsPerBlock));
}

__global__ void softmax_k(const float* logits, float* probs, int64_t N, int64_t E) {
  const int64_t i = warp_row(N);
  if (i < 0) return;
  const int lane = threadIdx.x & 31;
  const float* z = logits + i * E;
  float* p = probs + i * E;
  float m = -INFINITY;
  for (int64_t e = lane; e < E; e += 32) m = fmaxf(m, z[e]);
  m = warp_max(m);
  float sum = 0;
  for (int64_t e = lane; e < E; e += 32) {
    const float v = expf(z[e] - m);  // probs may alias logits: the lane reads z[e] first
    p[e] = v;
    sum += v;
  }
  sum = warp_sum(sum);
  for (int64_t e = lane; e < E; e += 32) p[e] /= sum;
}

__global__ void softmax_bwd_k(const float* probs, const float* d_probs, float* d_logits, int64_t N,
                              int64_t E) {
  const int64_t i = warp_row(N);
  if (i < 0) return;
  const int lane = threadIdx.x & 31;
  const float* p = probs + i * E;
  const float* dp = d_probs + i * E;
  float dot = 0;
  for (int64_t e = lane; e < E; e += 32) dot += dp[e] * p[e];
  dot = warp_sum(dot);
  for (int64_t e = lane; e < E; e += 32) d_logits[i * E + e] = p[e] * (dp[e] - dot);
}

// One thread per token, the CPU op's arithmetic in its order.
__global__ void topk_bwd_k(const float* probs, const int32_t* expert, const float* weight,
                           const float* d_weight, int64_t N, int64_t E, int64_t K, bool norm,
                           float* d_probs) {
  QV_GRID_STRIDE(i, N) {
    float* dp = d_probs + i * E;
    for (int64_t e = 0; e < E; ++e) dp[e] = 0;
    const int32_t* ex = expert + i * K;
    const float* dw = d_weight + i * K;
    if (!norm) {
      for (int64_t j = 0; j < K; ++j) dp[ex[j]] = dw[j];
      continue;
    }
    float sum = 0, dot = 0;
    for (int64_t j = 0; j < K; ++j) {
      sum = __fadd_rn(sum, probs[i * E + ex[j]]);
      dot = __fadd_rn(dot, __fmul_rn(dw[j], weight[i * K + j]));
    }
    for (int64_t j = 0; j < K; ++j) dp[ex[j]] = __fdiv_rn(__fsub_rn(dw[j], dot), sum);
  }
}

// One block per expert: the counts are integers (exact in any order); prob_sum adds the valid
// tokens in token order in double, as the CPU op does.
__global__ void router_stats_k(const float* probs, const int32_t* expert, const uint8_t* valid,
                               int64_t N, int64_t E, int64_t K, int64_t* tokens_per_expert,
                               double* chosen, double* prob_sum) {
  __shared__ long long scratch[32];
  const int64_t e = blockIdx.x;
  long long all = 0, kept = 0;
  for (int64_t s = threadIdx.x; s < N * K; s += blockDim.x)
    if (expert[s] == e) {
      ++all;
      if (!valid || valid[s / K]) ++kept;
    }
  all = block_sum(all, scratch);
  kept = block_sum(kept, scratch);
  if (threadIdx.x != 0) return;
  tokens_per_expert[e] += all;
  chosen[e] += static_cast<double>(kept);
  double sum = prob_sum[e];
  for (int64_t t = 0; t < N; ++t)
    if (!valid || valid[t]) sum += static_cast<double>(probs[t * E + e]);
  prob_sum[e] = sum;
}

__global__ void add_aux_grad_k(const float* per_expert, const uint8_t* valid, int64_t N, int64_t E,
                               float* d_probs) {
  QV_GRID_STRIDE(i, N * E) {
    if (!valid || valid[i / E]) d_probs[i] += per_expert[i % E];
  }
}

__global__ void dispatch_k(const float* x, const int64_t* order, int64_t S, int64_t H, int64_t K,
                           float* xs) {
  QV_GRID_STRIDE(i, S * H) {
    const int64_t p = i / H, c = i % H;
    xs[i] = x[(order[p] / K) * H + c];
  }
}

// dx[t, c] = the token's slots' gradients added in choice order (starting from 0, as the CPU).
__global__ void dispatch_bwd_k(const float* d_xs, const int64_t* position, int64_t N, int64_t H,
                               int64_t K, float* dx) {
  QV_GRID_STRIDE(i, N * H) {
    const int64_t t = i / H, c = i % H;
    float sum = 0;
    for (int64_t j = 0; j < K; ++j) sum = __fadd_rn(sum, d_xs[position[t * K + j] * H + c]);
    dx[i] = sum;
  }
}

__global__ void combine_k(const float* ys, const int64_t* position, const float* weight, int64_t N,
                          int64_t H, int64_t K, float* y) {
  QV_GRID_STRIDE(i, N * H) {
    const int64_t t = i / H, c = i % H;
    float sum = 0;
    for (int64_t j = 0; j < K; ++j)
      sum = __fadd_rn(sum, __fmul_rn(ys[position[t * K + j] * H + c], weight[t * K + j]));
    y[i] = sum;
  }
}

// One warp per slot: d_ys row (exact: one product) and d_weight (a warp-summed dot).
__global__ void combine_bwd_k(const float* dy, const float* ys, const int64_t* position,
                              const float* weight, int64_t S, int64_t H, int64_t K, float* d_ys,
                              float* d_weight) {
  const int64_t s = warp_row(S);
  if (s < 0) return;
  const int lane = threadIdx.x & 31;
  const int64_t p = position[s];
  const float* g = dy + (s / K) * H;
  const float* row = ys + p * H;
  const float w = weight[s];
  float dot = 0;
  for (int64_t c = lane; c < H; c += 32) {
    d_ys[p * H + c] = __fmul_rn(g[c], w);
    dot += g[c] * row[c];
  }
  dot = warp_sum(dot);
  if (lane == 0) d_weight[s] = dot;
}

// act[p, c] = silu(gate) * up on the fused rows [gate (I) | up (I)].
__global__ void swiglu_fused_k(const float* gate_up, int64_t S, int64_t I, float* act) {
  QV_GRID_STRIDE(i, S * I) {
    const int64_t p = i / I, c = i % I;
    const float g = gate_up[p * 2 * I + c], u = gate_up[p * 2 * I + I + c];
    act[i] = g / (1.f + expf(-g)) * u;
  }
}

__global__ void swiglu_fused_bwd_k(const float* gate_up, const float* d_act, int64_t S, int64_t I,
                                   float* d_gate_up) {
  QV_GRID_STRIDE(i, S * I) {
    const int64_t p = i / I, c = i % I;
    const float g = gate_up[p * 2 * I + c], u = gate_up[p * 2 * I + I + c], da = d_act[i];
    const float sg = 1.f / (1.f + expf(-g));
    d_gate_up[p * 2 * I + c] = da * u * (sg * (1.f + g * (1.f - sg)));
    d_gate_up[p * 2 * I + I + c] = da * (g * sg);
  }
}

// Device values the host needs, copied back (waits for the stream).
template <typename T>
std::vector<T> download(const T* p, int64_t n) {
  std::vector<T> host(static_cast<size_t>(n));
  if (n) copy_to_host(host.data(), p, n * static_cast<int64_t>(sizeof(T)));
  return host;
}

template <typename T>
void upload(T* p, const std::vector<T>& host) {
  if (!host.empty()) copy_to_device(p, host.data(), static_cast<int64_t>(host.size() * sizeof(T)));
}

// One expert's operand: its float rows and, in bf16 mode, the bf16 copy.
struct Operand {
  const float* f = nullptr;
  const bf16* b = nullptr;
};

// C = op(A) . op(B) + beta C, in bf16 (float accumulation) when both operands have copies.
void product(bool ta, bool tb, int64_t M, int64_t N, int64_t K, Operand A, int64_t lda, Operand B,
             int64_t ldb, float beta, float* C, int64_t ldc) {
  if (A.b && B.b) return gemm_bf16(ta, tb, M, N, K, 1.f, A.b, lda, B.b, ldb, beta, C, ldc);
  gemm<float>(ta, tb, M, N, K, 1.f, A.f, lda, B.f, ldb, beta, C, ldc);
}

// The bf16 copy of an activation array when the experts multiply in bf16 (else empty).
DeviceArray<bf16> rounded_if(bool b16, const float* x, int64_t n) {
  if (!b16) return {};
  DeviceArray<bf16> out(n);
  convert_to_bf16(x, out.data(), n);
  return out;
}

Operand rows(const float* f, const DeviceArray<bf16>& b, int64_t offset) {
  return {f + offset, b.size() ? b.data() + offset : nullptr};
}

bool bf16_mode(const MoeExperts<float>& w) {
  return w.gate_up_b16 != nullptr && w.down_b16 != nullptr;
}

}  // namespace

template <typename T>
void moe_softmax(const T* logits, T* probs, int64_t N, int64_t E) {
  if (N == 0) return;
  QV_LAUNCH(row_blocks(N), 32 * kWarpsPerBlock, 0, cuda_stream(), softmax_k)(logits, probs, N, E);
  QV_CUDA_LAUNCHED();
}

template <typename T>
void moe_softmax_backward(const T* probs, const T* d_probs, T* d_logits, int64_t N, int64_t E) {
  if (N == 0) return;
  QV_LAUNCH(row_blocks(N), 32 * kWarpsPerBlock, 0, cuda_stream(), softmax_bwd_k)
  (probs, d_probs, d_logits, N, E);
  QV_CUDA_LAUNCHED();
}

template <typename T>
void moe_topk(const T* probs, const MoeDims& d, int32_t* expert, T* weight) {
  const std::vector<float> p = download(probs, d.tokens * d.experts);
  std::vector<int32_t> ex(static_cast<size_t>(d.slots()));
  std::vector<float> w(static_cast<size_t>(d.slots()));
  {
    const DeviceScope on_host(kCpuDevice);  // the CPU op's scratch comes from the host arena
    cpu::moe_topk(p.data(), d, ex.data(), w.data());
  }
  upload(expert, ex);
  upload(weight, w);
}

template <typename T>
void moe_topk_backward(const T* probs, const int32_t* expert, const T* weight, const T* d_weight,
                       const MoeDims& d, T* d_probs) {
  if (d.tokens == 0) return;
  QV_LAUNCH(grid_for(d.tokens, kThreads), kThreads, 0, cuda_stream(), topk_bwd_k)
  (probs, expert, weight, d_weight, d.tokens, d.experts, d.top_k, d.norm_topk_prob, d_probs);
  QV_CUDA_LAUNCHED();
}

void moe_router_stats(const float* probs, const int32_t* expert, const uint8_t* valid,
                      const MoeDims& d, int64_t* tokens_per_expert, double* chosen,
                      double* prob_sum) {
  if (d.experts == 0) return;
  QV_LAUNCH(static_cast<unsigned>(d.experts), kThreads, 0, cuda_stream(), router_stats_k)
  (probs, expert, valid, d.tokens, d.experts, d.top_k, tokens_per_expert, chosen, prob_sum);
  QV_CUDA_LAUNCHED();
}

void moe_add_aux_grad(const float* per_expert, const uint8_t* valid, int64_t N, int64_t E,
                      float* d_probs) {
  if (N * E == 0) return;
  QV_LAUNCH(grid_for(N * E, kThreads), kThreads, 0, cuda_stream(), add_aux_grad_k)
  (per_expert, valid, N, E, d_probs);
  QV_CUDA_LAUNCHED();
}

void moe_bucket(const int32_t* expert, const MoeDims& d, int64_t* offsets, int64_t* order,
                int64_t* position) {
  const std::vector<int32_t> ex = download(expert, d.slots());
  std::vector<int64_t> off(static_cast<size_t>(d.experts + 1)), ord(ex.size()), pos(ex.size());
  {
    const DeviceScope on_host(kCpuDevice);
    cpu::moe_bucket(ex.data(), d, off.data(), ord.data(), pos.data());
  }
  upload(offsets, off);
  upload(order, ord);
  upload(position, pos);
}

template <typename T>
void moe_dispatch(const T* x, const MoeRouting& r, const MoeDims& d, T* xs) {
  const int64_t n = d.slots() * d.hidden;
  if (n == 0) return;
  QV_LAUNCH(grid_for(n, kThreads), kThreads, 0, cuda_stream(), dispatch_k)
  (x, r.order, d.slots(), d.hidden, d.top_k, xs);
  QV_CUDA_LAUNCHED();
}

template <typename T>
void moe_dispatch_backward(const T* d_xs, const MoeRouting& r, const MoeDims& d, T* dx) {
  const int64_t n = d.tokens * d.hidden;
  if (n == 0) return;
  QV_LAUNCH(grid_for(n, kThreads), kThreads, 0, cuda_stream(), dispatch_bwd_k)
  (d_xs, r.position, d.tokens, d.hidden, d.top_k, dx);
  QV_CUDA_LAUNCHED();
}

template <typename T>
void moe_combine(const T* ys, const MoeRouting& r, const T* weight, const MoeDims& d, T* y) {
  const int64_t n = d.tokens * d.hidden;
  if (n == 0) return;
  QV_LAUNCH(grid_for(n, kThreads), kThreads, 0, cuda_stream(), combine_k)
  (ys, r.position, weight, d.tokens, d.hidden, d.top_k, y);
  QV_CUDA_LAUNCHED();
}

template <typename T>
void moe_combine_backward(const T* dy, const T* ys, const MoeRouting& r, const T* weight,
                          const MoeDims& d, T* d_ys, T* d_weight) {
  if (d.slots() == 0) return;
  QV_LAUNCH(row_blocks(d.slots()), 32 * kWarpsPerBlock, 0, cuda_stream(), combine_bwd_k)
  (dy, ys, r.position, weight, d.slots(), d.hidden, d.top_k, d_ys, d_weight);
  QV_CUDA_LAUNCHED();
}

template <typename T>
void moe_experts_forward(const T* x, const MoeExperts<T>& w, const MoeRouting& r, const T* weight,
                         const MoeDims& d, const MoeActs<T>& a, T* y) {
  const int64_t S = d.slots(), H = d.hidden, I = d.inter;
  const std::vector<int64_t> off = download(r.offsets, d.experts + 1);  // waits for the stream
  cuda::moe_dispatch(x, r, d, a.xs);
  const bool b16 = bf16_mode(w);
  const DeviceArray<bf16> xs_b = rounded_if(b16, a.xs, S * H);
  for (int64_t e = 0; e < d.experts; ++e) {
    const int64_t p0 = off[e], n = off[e + 1] - p0;
    if (n == 0) continue;
    const Operand gu{w.gate_up + e * H * 2 * I, b16 ? w.gate_up_b16 + e * H * 2 * I : nullptr};
    product(false, false, n, 2 * I, H, rows(a.xs, xs_b, p0 * H), H, gu, 2 * I, 0.f,
            a.gate_up + p0 * 2 * I, 2 * I);
  }
  if (S * I > 0) {
    QV_LAUNCH(grid_for(S * I, kThreads), kThreads, 0, cuda_stream(), swiglu_fused_k)
    (a.gate_up, S, I, a.act);
    QV_CUDA_LAUNCHED();
  }
  const DeviceArray<bf16> act_b = rounded_if(b16, a.act, S * I);
  for (int64_t e = 0; e < d.experts; ++e) {
    const int64_t p0 = off[e], n = off[e + 1] - p0;
    if (n == 0) continue;
    const Operand dn{w.down + e * I * H, b16 ? w.down_b16 + e * I * H : nullptr};
    product(false, false, n, H, I, rows(a.act, act_b, p0 * I), I, dn, H, 0.f, a.ys + p0 * H, H);
  }
  cuda::moe_combine(a.ys, r, weight, d, y);
}

template <typename T>
void moe_experts_backward(const T* dy, const MoeExperts<T>& w, const MoeRouting& r, const T* weight,
                          const MoeDims& d, const MoeSaved<T>& a, T* dx, T* d_gate_up, T* d_down,
                          T* d_weight) {
  const int64_t S = d.slots(), H = d.hidden, I = d.inter;
  const std::vector<int64_t> off = download(r.offsets, d.experts + 1);  // waits for the stream
  DeviceArray<float> d_ys(S * H), d_act(S * I), d_gu(S * 2 * I), d_xs(S * H);
  cuda::moe_combine_backward(dy, a.ys, r, weight, d, d_ys.data(), d_weight);
  const bool b16 = bf16_mode(w);
  const DeviceArray<bf16> dys_b = rounded_if(b16, d_ys.data(), S * H);
  const DeviceArray<bf16> act_b = rounded_if(b16, a.act, S * I);
  for (int64_t e = 0; e < d.experts; ++e) {
    const int64_t p0 = off[e], n = off[e + 1] - p0;
    if (n == 0) continue;
    const Operand dn{w.down + e * I * H, b16 ? w.down_b16 + e * I * H : nullptr};
    product(false, true, n, I, H, rows(d_ys.data(), dys_b, p0 * H), H, dn, H, 0.f,
            d_act.data() + p0 * I, I);
    if (d_down)
      product(true, false, I, H, n, rows(a.act, act_b, p0 * I), I, rows(d_ys.data(), dys_b, p0 * H),
              H, 1.f, d_down + e * I * H, H);
  }
  if (S * I > 0) {
    QV_LAUNCH(grid_for(S * I, kThreads), kThreads, 0, cuda_stream(), swiglu_fused_bwd_k)
    (a.gate_up, d_act.data(), S, I, d_gu.data());
    QV_CUDA_LAUNCHED();
  }
  const DeviceArray<bf16> dgu_b = rounded_if(b16, d_gu.data(), S * 2 * I);
  const DeviceArray<bf16> xs_b = rounded_if(b16, a.xs, S * H);
  for (int64_t e = 0; e < d.experts; ++e) {
    const int64_t p0 = off[e], n = off[e + 1] - p0;
    if (n == 0) continue;
    const Operand gu{w.gate_up + e * H * 2 * I, b16 ? w.gate_up_b16 + e * H * 2 * I : nullptr};
    product(false, true, n, H, 2 * I, rows(d_gu.data(), dgu_b, p0 * 2 * I), 2 * I, gu, 2 * I, 0.f,
            d_xs.data() + p0 * H, H);
    if (d_gate_up)
      product(true, false, H, 2 * I, n, rows(a.xs, xs_b, p0 * H), H,
              rows(d_gu.data(), dgu_b, p0 * 2 * I), 2 * I, 1.f, d_gate_up + e * H * 2 * I, 2 * I);
  }
  cuda::moe_dispatch_backward(d_xs.data(), r, d, dx);
}

template void moe_softmax<float>(const float*, float*, int64_t, int64_t);
template void moe_softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t);
template void moe_topk<float>(const float*, const MoeDims&, int32_t*, float*);
template void moe_topk_backward<float>(const float*, const int32_t*, const float*, const float*,
                                       const MoeDims&, float*);
template void moe_dispatch<float>(const float*, const MoeRouting&, const MoeDims&, float*);
template void moe_dispatch_backward<float>(const float*, const MoeRouting&, const MoeDims&, float*);
template void moe_combine<float>(const float*, const MoeRouting&, const float*, const MoeDims&,
                                 float*);
template void moe_combine_backward<float>(const float*, const float*, const MoeRouting&,
                                          const float*, const MoeDims&, float*, float*);
template void moe_experts_forward<float>(const float*, const MoeExperts<float>&, const MoeRouting&,
                                         const float*, const MoeDims&, const MoeActs<float>&,
                                         float*);
template void moe_experts_backward<float>(const float*, const MoeExperts<float>&, const MoeRouting&,
                                          const float*, const MoeDims&, const MoeSaved<float>&,
                                          float*, float*, float*, float*);

}  // namespace qv::kernels::cuda
