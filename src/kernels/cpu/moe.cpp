// Mixture-of-experts routing and grouped expert GEMMs (see moe.h).
#include "kernels/cpu/moe.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>

#include "core/buffer_pool.h"
#include "kernels/cpu/gemm.h"

namespace qv::kernels::cpu {
namespace {

constexpr int64_t kParallelMin = 1 << 14;  // elements below which loops stay serial

template <typename T>
bool nan_first_greater(const std::pair<T, int64_t>& a, const std::pair<T, int64_t>& b) {
  return (std::isnan(a.first) && !std::isnan(b.first)) || a.first > b.first;
}

// One expert's operand: its float values and, in bf16 mode, the bf16 copy.
template <typename T>
struct Operand {
  const T* f = nullptr;
  const bf16* b = nullptr;
};

// The experts' row counts change every step as routing moves, and oneDNN's bf16 matmul is built
// per shape (allocating). So in bf16 the token dimension of an expert product is cut into pieces
// of fixed sizes: 256 rows at a time, then the remainder's binary digits (128, 64, ..., 1). Each
// product then has at most 9 shapes, all built the first time it is seen, and a step allocates
// nothing however the tokens are routed.
constexpr int64_t kPiece = 256;

template <class F>
void for_each_piece(int64_t n, F&& piece) {
  int64_t at = 0;
  for (; n - at >= kPiece; at += kPiece) piece(at, kPiece);
  for (int64_t p = kPiece / 2; p >= 1; p /= 2)
    if (n - at >= p) piece(at, p), at += p;
}

// The bf16 product with the token dimension in pieces: M (rows of C and of op(A)) when A is not
// transposed, else K (the reduction: the pieces' partial products add up in C, in float).
void product_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const bf16* A, int64_t lda,
                  const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (!ta) {
    for (int64_t p = kPiece; p >= 1; p /= 2)
      gemm_bf16_prepare(ta, tb, p, N, K, 1.0f, lda, ldb, beta, ldc);
    for_each_piece(M, [&](int64_t m0, int64_t m) {
      gemm_bf16(ta, tb, m, N, K, 1.0f, A + m0 * lda, lda, B, ldb, beta, C + m0 * ldc, ldc);
    });
    return;
  }
  for (int64_t p = kPiece; p >= 1; p /= 2)
    for (const float b : {beta, 1.0f}) gemm_bf16_prepare(ta, tb, M, N, p, 1.0f, lda, ldb, b, ldc);
  bool first = true;
  for_each_piece(K, [&](int64_t k0, int64_t k) {
    gemm_bf16(ta, tb, M, N, k, 1.0f, A + k0 * lda, lda, tb ? B + k0 : B + k0 * ldb, ldb,
              first ? beta : 1.0f, C, ldc);
    first = false;
  });
}

// C = op(A) . op(B) + beta C through the GEMM engine, in bf16 when both operands have copies.
template <typename T>
void product(bool ta, bool tb, int64_t M, int64_t N, int64_t K, Operand<T> A, int64_t lda,
             Operand<T> B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    if (A.b && B.b) return product_bf16(ta, tb, M, N, K, A.b, lda, B.b, ldb, beta, C, ldc);
  }
  gemm<T>(ta, tb, M, N, K, T(1), A.f, lda, B.f, ldb, beta, C, ldc);
}

// bf16 copy of an activation buffer when the weights multiply in bf16, else empty.
template <typename T>
PoolVector<bf16> rounded_if(bool bf16_mode, const T* x, int64_t n) {
  PoolVector<bf16> out;
  if constexpr (std::is_same_v<T, float>) {
    if (bf16_mode) {
      out.resize(n);
      to_bf16(x, out.data(), n);
    }
  }
  return out;
}

template <typename T>
Operand<T> rows(const T* f, const PoolVector<bf16>& b, int64_t offset) {
  return {f + offset, b.empty() ? nullptr : b.data() + offset};
}

template <typename T>
bool bf16_mode(const MoeExperts<T>& w) {
  return w.gate_up_b16 != nullptr && w.down_b16 != nullptr;
}

}  // namespace

template <typename T>
void moe_softmax(const T* logits, T* probs, int64_t N, int64_t E) {
#pragma omp parallel for if (N * E > kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const T* z = logits + i * E;
    T* p = probs + i * E;
    const T m = *std::max_element(z, z + E);
    T sum = 0;
    for (int64_t e = 0; e < E; ++e) {
      p[e] = std::exp(z[e] - m);
      sum += p[e];
    }
    for (int64_t e = 0; e < E; ++e) p[e] /= sum;
  }
}

