// CUDA: tensor-core flash attention (attention_tc.h), on WMMA 16x16x16 tiles (bf16 inputs, float
// accumulation), for bf16 storage and for float storage under mixed precision.
//
// Layout of the work. A block of 4 warps takes kRows = 64 rows of one head (queries in forward
// and dq, keys of one kv head in dk-dv); warp w owns rows 16w .. 16w + 15. The block walks the
// union of its rows' partner ranges in tiles of kCols = 64 partners staged in shared memory
// (bf16, head_dim zero-padded to a multiple of 16). Per tile each warp computes its 16 x 64
// scores (or their gradients) into shared memory with WMMA, applies the masks and the softmax
// element-wise there (each lane two columns of a row), rounds what feeds the next product to
// bf16, and accumulates the row outputs with WMMA into float tiles that also live in shared
// memory: a fragment's element layout is not specified, so every row-wise operation (the online
// softmax's rescale, the final 1 / l) happens on the shared copy, not in registers. Masks are
// attention_masks.cuh's, per element, as the CUDA-core kernels.
//
// The backward is two kernels without atomics, as attention.cu's: dq per query tile (S = Q K^T
// and dP = dO V^T recomputed per key tile, dQ += dS K), dk / dv per key tile of a kv head,
// summed over the group's query heads (S^T = K Q^T, dP^T = V dO^T, dV += P^T dO, dK += dS^T Q).
//
// Barriers: the tile loop's bounds are block-wide, so every thread meets every __syncthreads;
// warps whose 16 rows see nothing of a tile skip its arithmetic (a warp-uniform test).
#include <mma.h>

#include <cfloat>
#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/attention_tc.h"
#include "kernels/cuda/common.cuh"

