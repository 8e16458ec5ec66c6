// CUDA: flash-style variable-length attention (attention.h). Probabilities are never stored:
// the forward keeps a running max and sum per query (online softmax) and saves lse; the backward
// recomputes P = exp(S - lse) tile by tile.
//
// Layout of the work. A block of kWarps warps takes kWarps consecutive rows of one head; each
// warp owns one row (a query in forward / dq, a key in dk-dv). The block walks the union of its
// rows' partner ranges in tiles of kTile partners, staged in shared memory; within a tile lane j
// scores partner j (a dot product over head_dim against the row, read from shared memory) and the
// row's outputs are accumulated with lane d holding dims d, d + 32, ... Masks are per element:
// a partner counts when it is in the row's document (cu_seqlens, found by binary search on the
// device), before or at the row when causal, and not padding (key_valid).
//
// Barriers: every thread of the block runs the same tile loop (its bounds are block-wide); warps
// whose row has nothing to do in a tile skip the arithmetic but not the barriers. Shuffles are
// warp-wide with all 32 lanes present (a warp's branch depends only on its row).
#include <cfloat>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_masks.cuh"
#include "kernels/cuda/attention_tc.h"
#include "kernels/cuda/common.cuh"

namespace qv::kernels::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kTile = 32;  // partners per tile: one per lane
constexpr int kMaxHd = 256;
constexpr int kPer = kMaxHd / 32;  // dims per lane

// Block-wide union of the warps' ranges (shared scratch of 2 * kWarps int64).
__device__ void block_union(int64_t lo, int64_t hi, int64_t* scratch, int64_t* blo, int64_t* bhi) {
  const int warp = threadIdx.x >> 5;
  if ((threadIdx.x & 31) == 0)
    scratch[warp] = lo < hi ? lo : INT64_MAX, scratch[kWarps + warp] = lo < hi ? hi : 0;
  __syncthreads();
  int64_t l = INT64_MAX, h = 0;
  for (int w = 0; w < kWarps; ++w) {
    l = scratch[w] < l ? scratch[w] : l;
    h = scratch[kWarps + w] > h ? scratch[kWarps + w] : h;
  }
  __syncthreads();
  *blo = l, *bhi = h;
}

// Loads rows [t0, t0 + kTile) of one head of x ([tokens, nh, hd]) into tile (row stride ld),
// zeros past `end`.
template <typename D>
__device__ void load_tile(const D* x, int64_t nh, int64_t head, int64_t hd, int64_t t0, int64_t end,
                          float* tile, int ld) {
  for (int idx = threadIdx.x; idx < kTile * hd; idx += blockDim.x) {
    const int r = idx / static_cast<int>(hd), d = idx % static_cast<int>(hd);
    const int64_t t = t0 + r;
    tile[r * ld + d] = t < end ? to_f(x[(t * nh + head) * hd + d]) : 0.f;
  }
}

// One row of head h of x into the warp's shared vector.
template <typename D>
__device__ void load_row(const D* x, int64_t nh, int64_t head, int64_t hd, int64_t t, float* row) {
  for (int d = threadIdx.x & 31; d < hd; d += 32) row[d] = to_f(x[(t * nh + head) * hd + d]);
}

__device__ float dot_shared(const float* a, const float* b, int64_t hd) {
  float s = 0.f;
  for (int d = 0; d < hd; ++d) s += a[d] * b[d];
  return s;
}