template <typename T>
void moe_softmax_backward(const T* probs, const T* d_probs, T* d_logits, int64_t N, int64_t E) {
#pragma omp parallel for if (N * E > kParallelMin)
  for (int64_t i = 0; i < N; ++i) {
    const T* p = probs + i * E;
    const T* dp = d_probs + i * E;
    T dot = 0;
    for (int64_t e = 0; e < E; ++e) dot += dp[e] * p[e];
    for (int64_t e = 0; e < E; ++e) d_logits[i * E + e] = p[e] * (dp[e] - dot);
  }
}

template <typename T>
void moe_topk(const T* probs, const MoeDims& d, int32_t* expert, T* weight) {
  const int64_t E = d.experts, K = d.top_k;
  PoolVector<std::pair<T, int64_t>> all(static_cast<size_t>(E) * d.tokens);
  // torch's CPU topk (aten TopKImpl.h), so that ties resolve as there.
#pragma omp parallel for if (d.tokens * E > kParallelMin)
  for (int64_t i = 0; i < d.tokens; ++i) {
    auto* q = all.data() + i * E;
    for (int64_t e = 0; e < E; ++e) q[e] = {probs[i * E + e], e};
    auto cmp = nan_first_greater<T>;
    if (K * 64 <= E) {
      std::partial_sort(q, q + K, q + E, cmp);
    } else {
      std::nth_element(q, q + K - 1, q + E, cmp);
      std::sort(q, q + K - 1, cmp);
    }
    T sum = 0;
    for (int64_t j = 0; j < K; ++j) sum += q[j].first;
    for (int64_t j = 0; j < K; ++j) {
      expert[i * K + j] = static_cast<int32_t>(q[j].second);
      weight[i * K + j] = d.norm_topk_prob ? q[j].first / sum : q[j].first;
    }
  }
}

template <typename T>
void moe_topk_backward(const T* probs, const int32_t* expert, const T* weight, const T* d_weight,
                       const MoeDims& d, T* d_probs) {
  const int64_t E = d.experts, K = d.top_k;
#pragma omp parallel for if (d.tokens * E > kParallelMin)
  for (int64_t i = 0; i < d.tokens; ++i) {
    T* dp = d_probs + i * E;
    std::fill(dp, dp + E, T(0));
    const int32_t* ex = expert + i * K;
    const T* dw = d_weight + i * K;
    if (!d.norm_topk_prob) {
      for (int64_t j = 0; j < K; ++j) dp[ex[j]] = dw[j];
      continue;
    }
    // w_j = p_j / S with S = sum of the chosen p: dp_j = (dw_j - sum_l dw_l w_l) / S.
    T sum = 0, dot = 0;
    for (int64_t j = 0; j < K; ++j) {
      sum += probs[i * E + ex[j]];
      dot += dw[j] * weight[i * K + j];
    }
    for (int64_t j = 0; j < K; ++j) dp[ex[j]] = (dw[j] - dot) / sum;
  }
}

void moe_router_stats(const float* probs, const int32_t* expert, const uint8_t* valid,
                      const MoeDims& d, int64_t* tokens_per_expert, double* chosen,
                      double* prob_sum) {
  const int64_t E = d.experts, K = d.top_k;
  for (int64_t s = 0; s < d.slots(); ++s) ++tokens_per_expert[expert[s]];
  for (int64_t t = 0; t < d.tokens; ++t) {
    if (valid && !valid[t]) continue;
    for (int64_t j = 0; j < K; ++j) chosen[expert[t * K + j]] += 1;
    for (int64_t e = 0; e < E; ++e) prob_sum[e] += probs[t * E + e];
  }
}

void moe_add_aux_grad(const float* per_expert, const uint8_t* valid, int64_t N, int64_t E,
                      float* d_probs) {
  for (int64_t t = 0; t < N; ++t) {
    if (valid && !valid[t]) continue;
    for (int64_t e = 0; e < E; ++e) d_probs[t * E + e] += per_expert[e];
  }
}