namespace qv::kernels::cuda {
namespace {

namespace wmma = nvcuda::wmma;
using bf = __nv_bfloat16;

constexpr int kWarpsTc = 4;
constexpr int kF = 16;                // WMMA tile edge
constexpr int kRows = kF * kWarpsTc;  // rows per block
constexpr int kCols = 64;             // partners per tile
constexpr int kMaxHdTc = 128;

using FragA = wmma::fragment<wmma::matrix_a, kF, kF, kF, bf, wmma::row_major>;
using FragB = wmma::fragment<wmma::matrix_b, kF, kF, kF, bf, wmma::row_major>;
using FragBt = wmma::fragment<wmma::matrix_b, kF, kF, kF, bf, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, kF, kF, kF, float>;

// Shared-memory row strides for a head of hd dims: bf16 rows padded by 8 elements and float rows
// by 4 (16 bytes: fewer bank conflicts; WMMA wants a multiple of 8 / 4 elements and 32-byte
// aligned tiles, which every 16-row block of these regions is).
struct Geometry {
  int hdp;  // head_dim rounded up to a multiple of 16
  int ldh;  // bf16 [rows][head]
  int lds;  // float [rows][partners]
  int ldp;  // bf16 [rows][partners]
  int ldo;  // float [rows][head]
  __host__ __device__ explicit Geometry(int64_t hd)
      : hdp(static_cast<int>((hd + kF - 1) / kF * kF)),
        ldh(hdp + 8),
        lds(kCols + 4),
        ldp(kCols + 8),
        ldo(hdp + 4) {}
  __host__ __device__ size_t head_tile() const { return sizeof(bf) * kRows * ldh; }
  __host__ __device__ size_t score_tile() const { return sizeof(float) * kRows * lds; }
  __host__ __device__ size_t prob_tile() const { return sizeof(bf) * kRows * ldp; }
  __host__ __device__ size_t out_tile() const { return sizeof(float) * kRows * ldo; }
};

// The dynamic shared memory's element: its alignment is the base's (WMMA wants 32 bytes).
struct alignas(128) SmemChunk {
  unsigned char bytes[128];
};

// Carves consecutive regions out of the dynamic shared memory (sizes are multiples of 32 bytes).
struct SharedCursor {
  unsigned char* at;
  template <typename T>
  __device__ T* take(size_t bytes) {
    T* p = reinterpret_cast<T*>(at);
    at += bytes;
    return p;
  }
};

// ---- per-warp products (16 rows) ----

// C[16 x 16 n_tiles] = A[16 x 16 k_tiles] B^T, with B given as [16 n_tiles rows][16 k_tiles]
// row-major (so B^T is B read column-major).
__device__ void mma_abt(const bf* A, int lda, const bf* B, int ldb, float* C, int ldc, int k_tiles,
                        int n_tiles) {
  for (int n = 0; n < n_tiles; ++n) {
    FragC c;
    wmma::fill_fragment(c, 0.f);
    for (int kk = 0; kk < k_tiles; ++kk) {
      FragA a;
      FragBt b;
      wmma::load_matrix_sync(a, A + kk * kF, lda);
      wmma::load_matrix_sync(b, B + n * kF * ldb + kk * kF, ldb);
      wmma::mma_sync(c, a, b, c);
    }
    wmma::store_matrix_sync(C + n * kF, c, ldc, wmma::mem_row_major);
  }
}

// C[16 x 16 n_tiles] += A[16 x 16 k_tiles] B, B row-major [16 k_tiles][16 n_tiles].
__device__ void mma_acc_ab(const bf* A, int lda, const bf* B, int ldb, float* C, int ldc,
                           int k_tiles, int n_tiles) {
  for (int n = 0; n < n_tiles; ++n) {
    FragC c;
    wmma::load_matrix_sync(c, C + n * kF, ldc, wmma::mem_row_major);
    for (int kk = 0; kk < k_tiles; ++kk) {
      FragA a;
      FragB b;
      wmma::load_matrix_sync(a, A + kk * kF, lda);
      wmma::load_matrix_sync(b, B + kk * kF * ldb + n * kF, ldb);
      wmma::mma_sync(c, a, b, c);
    }
    wmma::store_matrix_sync(C + n * kF, c, ldc, wmma::mem_row_major);
  }
}

// ---- block-wide staging ----

// Eight consecutive elements as bf16: one 16-byte load of bf16, two of float (rounded here).
struct alignas(16) Pack8 {
  bf v[8];
};
struct alignas(16) Float4 {
  float v[4];
};
__device__ Pack8 load8(const bf* p) {
  return *reinterpret_cast<const Pack8*>(p);
}
__device__ Pack8 load8(const float* p) {
  const Float4 lo = reinterpret_cast<const Float4*>(p)[0],
               hi = reinterpret_cast<const Float4*>(p)[1];
  Pack8 out;
  for (int e = 0; e < 4; ++e)
    out.v[e] = __float2bfloat16_rn(lo.v[e]), out.v[4 + e] = __float2bfloat16_rn(hi.v[e]);
  return out;
}

// tile[r][d] = x[t0 + r, head, d] for t0 + r < end and d < hd, else 0 (rows kRows, dims hdp);
// float storage is rounded to bf16 here. `vec` (hd a multiple of 8, x 16-byte aligned): 8
// elements per load.
template <typename D>
__device__ void load_head_tile(const D* x, int64_t nh, int64_t head, int64_t hd, int64_t t0,
                               int64_t end, bf* tile, const Geometry& g, bool vec) {
  const bf zero = __float2bfloat16_rn(0.f);
  if (vec) {
    const int chunks = g.hdp / 8;
    for (int idx = threadIdx.x; idx < kRows * chunks; idx += blockDim.x) {
      const int r = idx / chunks, d = idx % chunks * 8;
      const int64_t t = t0 + r;
      Pack8 p;
      if (t < end && d < hd)
        p = load8(x + (t * nh + head) * hd + d);
      else
        for (int e = 0; e < 8; ++e) p.v[e] = zero;
      *reinterpret_cast<Pack8*>(tile + r * g.ldh + d) = p;
    }
    return;
  }
  for (int idx = threadIdx.x; idx < kRows * g.hdp; idx += blockDim.x) {
    const int r = idx / g.hdp, d = idx % g.hdp;
    const int64_t t = t0 + r;
    tile[r * g.ldh + d] = t < end && d < hd ? from_f<bf>(to_f(x[(t * nh + head) * hd + d])) : zero;
  }
}

__device__ void zero_floats(float* p, int n) {
  for (int idx = threadIdx.x; idx < n; idx += blockDim.x) p[idx] = 0.f;
}

// Ranges of the block's rows (threads < kRows; ranges empty past the tokens) and their union.
struct RowRanges {
  int64_t lo[kRows], hi[kRows];
  int64_t span_lo, span_hi;
};

__device__ void finish_union(RowRanges* rr) {
  __syncthreads();
  if (threadIdx.x == 0) {
    int64_t l = INT64_MAX, h = 0;
    for (int r = 0; r < kRows; ++r)
      if (rr->lo[r] < rr->hi[r])
        l = rr->lo[r] < l ? rr->lo[r] : l, h = rr->hi[r] > h ? rr->hi[r] : h;
    rr->span_lo = l < h ? l : 0, rr->span_hi = l < h ? h : 0;
  }
  __syncthreads();
}

// Whether any of the warp's 16 rows has a partner in [t0, t0 + kCols).
__device__ bool warp_sees_tile(const RowRanges& rr, int r0, int64_t t0) {
  const int lane = threadIdx.x & 31;
  const bool mine = lane < kF && rr.lo[r0 + lane] < rr.hi[r0 + lane] &&
                    rr.lo[r0 + lane] < t0 + kCols && rr.hi[r0 + lane] > t0;
  return __any_sync(0xffffffffu, mine);
}

__device__ bool key_ok(const AttnArgs& a, int64_t key) {
  return !a.key_valid || a.key_valid[key];
}

// ---- forward ----

struct RowSoftmax {
  float m[kRows], l[kRows], corr[kRows];
};

// One warp's 16 rows of a tile: masked scaled scores -> P (bf16) with the online max m, the sum
// l (of the rounded P, so that O / l weighs V by exactly what multiplied it) and the factor corr
// by which the rows' earlier outputs shrink.
__device__ void online_softmax_rows(const AttnArgs& a, const RowRanges& rr, int r0, int64_t t0,
                                    const float* S, bf* P, RowSoftmax* sm, const Geometry& g) {
  const int lane = threadIdx.x & 31;
  for (int r = r0; r < r0 + kF; ++r) {
    float s[2];
    bool ok[2];
    for (int c = 0; c < 2; ++c) {
      const int col = lane + 32 * c;
      const int64_t key = t0 + col;
      ok[c] = key >= rr.lo[r] && key < rr.hi[r] && key_ok(a, key);
      s[c] = ok[c] ? S[r * g.lds + col] * a.scale : -INFINITY;
    }
    const float m_old = sm->m[r];
    const float m_new = fmaxf(m_old, warp_max(fmaxf(s[0], s[1])));
    float corr = 1.f, sum = 0.f;
    for (int c = 0; c < 2; ++c) {
      const float p = ok[c] && m_new != -INFINITY ? expf(s[c] - m_new) : 0.f;
      const bf pb = __float2bfloat16_rn(p);
      P[r * g.ldp + lane + 32 * c] = pb;
      sum += __bfloat162float(pb);
    }
    if (m_new != -INFINITY) corr = expf(m_old - m_new);  // m_old == -inf gives 0
    sum = warp_sum(sum);
    if (lane == 0) sm->m[r] = m_new, sm->l[r] = sm->l[r] * corr + sum, sm->corr[r] = corr;
  }
}

__device__ void scale_rows(float* O, int ldo, int cols, const float* factor, int r0) {
  const int lane = threadIdx.x & 31;
  for (int r = r0; r < r0 + kF; ++r)
    for (int d = lane; d < cols; d += 32) O[r * ldo + d] *= factor[r];
}

template <typename D>
__global__ void __launch_bounds__(kWarpsTc * 32)
    attn_fwd_tc_k(const D* q, const D* k, const D* v, D* out, float* lse, AttnArgs a) {
  QV_DYNAMIC_SHARED(SmemChunk, tc_smem);
  __shared__ RowRanges rr;
  __shared__ RowSoftmax sm;
  const Geometry g(a.hd);
  SharedCursor cur{reinterpret_cast<unsigned char*>(tc_smem)};
  bf* Qs = cur.take<bf>(g.head_tile());
  bf* Ks = cur.take<bf>(g.head_tile());
  bf* Vs = cur.take<bf>(g.head_tile());
  bf* Ps = cur.take<bf>(g.prob_tile());
  float* Ss = cur.take<float>(g.score_tile());
  float* Os = cur.take<float>(g.out_tile());
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r0 = warp * kF;
  const int64_t h = blockIdx.y, kvh = h / (a.heads / a.kv_heads);
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kRows;

  if (threadIdx.x < kRows) {
    const int64_t i = i0 + threadIdx.x;
    int64_t lo = 0, hi = 0;
    if (i < a.rows) query_range(a, i, &lo, &hi);
    rr.lo[threadIdx.x] = lo, rr.hi[threadIdx.x] = hi;
    sm.m[threadIdx.x] = -INFINITY, sm.l[threadIdx.x] = 0.f;
  }
  zero_floats(Os, kRows * g.ldo);
  load_head_tile(q, a.heads, h, a.hd, i0, a.rows, Qs, g, a.vector_loads);
  finish_union(&rr);

  for (int64_t t0 = rr.span_lo; t0 < rr.span_hi; t0 += kCols) {
    load_head_tile(k, a.kv_heads, kvh, a.hd, t0, rr.span_hi, Ks, g, a.vector_loads);
    load_head_tile(v, a.kv_heads, kvh, a.hd, t0, rr.span_hi, Vs, g, a.vector_loads);
    __syncthreads();
    if (warp_sees_tile(rr, r0, t0)) {
      mma_abt(Qs + r0 * g.ldh, g.ldh, Ks, g.ldh, Ss + r0 * g.lds, g.lds, g.hdp / kF, kCols / kF);
      __syncwarp();
      online_softmax_rows(a, rr, r0, t0, Ss, Ps, &sm, g);
      __syncwarp();
      scale_rows(Os, g.ldo, g.hdp, sm.corr, r0);
      __syncwarp();
      mma_acc_ab(Ps + r0 * g.ldp, g.ldp, Vs, g.ldh, Os + r0 * g.ldo, g.ldo, kCols / kF, g.hdp / kF);
    }
    __syncthreads();
  }

  for (int r = r0; r < r0 + kF; ++r) {
    const int64_t i = i0 + r;
    if (i >= a.rows) break;  // warp-uniform
    const float l = sm.l[r];
    const float inv = l > 0.f ? 1.f / l : 0.f;
    for (int d = lane; d < a.hd; d += 32)
      out[(i * a.heads + h) * a.hd + d] = from_f<D>(Os[r * g.ldo + d] * inv);
    if (lane == 0) lse[i * a.heads + h] = l > 0.f ? sm.m[r] + logf(l) : -INFINITY;
  }
}

// ---- backward ----

// Per-partner statistics of a tile of query rows (dk-dv) or of the block's own rows (dq).
struct RowStats {
  float lse[kRows], delta[kRows];
};

// dq: one warp's 16 query rows of a key tile: dS = P (dP - delta) scale as bf16.
__device__ void score_grads_rows(const AttnArgs& a, const RowRanges& rr, const RowStats& st, int r0,
                                 int64_t t0, const float* S, const float* dP, bf* dS,
                                 const Geometry& g) {
  const int lane = threadIdx.x & 31;
  for (int r = r0; r < r0 + kF; ++r)
    for (int col = lane; col < kCols; col += 32) {
      const int64_t key = t0 + col;
      const bool ok = key >= rr.lo[r] && key < rr.hi[r] && key_ok(a, key);
      const float p = ok ? expf(S[r * g.lds + col] * a.scale - st.lse[r]) : 0.f;
      const float ds = p * (dP[r * g.lds + col] - st.delta[r]) * a.scale;
      dS[r * g.ldp + col] = __float2bfloat16_rn(ds);
    }
}

template <typename D>
__global__ void __launch_bounds__(kWarpsTc * 32)
    attn_dq_tc_k(const D* q, const D* k, const D* v, const float* lse, const float* delta,
                 const D* dout, D* dq, AttnArgs a) {
  QV_DYNAMIC_SHARED(SmemChunk, tc_smem);
  __shared__ RowRanges rr;
  __shared__ RowStats st;
  const Geometry g(a.hd);
  SharedCursor cur{reinterpret_cast<unsigned char*>(tc_smem)};
  bf* Qs = cur.take<bf>(g.head_tile());
  bf* dOs = cur.take<bf>(g.head_tile());
  bf* Ks = cur.take<bf>(g.head_tile());
  bf* Vs = cur.take<bf>(g.head_tile());
  bf* dSs = cur.take<bf>(g.prob_tile());
  float* Ss = cur.take<float>(g.score_tile());
  float* dPs = cur.take<float>(g.score_tile());
  float* dQs = cur.take<float>(g.out_tile());
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r0 = warp * kF;
  const int64_t h = blockIdx.y, kvh = h / (a.heads / a.kv_heads);
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kRows;

  if (threadIdx.x < kRows) {
    const int64_t i = i0 + threadIdx.x;
    int64_t lo = 0, hi = 0;
    float l = -INFINITY, dl = 0.f;
    if (i < a.rows) {
      l = lse[i * a.heads + h], dl = delta[i * a.heads + h];
      if (l != -INFINITY) query_range(a, i, &lo, &hi);  // no key attended: zero gradient
    }
    rr.lo[threadIdx.x] = lo, rr.hi[threadIdx.x] = hi;
    st.lse[threadIdx.x] = l, st.delta[threadIdx.x] = dl;
  }
  zero_floats(dQs, kRows * g.ldo);
  load_head_tile(q, a.heads, h, a.hd, i0, a.rows, Qs, g, a.vector_loads);
  load_head_tile(dout, a.heads, h, a.hd, i0, a.rows, dOs, g, a.vector_loads);
  finish_union(&rr);

  for (int64_t t0 = rr.span_lo; t0 < rr.span_hi; t0 += kCols) {
    load_head_tile(k, a.kv_heads, kvh, a.hd, t0, rr.span_hi, Ks, g, a.vector_loads);
    load_head_tile(v, a.kv_heads, kvh, a.hd, t0, rr.span_hi, Vs, g, a.vector_loads);
    __syncthreads();
    if (warp_sees_tile(rr, r0, t0)) {
      mma_abt(Qs + r0 * g.ldh, g.ldh, Ks, g.ldh, Ss + r0 * g.lds, g.lds, g.hdp / kF, kCols / kF);
      mma_abt(dOs + r0 * g.ldh, g.ldh, Vs, g.ldh, dPs + r0 * g.lds, g.lds, g.hdp / kF, kCols / kF);
      __syncwarp();
      score_grads_rows(a, rr, st, r0, t0, Ss, dPs, dSs, g);
      __syncwarp();
      mma_acc_ab(dSs + r0 * g.ldp, g.ldp, Ks, g.ldh, dQs + r0 * g.ldo, g.ldo, kCols / kF,
                 g.hdp / kF);
    }
    __syncthreads();
  }

  for (int r = r0; r < r0 + kF; ++r) {
    const int64_t i = i0 + r;
    if (i >= a.rows) break;  // warp-uniform
    for (int d = lane; d < a.hd; d += 32)
      dq[(i * a.heads + h) * a.hd + d] = from_f<D>(dQs[r * g.ldo + d]);
  }
}

// dk-dv: one warp's 16 key rows against a tile of query columns: P^T and dS^T as bf16.
__device__ void key_grads_rows(const AttnArgs& a, const RowRanges& rr, const RowStats& qst, int r0,
                               int64_t t0, const float* St, const float* dPt, bf* Pt, bf* dSt,
                               const Geometry& g) {
  const int lane = threadIdx.x & 31;
  for (int r = r0; r < r0 + kF; ++r)
    for (int col = lane; col < kCols; col += 32) {
      const int64_t qi = t0 + col;
      const float l = qst.lse[col];
      const bool ok = qi >= rr.lo[r] && qi < rr.hi[r] && l != -INFINITY;
      const float p = ok ? expf(St[r * g.lds + col] * a.scale - l) : 0.f;
      const float ds = p * (dPt[r * g.lds + col] - qst.delta[col]) * a.scale;
      Pt[r * g.ldp + col] = __float2bfloat16_rn(p);
      dSt[r * g.ldp + col] = __float2bfloat16_rn(ds);
    }
}

template <typename D>
__global__ void __launch_bounds__(kWarpsTc * 32)
    attn_dkdv_tc_k(const D* q, const D* k, const D* v, const float* lse, const float* delta,
                   const D* dout, D* dk, D* dv, AttnArgs a) {
  QV_DYNAMIC_SHARED(SmemChunk, tc_smem);
  __shared__ RowRanges rr;
  __shared__ RowStats qst;
  const Geometry g(a.hd);
  SharedCursor cur{reinterpret_cast<unsigned char*>(tc_smem)};
  bf* Ks = cur.take<bf>(g.head_tile());
  bf* Vs = cur.take<bf>(g.head_tile());
  bf* Qs = cur.take<bf>(g.head_tile());
  bf* dOs = cur.take<bf>(g.head_tile());
  bf* Pt = cur.take<bf>(g.prob_tile());
  bf* dSt = cur.take<bf>(g.prob_tile());
  float* St = cur.take<float>(g.score_tile());
  float* dPt = cur.take<float>(g.score_tile());
  float* dKs = cur.take<float>(g.out_tile());
  float* dVs = cur.take<float>(g.out_tile());
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r0 = warp * kF;
  const int64_t kvg = blockIdx.y, group = a.heads / a.kv_heads;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kRows;

  if (threadIdx.x < kRows) {
    const int64_t j = j0 + threadIdx.x;
    int64_t lo = 0, hi = 0;
    if (j < a.rows && key_ok(a, j)) key_range(a, j, &lo, &hi);  // padding: zero gradient
    rr.lo[threadIdx.x] = lo, rr.hi[threadIdx.x] = hi;
  }
  zero_floats(dKs, kRows * g.ldo);
  zero_floats(dVs, kRows * g.ldo);
  load_head_tile(k, a.kv_heads, kvg, a.hd, j0, a.rows, Ks, g, a.vector_loads);
  load_head_tile(v, a.kv_heads, kvg, a.hd, j0, a.rows, Vs, g, a.vector_loads);
  finish_union(&rr);

  for (int64_t h = kvg * group; h < (kvg + 1) * group; ++h) {
    for (int64_t t0 = rr.span_lo; t0 < rr.span_hi; t0 += kCols) {
      load_head_tile(q, a.heads, h, a.hd, t0, rr.span_hi, Qs, g, a.vector_loads);
      load_head_tile(dout, a.heads, h, a.hd, t0, rr.span_hi, dOs, g, a.vector_loads);
      if (threadIdx.x < kCols) {
        const int64_t t = t0 + threadIdx.x;
        qst.lse[threadIdx.x] = t < rr.span_hi ? lse[t * a.heads + h] : -INFINITY;
        qst.delta[threadIdx.x] = t < rr.span_hi ? delta[t * a.heads + h] : 0.f;
      }
      __syncthreads();
      if (warp_sees_tile(rr, r0, t0)) {
        mma_abt(Ks + r0 * g.ldh, g.ldh, Qs, g.ldh, St + r0 * g.lds, g.lds, g.hdp / kF, kCols / kF);
        mma_abt(Vs + r0 * g.ldh, g.ldh, dOs, g.ldh, dPt + r0 * g.lds, g.lds, g.hdp / kF,
                kCols / kF);
        __syncwarp();
        key_grads_rows(a, rr, qst, r0, t0, St, dPt, Pt, dSt, g);
        __syncwarp();
        mma_acc_ab(Pt + r0 * g.ldp, g.ldp, dOs, g.ldh, dVs + r0 * g.ldo, g.ldo, kCols / kF,
                   g.hdp / kF);
        mma_acc_ab(dSt + r0 * g.ldp, g.ldp, Qs, g.ldh, dKs + r0 * g.ldo, g.ldo, kCols / kF,
                   g.hdp / kF);
      }
      __syncthreads();
    }
  }

  for (int r = r0; r < r0 + kF; ++r) {
    const int64_t j = j0 + r;
    if (j >= a.rows) break;  // warp-uniform
    for (int d = lane; d < a.hd; d += 32) {
      dk[(j * a.kv_heads + kvg) * a.hd + d] = from_f<D>(dKs[r * g.ldo + d]);
      dv[(j * a.kv_heads + kvg) * a.hd + d] = from_f<D>(dVs[r * g.ldo + d]);
    }
  }
}

// ---- launches ----

dim3 tc_grid(int64_t rows, int64_t heads) {
  const int64_t bx = ceil_div(rows, kRows);
  QV_CHECK(bx <= 0x7fffffffLL && heads <= 65535, "CUDA attention: too many rows (", rows,
           ") or heads (", heads, ")");
  return dim3(static_cast<unsigned>(bx), static_cast<unsigned>(heads));
}

// The tile loads take 8 elements at a time when every row of every input starts 16-byte aligned.
AttnArgs with_vector_loads(AttnArgs a, std::initializer_list<const void*> inputs) {
  bool ok = a.hd % 8 == 0;
  for (const void* p : inputs) ok = ok && reinterpret_cast<uintptr_t>(p) % 16 == 0;
  a.vector_loads = ok;
  return a;
}

}  // namespace

bool tc_attention_fits(const AttentionDims& dims) {
  return dims.head_dim > 0 && dims.head_dim <= kMaxHdTc;
}

template <typename D>
void attention_forward_tc(const D* q, const D* k, const D* v, D* out, float* lse,
                          const AttnArgs& args) {
  if (args.rows <= 0) return;
  const AttnArgs a = with_vector_loads(args, {q, k, v});
  const Geometry g(a.hd);
  const size_t smem = 3 * g.head_tile() + g.prob_tile() + g.score_tile() + g.out_tile();
  opt_in_dynamic_smem(attn_fwd_tc_k<D>, smem);
  QV_LAUNCH(tc_grid(a.rows, a.heads), kWarpsTc * 32, smem, cuda_stream(), attn_fwd_tc_k<D>)
  (q, k, v, out, lse, a);
  QV_CUDA_LAUNCHED();
}

template <typename D>
void attention_backward_tc(const D* q, const D* k, const D* v, const float* lse, const float* delta,
                           const D* dout, D* dq, D* dk, D* dv, const AttnArgs& args) {
  if (args.rows <= 0) return;
  const AttnArgs a = with_vector_loads(args, {q, k, v, dout});
  const Geometry g(a.hd);
  const size_t dq_smem = 4 * g.head_tile() + g.prob_tile() + 2 * g.score_tile() + g.out_tile();
  opt_in_dynamic_smem(attn_dq_tc_k<D>, dq_smem);
  QV_LAUNCH(tc_grid(a.rows, a.heads), kWarpsTc * 32, dq_smem, cuda_stream(), attn_dq_tc_k<D>)
  (q, k, v, lse, delta, dout, dq, a);
  QV_CUDA_LAUNCHED();
  const size_t kv_smem =
      4 * g.head_tile() + 2 * g.prob_tile() + 2 * g.score_tile() + 2 * g.out_tile();
  opt_in_dynamic_smem(attn_dkdv_tc_k<D>, kv_smem);
  QV_LAUNCH(tc_grid(a.rows, a.kv_heads), kWarpsTc * 32, kv_smem, cuda_stream(), attn_dkdv_tc_k<D>)
  (q, k, v, lse, delta, dout, dk, dv, a);
  QV_CUDA_LAUNCHED();
}

#define QV_ATTENTION_TC(D)                                                                         \
  template void attention_forward_tc<D>(const D*, const D*, const D*, D*, float*,                  \
                                        const AttnArgs&);                                          \
  template void attention_backward_tc<D>(const D*, const D*, const D*, const float*, const float*, \
                                         const D*, D*, D*, D*, const AttnArgs&);
QV_ATTENTION_TC(float)
QV_ATTENTION_TC(__nv_bfloat16)
#undef QV_ATTENTION_TC

}  // namespace qv::kernels::cuda