// ---- forward (and decode) ----
// Shared: K tile [kTile][hd+1], V tile [kTile][hd], Q rows [kWarps][hd].
template <typename D, typename L>
__global__ void __launch_bounds__(kWarps * 32)
    attn_fwd_k(const D* q, const D* k, const D* v, D* out, L* lse, AttnArgs a) {
  QV_DYNAMIC_SHARED(float, smem);
  __shared__ int64_t range_scratch[2 * kWarps];
  const int hd = static_cast<int>(a.hd);
  float* Ks = smem;
  float* Vs = Ks + kTile * (hd + 1);
  float* Qs = Vs + kTile * hd;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t h = blockIdx.y;
  const int64_t kvh = h / (a.heads / a.kv_heads);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const bool row_ok = i < a.rows;
  int64_t lo = 0, hi = 0;
  if (row_ok) query_range(a, i, &lo, &hi);
  int64_t blo, bhi;
  block_union(lo, hi, range_scratch, &blo, &bhi);
  float* qrow = Qs + warp * hd;
  if (row_ok) load_row(q, a.heads, h, hd, i, qrow);
  __syncwarp();

  float m = -INFINITY, l = 0.f, acc[kPer];
#pragma unroll
  for (int c = 0; c < kPer; ++c) acc[c] = 0.f;

  for (int64_t t0 = blo; t0 < bhi; t0 += kTile) {
    load_tile(k, a.kv_heads, kvh, hd, t0, bhi, Ks, hd + 1);
    load_tile(v, a.kv_heads, kvh, hd, t0, bhi, Vs, hd);
    __syncthreads();
    if (row_ok && t0 < hi && t0 + kTile > lo) {
      const int64_t key = t0 + lane;
      const bool valid = key >= lo && key < hi && (!a.key_valid || a.key_valid[key]);
      const float s = valid ? dot_shared(qrow, Ks + lane * (hd + 1), hd) * a.scale : -INFINITY;
      const float new_m = fmaxf(m, warp_max(s));
      if (new_m != -INFINITY) {              // else nothing seen yet: all stays zero
        const float corr = expf(m - new_m);  // m == -inf gives 0
        const float p = valid ? expf(s - new_m) : 0.f;
        l = l * corr + warp_sum(p);
#pragma unroll
        for (int c = 0; c < kPer; ++c) acc[c] *= corr;
        for (int kk = 0; kk < kTile; ++kk) {
          const float pk = __shfl_sync(0xffffffffu, p, kk);
          if (pk == 0.f) continue;  // warp-uniform: pk is the same on every lane
#pragma unroll
          for (int c = 0; c < kPer; ++c) {
            const int d = lane + 32 * c;
            if (d < hd) acc[c] += pk * Vs[kk * hd + d];
          }
        }
        m = new_m;
      }
    }
    __syncthreads();
  }
  if (!row_ok) return;
  const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
  for (int c = 0; c < kPer; ++c) {
    const int d = lane + 32 * c;
    if (d < hd) out[(i * a.heads + h) * hd + d] = from_f<D>(acc[c] * inv);
  }
  if (lane == 0 && lse) lse[i * a.heads + h] = from_f<L>(l > 0.f ? m + logf(l) : -INFINITY);
}

// ---- backward ----

// delta[i, h] = dout[i, h] . out[i, h]: one warp per (i, h).
template <typename D>
__global__ void attn_delta_k(const D* out, const D* dout, float* delta, int64_t rows, int64_t hd) {
  const int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (w >= rows) return;  // whole warps leave together (rows counted in warps)
  float s = 0.f;
  for (int64_t d = threadIdx.x & 31; d < hd; d += 32)
    s += to_f(out[w * hd + d]) * to_f(dout[w * hd + d]);
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) delta[w] = s;
}

// dq: one warp per query row, as the forward. Shared: K tile, V tile [kTile][hd+1], Q and dout
// rows [kWarps][hd].
template <typename D, typename L>
__global__ void __launch_bounds__(kWarps * 32)
    attn_dq_k(const D* q, const D* k, const D* v, const L* lse, const float* delta, const D* dout,
              D* dq, AttnArgs a) {
  QV_DYNAMIC_SHARED(float, smem);
  __shared__ int64_t range_scratch[2 * kWarps];
  const int hd = static_cast<int>(a.hd);
  float* Ks = smem;
  float* Vs = Ks + kTile * (hd + 1);
  float* Qs = Vs + kTile * (hd + 1);
  float* Os = Qs + kWarps * hd;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t h = blockIdx.y;
  const int64_t kvh = h / (a.heads / a.kv_heads);
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const bool row_ok = i < a.rows;
  int64_t lo = 0, hi = 0;
  float lse_i = -INFINITY, delta_i = 0.f;
  if (row_ok) {
    query_range(a, i, &lo, &hi);
    lse_i = to_f(lse[i * a.heads + h]);
    delta_i = delta[i * a.heads + h];
    if (lse_i == -INFINITY) lo = hi = 0;  // no key was attended: zero gradient
  }
  int64_t blo, bhi;
  block_union(lo, hi, range_scratch, &blo, &bhi);
  float* qrow = Qs + warp * hd;
  float* orow = Os + warp * hd;
  if (row_ok) load_row(q, a.heads, h, hd, i, qrow), load_row(dout, a.heads, h, hd, i, orow);
  __syncwarp();
  float acc[kPer];
#pragma unroll
  for (int c = 0; c < kPer; ++c) acc[c] = 0.f;

  for (int64_t t0 = blo; t0 < bhi; t0 += kTile) {
    load_tile(k, a.kv_heads, kvh, hd, t0, bhi, Ks, hd + 1);
    load_tile(v, a.kv_heads, kvh, hd, t0, bhi, Vs, hd + 1);
    __syncthreads();
    if (row_ok && t0 < hi && t0 + kTile > lo) {
      const int64_t key = t0 + lane;
      const bool valid = key >= lo && key < hi && (!a.key_valid || a.key_valid[key]);
      float ds = 0.f;
      if (valid) {
        const float p = expf(dot_shared(qrow, Ks + lane * (hd + 1), hd) * a.scale - lse_i);
        const float dp = dot_shared(orow, Vs + lane * (hd + 1), hd);
        ds = p * (dp - delta_i) * a.scale;
      }
      for (int kk = 0; kk < kTile; ++kk) {
        const float dk = __shfl_sync(0xffffffffu, ds, kk);
        if (dk == 0.f) continue;
#pragma unroll
        for (int c = 0; c < kPer; ++c) {
          const int d = lane + 32 * c;
          if (d < hd) acc[c] += dk * Ks[kk * (hd + 1) + d];
        }
      }
    }
    __syncthreads();
  }
  if (!row_ok) return;
#pragma unroll
  for (int c = 0; c < kPer; ++c) {
    const int d = lane + 32 * c;
    if (d < hd) dq[(i * a.heads + h) * hd + d] = from_f<D>(acc[c]);
  }
}