void moe_bucket(const int32_t* expert, const MoeDims& d, int64_t* offsets, int64_t* order,
                int64_t* position) {
  const int64_t S = d.slots(), E = d.experts;
  std::fill(offsets, offsets + E + 1, 0);
  for (int64_t s = 0; s < S; ++s) ++offsets[expert[s] + 1];
  for (int64_t e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  // Fill in slot order: each expert's slots stay in token order.
  PoolVector<int64_t> next(offsets, offsets + E);
  for (int64_t s = 0; s < S; ++s) {
    const int64_t p = next[expert[s]]++;
    order[p] = s;
    position[s] = p;
  }
}

template <typename T>
void moe_dispatch(const T* x, const MoeRouting& r, const MoeDims& d, T* xs) {
  const int64_t S = d.slots(), H = d.hidden, K = d.top_k;
#pragma omp parallel for if (S * H > kParallelMin)
  for (int64_t p = 0; p < S; ++p) std::copy_n(x + (r.order[p] / K) * H, H, xs + p * H);
}

template <typename T>
void moe_dispatch_backward(const T* d_xs, const MoeRouting& r, const MoeDims& d, T* dx) {
  const int64_t H = d.hidden, K = d.top_k;
  // Each token sums its slots' input gradients (no scatter races, fixed order).
#pragma omp parallel for if (d.tokens * H > kParallelMin)
  for (int64_t t = 0; t < d.tokens; ++t) {
    T* out = dx + t * H;
    std::fill(out, out + H, T(0));
    for (int64_t j = 0; j < K; ++j) {
      const T* g = d_xs + r.position[t * K + j] * H;
      for (int64_t c = 0; c < H; ++c) out[c] += g[c];
    }
  }
}

template <typename T>
void moe_combine(const T* ys, const MoeRouting& r, const T* weight, const MoeDims& d, T* y) {
  const int64_t H = d.hidden, K = d.top_k;
#pragma omp parallel for if (d.tokens * H > kParallelMin)
  for (int64_t t = 0; t < d.tokens; ++t) {
    T* out = y + t * H;
    std::fill(out, out + H, T(0));
    for (int64_t j = 0; j < K; ++j) {
      const T wt = weight[t * K + j];
      const T* row = ys + r.position[t * K + j] * H;
      for (int64_t c = 0; c < H; ++c) out[c] += row[c] * wt;
    }
  }
}

template <typename T>
void moe_combine_backward(const T* dy, const T* ys, const MoeRouting& r, const T* weight,
                          const MoeDims& d, T* d_ys, T* d_weight) {
  const int64_t S = d.slots(), H = d.hidden, K = d.top_k;
#pragma omp parallel for if (S * H > kParallelMin)
  for (int64_t s = 0; s < S; ++s) {
    const int64_t p = r.position[s];
    const T* g = dy + (s / K) * H;
    const T* row = ys + p * H;
    T dot = 0;
    for (int64_t c = 0; c < H; ++c) {
      d_ys[p * H + c] = g[c] * weight[s];
      dot += g[c] * row[c];
    }
    d_weight[s] = dot;
  }
}

template <typename T>
void moe_experts_forward(const T* x, const MoeExperts<T>& w, const MoeRouting& r, const T* weight,
                         const MoeDims& d, const MoeActs<T>& a, T* y) {
  const int64_t S = d.slots(), H = d.hidden, I = d.inter;
  cpu::moe_dispatch(x, r, d, a.xs);
  const bool b16 = bf16_mode(w);
  const PoolVector<bf16> xs_b = rounded_if(b16, a.xs, S * H);
  for (int64_t e = 0; e < d.experts; ++e) {
    const int64_t p0 = r.offsets[e], n = r.offsets[e + 1] - p0;
    if (n == 0) continue;
    const Operand<T> gu{w.gate_up + e * H * 2 * I, b16 ? w.gate_up_b16 + e * H * 2 * I : nullptr};
    product<T>(false, false, n, 2 * I, H, rows(a.xs, xs_b, p0 * H), H, gu, 2 * I, T(0),
               a.gate_up + p0 * 2 * I, 2 * I);
  }
#pragma omp parallel for if (S * I > kParallelMin)
  for (int64_t p = 0; p < S; ++p) {
    const T* g = a.gate_up + p * 2 * I;
    for (int64_t c = 0; c < I; ++c)
      a.act[p * I + c] = g[c] / (T(1) + std::exp(-g[c])) * g[I + c];  // torch's silu(g) * up
  }
  const PoolVector<bf16> act_b = rounded_if(b16, a.act, S * I);
  for (int64_t e = 0; e < d.experts; ++e) {
    const int64_t p0 = r.offsets[e], n = r.offsets[e + 1] - p0;
    if (n == 0) continue;
    const Operand<T> dn{w.down + e * I * H, b16 ? w.down_b16 + e * I * H : nullptr};
    product<T>(false, false, n, H, I, rows(a.act, act_b, p0 * I), I, dn, H, T(0), a.ys + p0 * H, H);
  }
  cpu::moe_combine(a.ys, r, weight, d, y);
}

template <typename T>
void moe_experts_backward(const T* dy, const MoeExperts<T>& w, const MoeRouting& r, const T* weight,
                          const MoeDims& d, const MoeSaved<T>& a, T* dx, T* d_gate_up, T* d_down,
                          T* d_weight) {
  const int64_t S = d.slots(), H = d.hidden, I = d.inter;
  // Combine: d ys = weight * dy; d weight = dy . ys.
  PoolVector<T> d_ys(S * H);
  cpu::moe_combine_backward(dy, a.ys, r, weight, d, d_ys.data(), d_weight);
  const bool b16 = bf16_mode(w);
  const PoolVector<bf16> dys_b = rounded_if(b16, d_ys.data(), S * H);
  const PoolVector<bf16> act_b = rounded_if(b16, a.act, S * I);
  PoolVector<T> d_act(S * I), d_gu(S * 2 * I);
  for (int64_t e = 0; e < d.experts; ++e) {
    const int64_t p0 = r.offsets[e], n = r.offsets[e + 1] - p0;
    if (n == 0) continue;
    const Operand<T> dn{w.down + e * I * H, b16 ? w.down_b16 + e * I * H : nullptr};
    product<T>(false, true, n, I, H, rows(d_ys.data(), dys_b, p0 * H), H, dn, H, T(0),
               d_act.data() + p0 * I, I);
    if (d_down)
      product<T>(true, false, I, H, n, rows(a.act, act_b, p0 * I), I,
                 rows(d_ys.data(), dys_b, p0 * H), H, T(1), d_down + e * I * H, H);
  }
#pragma omp parallel for if (S * I > kParallelMin)
  for (int64_t p = 0; p < S; ++p) {
    const T* g = a.gate_up + p * 2 * I;
    T* dg = d_gu.data() + p * 2 * I;
    for (int64_t c = 0; c < I; ++c) {
      const T gv = g[c], u = g[I + c], da = d_act[p * I + c];
      const T sg = T(1) / (T(1) + std::exp(-gv));
      dg[c] = da * u * (sg * (T(1) + gv * (T(1) - sg)));  // d silu(g) / dg
      dg[I + c] = da * (gv * sg);
    }
  }
  const PoolVector<bf16> dgu_b = rounded_if(b16, d_gu.data(), S * 2 * I);
  const PoolVector<bf16> xs_b = rounded_if(b16, a.xs, S * H);
  PoolVector<T> d_xs(S * H);
  for (int64_t e = 0; e < d.experts; ++e) {
    const int64_t p0 = r.offsets[e], n = r.offsets[e + 1] - p0;
    if (n == 0) continue;
    const Operand<T> gu{w.gate_up + e * H * 2 * I, b16 ? w.gate_up_b16 + e * H * 2 * I : nullptr};
    product<T>(false, true, n, H, 2 * I, rows(d_gu.data(), dgu_b, p0 * 2 * I), 2 * I, gu, 2 * I,
               T(0), d_xs.data() + p0 * H, H);
    if (d_gate_up)
      product<T>(true, false, H, 2 * I, n, rows(a.xs, xs_b, p0 * H), H,
                 rows(d_gu.data(), dgu_b, p0 * 2 * I), 2 * I, T(1), d_gate_up + e * H * 2 * I,
                 2 * I);
  }
  cpu::moe_dispatch_backward(d_xs.data(), r, d, dx);
}

#define QV_INSTANTIATE(T)                                                                          \
  template void moe_dispatch<T>(const T*, const MoeRouting&, const MoeDims&, T*);                  \
  template void moe_dispatch_backward<T>(const T*, const MoeRouting&, const MoeDims&, T*);         \
  template void moe_combine<T>(const T*, const MoeRouting&, const T*, const MoeDims&, T*);         \
  template void moe_combine_backward<T>(const T*, const T*, const MoeRouting&, const T*,           \
                                        const MoeDims&, T*, T*);                                   \
  template void moe_softmax<T>(const T*, T*, int64_t, int64_t);                                    \
  template void moe_softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t);                 \
  template void moe_topk<T>(const T*, const MoeDims&, int32_t*, T*);                               \
  template void moe_topk_backward<T>(const T*, const int32_t*, const T*, const T*, const MoeDims&, \
                                     T*);                                                          \
  template void moe_experts_forward<T>(const T*, const MoeExperts<T>&, const MoeRouting&,          \
                                       const T*, const MoeDims&, const MoeActs<T>&, T*);           \
  template void moe_experts_backward<T>(const T*, const MoeExperts<T>&, const MoeRouting&,         \
                                        const T*, const MoeDims&, const MoeSaved<T>&, T*, T*, T*,  \
                                        T*);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

}  // namespace qv::kernels::cpu