// dk, dv: one warp per key row of kv head g, summing over the group's query heads and the
// queries that see the key. Shared: Q and dout tiles [kTile][hd+1], lse and delta of the tile
// [kTile], K and V rows [kWarps][hd].
template <typename D, typename L>
__global__ void __launch_bounds__(kWarps * 32)
    attn_dkdv_k(const D* q, const D* k, const D* v, const L* lse, const float* delta, const D* dout,
                D* dk, D* dv, AttnArgs a) {
  QV_DYNAMIC_SHARED(float, smem);
  __shared__ int64_t range_scratch[2 * kWarps];
  __shared__ float lse_t[kTile], delta_t[kTile];
  const int hd = static_cast<int>(a.hd);
  float* Qt = smem;
  float* Ot = Qt + kTile * (hd + 1);
  float* Kr = Ot + kTile * (hd + 1);
  float* Vr = Kr + kWarps * hd;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t g = blockIdx.y;
  const int64_t group = a.heads / a.kv_heads;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const bool row_ok = j < a.rows;
  int64_t lo = 0, hi = 0;
  if (row_ok && (!a.key_valid || a.key_valid[j])) key_range(a, j, &lo, &hi);
  int64_t blo, bhi;
  block_union(lo, hi, range_scratch, &blo, &bhi);
  float* krow = Kr + warp * hd;
  float* vrow = Vr + warp * hd;
  if (row_ok) load_row(k, a.kv_heads, g, hd, j, krow), load_row(v, a.kv_heads, g, hd, j, vrow);
  __syncwarp();
  float dk_acc[kPer], dv_acc[kPer];
#pragma unroll
  for (int c = 0; c < kPer; ++c) dk_acc[c] = dv_acc[c] = 0.f;

  for (int64_t h = g * group; h < (g + 1) * group; ++h) {
    for (int64_t t0 = blo; t0 < bhi; t0 += kTile) {
      load_tile(q, a.heads, h, hd, t0, bhi, Qt, hd + 1);
      load_tile(dout, a.heads, h, hd, t0, bhi, Ot, hd + 1);
      if (threadIdx.x < kTile) {
        const int64_t t = t0 + threadIdx.x;
        lse_t[threadIdx.x] = t < bhi ? to_f(lse[t * a.heads + h]) : -INFINITY;
        delta_t[threadIdx.x] = t < bhi ? delta[t * a.heads + h] : 0.f;
      }
      __syncthreads();
      if (row_ok && t0 < hi && t0 + kTile > lo) {
        const int64_t qi = t0 + lane;
        const float l_i = lse_t[lane];
        const bool valid = qi >= lo && qi < hi && l_i != -INFINITY;
        float p = 0.f, ds = 0.f;
        if (valid) {
          p = expf(dot_shared(Qt + lane * (hd + 1), krow, hd) * a.scale - l_i);
          const float dp = dot_shared(Ot + lane * (hd + 1), vrow, hd);
          ds = p * (dp - delta_t[lane]) * a.scale;
        }
        for (int ii = 0; ii < kTile; ++ii) {
          const float pi = __shfl_sync(0xffffffffu, p, ii);
          const float si = __shfl_sync(0xffffffffu, ds, ii);
          if (pi == 0.f && si == 0.f) continue;
#pragma unroll
          for (int c = 0; c < kPer; ++c) {
            const int d = lane + 32 * c;
            if (d < hd) {
              dv_acc[c] += pi * Ot[ii * (hd + 1) + d];
              dk_acc[c] += si * Qt[ii * (hd + 1) + d];
            }
          }
        }
      }
      __syncthreads();
    }
  }
  if (!row_ok) return;
#pragma unroll
  for (int c = 0; c < kPer; ++c) {
    const int d = lane + 32 * c;
    if (d < hd) {
      dk[(j * a.kv_heads + g) * hd + d] = from_f<D>(dk_acc[c]);
      dv[(j * a.kv_heads + g) * hd + d] = from_f<D>(dv_acc[c]);
    }
  }
}

AttnArgs make_args(const AttentionDims& d, int64_t rows, const int64_t* cu, int64_t n_seqs,
                   const uint8_t* key_valid, int64_t decode_len) {
  QV_CHECK(d.head_dim > 0 && d.head_dim <= kMaxHd, "CUDA attention: head_dim ", d.head_dim,
           " is outside [1, ", kMaxHd, "]");
  QV_CHECK(d.kv_heads > 0 && d.heads % d.kv_heads == 0, "CUDA attention: heads ", d.heads,
           " is not a multiple of kv_heads ", d.kv_heads);
  QV_CHECK(d.heads <= 65535, "CUDA attention: too many heads (", d.heads, ")");
  return AttnArgs{rows, d.heads, d.kv_heads, d.head_dim, d.causal, static_cast<float>(d.scale),
                  cu,   n_seqs,  key_valid,  decode_len};
}

dim3 grid(int64_t rows, int64_t heads) {
  const int64_t bx = ceil_div(rows, kWarps);
  QV_CHECK(bx <= 0x7fffffffLL, "CUDA attention: too many rows (", rows, ")");
  return dim3(static_cast<unsigned>(bx), static_cast<unsigned>(heads));
}

template <typename D, typename L>
void launch_forward(const D* q, const D* k, const D* v, D* out, L* lse, const AttnArgs& a,
                    int64_t heads) {
  if (a.rows <= 0) return;
  const size_t smem = sizeof(float) * (kTile * (a.hd + 1) + kTile * a.hd + kWarps * a.hd);
  opt_in_dynamic_smem(attn_fwd_k<D, L>, smem);
  QV_LAUNCH(grid(a.rows, heads), kWarps * 32, smem, cuda_stream(), attn_fwd_k<D, L>)
  (q, k, v, out, lse, a);
  QV_CUDA_LAUNCHED();
}

// delta[i, h] = dout[i, h] . out[i, h] for the backward kernels.
template <typename D>
DeviceArray<float> row_deltas(const D* out, const D* dout, int64_t rows, int64_t heads,
                              int64_t hd) {
  DeviceArray<float> delta(rows * heads);
  const int64_t warps = rows * heads;
  QV_LAUNCH(static_cast<unsigned>(ceil_div(warps * 32, 256)), 256, 0, cuda_stream(), attn_delta_k)
  (out, dout, delta.data(), warps, hd);
  QV_CUDA_LAUNCHED();
  return delta;
}

template <typename D, typename L>
void launch_backward(const D* q, const D* k, const D* v, const D* out, const L* lse, const D* dout,
                     D* dq, D* dk, D* dv, const AttnArgs& a, const AttentionDims& dims) {
  const int64_t N = a.rows, hd = a.hd;
  if (N <= 0) return;
  const DeviceArray<float> delta = row_deltas(out, dout, N, dims.heads, hd);
  const size_t smem = sizeof(float) * (2 * kTile * (hd + 1) + 2 * kWarps * hd);
  opt_in_dynamic_smem(attn_dq_k<D, L>, smem);
  QV_LAUNCH(grid(N, dims.heads), kWarps * 32, smem, cuda_stream(), attn_dq_k<D, L>)
  (q, k, v, lse, delta.data(), dout, dq, a);
  QV_CUDA_LAUNCHED();
  opt_in_dynamic_smem(attn_dkdv_k<D, L>, smem);
  QV_LAUNCH(grid(N, dims.kv_heads), kWarps * 32, smem, cuda_stream(), attn_dkdv_k<D, L>)
  (q, k, v, lse, delta.data(), dout, dk, dv, a);
  QV_CUDA_LAUNCHED();
}

}  // namespace

namespace {
// Float storage on tensor cores (mixed precision) or on CUDA cores (fp32, and heads too large).
bool float_on_tensor_cores(const AttentionDims& dims) {
  return dims.bf16_products && tc_attention_fits(dims);
}
}  // namespace

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse,
                       const int64_t* cu_seqlens, int64_t n_seqs, const AttentionDims& dims,
                       const uint8_t* key_valid) {
  const AttnArgs a = make_args(dims, dims.tokens, cu_seqlens, n_seqs, key_valid, 0);
  if (float_on_tensor_cores(dims))
    attention_forward_tc(q, k, v, out, lse, a);
  else
    launch_forward(q, k, v, out, lse, a, dims.heads);
}

void attention_forward(const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse,
                       const int64_t* cu_seqlens, int64_t n_seqs, const AttentionDims& dims,
                       const uint8_t* key_valid) {
  const AttnArgs a = make_args(dims, dims.tokens, cu_seqlens, n_seqs, key_valid, 0);
  if (tc_attention_fits(dims))
    attention_forward_tc(dev(q), dev(k), dev(v), dev(out), lse, a);
  else
    launch_forward(dev(q), dev(k), dev(v), dev(out), lse, a, dims.heads);
}

template <typename T>
void attention_backward(const T* q, const T* k, const T* v, const T* out, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv, const int64_t* cu_seqlens,
                        int64_t n_seqs, const AttentionDims& dims, const uint8_t* key_valid) {
  const AttnArgs a = make_args(dims, dims.tokens, cu_seqlens, n_seqs, key_valid, 0);
  if (!float_on_tensor_cores(dims)) {
    launch_backward(q, k, v, out, lse, dout, dq, dk, dv, a, dims);
    return;
  }
  if (a.rows <= 0) return;
  const DeviceArray<float> delta = row_deltas(out, dout, a.rows, dims.heads, dims.head_dim);
  attention_backward_tc(q, k, v, lse, delta.data(), dout, dq, dk, dv, a);
}

void attention_backward(const bf16* q, const bf16* k, const bf16* v, const bf16* out,
                        const float* lse, const bf16* dout, bf16* dq, bf16* dk, bf16* dv,
                        const int64_t* cu_seqlens, int64_t n_seqs, const AttentionDims& dims,
                        const uint8_t* key_valid) {
  const AttnArgs a = make_args(dims, dims.tokens, cu_seqlens, n_seqs, key_valid, 0);
  if (!tc_attention_fits(dims)) {
    launch_backward(dev(q), dev(k), dev(v), dev(out), lse, dev(dout), dev(dq), dev(dk), dev(dv), a,
                    dims);
    return;
  }
  if (a.rows <= 0) return;
  const DeviceArray<float> delta =
      row_deltas(dev(out), dev(dout), a.rows, dims.heads, dims.head_dim);
  attention_backward_tc(dev(q), dev(k), dev(v), lse, delta.data(), dev(dout), dev(dq), dev(dk),
                        dev(dv), a);
}

template <typename T>
void attention_decode(const T* q, const T* k_cache, const T* v_cache, T* out, int64_t length,
                      const AttentionDims& dims) {
  if (length <= 0) {  // nothing cached: out = 0, as a row with no key
    fill_zero(out, dims.heads * dims.head_dim * static_cast<int64_t>(sizeof(T)));
    return;
  }
  const AttnArgs a = make_args(dims, 1, nullptr, 0, nullptr, length);
  launch_forward(dev(q), dev(k_cache), dev(v_cache), dev(out), static_cast<float*>(nullptr), a,
                 dims.heads);
}

template void attention_forward<float>(const float*, const float*, const float*, float*, float*,
                                       const int64_t*, int64_t, const AttentionDims&,
                                       const uint8_t*);
template void attention_backward<float>(const float*, const float*, const float*, const float*,
                                        const float*, const float*, float*, float*, float*,
                                        const int64_t*, int64_t, const AttentionDims&,
                                        const uint8_t*);
template void attention_decode<float>(const float*, const float*, const float*, float*, int64_t,
                                      const AttentionDims&);
template void attention_decode<bf16>(const bf16*, const bf16*, const bf16*, bf16*, int64_t,
                                     const AttentionDims&);

}  // namespace qv::kernels::cuda
