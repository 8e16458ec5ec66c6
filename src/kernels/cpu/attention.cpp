// Variable-length GQA attention, tiled flash-attention style.
//
// Forward: for a block of queries, walk the key blocks with an online softmax (running max m,
// running sum l, unnormalised output O), so only one [query block x key block] score tile exists
// per thread. Backward: recompute P = exp(S - lse) tile by tile, with D_i = dout_i . out_i and
// dS = P * (dP - D_i). Tile products go through BLAS on the calling thread; OpenMP supplies the
// parallelism over (sequence, head, block) tasks.
#include "kernels/cpu/attention.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "core/buffer_pool.h"
#include "core/error.h"
#include "kernels/cpu/attention_tuning.h"
#include "kernels/cpu/fast_exp.h"
#include "kernels/cpu/gemm.h"

namespace qv::kernels::cpu {
namespace {

void check_dims(const AttentionDims& d, const int64_t* cu, int64_t n_seqs) {
  QV_CHECK(d.heads > 0 && d.kv_heads > 0 && d.heads % d.kv_heads == 0, "attention: heads (",
           d.heads, ") must be a positive multiple of kv_heads (", d.kv_heads, ")");
  QV_CHECK(d.head_dim > 0, "attention: head_dim must be positive, got ", d.head_dim);
  QV_CHECK(n_seqs >= 0, "attention: negative sequence count ", n_seqs);
  QV_CHECK(cu[0] == 0, "attention: cu_seqlens[0] must be 0, got ", cu[0]);
  for (int64_t s = 0; s < n_seqs; ++s)
    QV_CHECK(cu[s + 1] >= cu[s], "attention: cu_seqlens decreases at sequence ", s, " (", cu[s],
             " -> ", cu[s + 1], ")");
  QV_CHECK(cu[n_seqs] == d.tokens, "attention: cu_seqlens ends at ", cu[n_seqs], " but there are ",
           d.tokens, " tokens");
}

// Threads are started only above this many multiply-adds of one score product (about 0.1 ms):
// below it a parallel region costs more than it saves.
constexpr double kParallelWork = 1 << 20;

double score_work(const int64_t* cu, int64_t n_seqs, const AttentionDims& d) {
  double pairs = 0;
  for (int64_t s = 0; s < n_seqs; ++s) {
    const double L = static_cast<double>(cu[s + 1] - cu[s]);
    pairs += d.causal ? L * (L + 1) / 2 : L * L;
  }
  return pairs * static_cast<double>(d.heads * d.head_dim);
}

struct Tiles {
  int64_t bq, bk;  // query rows and keys per tile
};

Tiles choose_tiles(int64_t hd, const AttentionTuning& tuning) {
  Tiles t{64, 256};  // measured best of 32..256 x 64..256 for head_dim 64 and 128
  // A pthreads OpenBLAS would hand larger products to its own thread pool even when called from
  // our threads; it keeps one single-threaded while M*N*K <= 4 * 65536. An OpenMP OpenBLAS (or a
  // sequential one) always stays on the calling thread inside a parallel region.
  if (openblas_get_parallel() == 1) {
    t.bk = 64;
    t.bq = std::clamp<int64_t>(4 * 65536 / (t.bk * hd) / 8 * 8, 8, 128);
  }
  if (tuning.query_block > 0) t.bq = tuning.query_block;
  if (tuning.key_block > 0) t.bk = tuning.key_block;
  return t;
}

// Where one sequence's rows of one query head and its kv head live.
template <typename T>
struct HeadView {
  const T* q;  // row i at q + i * q_stride
  const T* k;  // row j at k + j * kv_stride
  const T* v;
  const uint8_t* valid;  // nullable, indexed by key row
  int64_t q_stride, kv_stride;
};

template <typename T>
HeadView<T> head_view(const T* q, const T* k, const T* v, const uint8_t* key_valid,
                      const AttentionDims& d, int64_t seq_begin, int64_t h) {
  const int64_t hd = d.head_dim, g = h / (d.heads / d.kv_heads);
  const int64_t qs = d.heads * hd, ks = d.kv_heads * hd;
  return {q + seq_begin * qs + h * hd,
          k + seq_begin * ks + g * hd,
          v + seq_begin * ks + g * hd,
          key_valid ? key_valid + seq_begin : nullptr,
          qs,
          ks};
}

// Number of leading keys of [k0, k0 + nk) that query row qi may see by causality.
inline int64_t causal_limit(bool causal, int64_t qi, int64_t k0, int64_t nk) {
  return causal ? std::clamp<int64_t>(qi - k0 + 1, 0, nk) : nk;
}

// Query rows [q0, q0 + nq) of one head against all the keys they may see; writes out and lse.
template <typename T>
void forward_query_block(const HeadView<T>& hv, int64_t L, int64_t q0, int64_t nq, int64_t bk,
                         const AttentionDims& d, T* out, int64_t out_stride, T* lse,
                         int64_t lse_stride, T* S, T* O, T* m, double* l) {
  const int64_t hd = d.head_dim;
  const T ninf = -std::numeric_limits<T>::infinity();
  const T scale = static_cast<T>(d.scale);
  std::fill_n(O, nq * hd, T(0));
  std::fill_n(m, nq, ninf);
  std::fill_n(l, nq, 0.0);
  const int64_t key_end = d.causal ? q0 + nq : L;
  for (int64_t k0 = 0; k0 < key_end; k0 += bk) {
    const int64_t nk = std::min(bk, key_end - k0);
    gemm<T>(false, true, nq, nk, hd, scale, hv.q + q0 * hv.q_stride, hv.q_stride,
            hv.k + k0 * hv.kv_stride, hv.kv_stride, T(0), S, bk);
    for (int64_t i = 0; i < nq; ++i) {
      T* row = S + i * bk;
      const int64_t lim = causal_limit(d.causal, q0 + i, k0, nk);
      if (hv.valid) {
        const uint8_t* valid = hv.valid + k0;
        for (int64_t j = 0; j < lim; ++j) row[j] = valid[j] ? row[j] : ninf;
      }
      T mx = ninf;
#pragma omp simd reduction(max : mx)
      for (int64_t j = 0; j < lim; ++j) mx = row[j] > mx ? row[j] : mx;
      const T m_new = std::max(m[i], mx);
      if (m_new == ninf) {  // nothing visible yet: contributes nothing
        std::fill_n(row, nk, T(0));
        continue;
      }
      const double sum = exp_shifted(row, row, lim, m_new);  // exp(-inf) = 0 for masked keys
      std::fill(row + lim, row + nk, T(0));
      if (m_new != m[i]) {
        const T alpha = fast_exp(m[i] - m_new);  // 0 when m[i] is -inf
        l[i] *= alpha;
        T* o = O + i * hd;
        for (int64_t c = 0; c < hd; ++c) o[c] *= alpha;
        m[i] = m_new;
      }
      l[i] += sum;
    }
    gemm<T>(false, false, nq, hd, nk, T(1), S, bk, hv.v + k0 * hv.kv_stride, hv.kv_stride, T(1), O,
            hd);
  }
  for (int64_t i = 0; i < nq; ++i) {
    T* o = out + (q0 + i) * out_stride;
    T& lse_i = lse[(q0 + i) * lse_stride];
    if (l[i] == 0) {
      std::fill_n(o, hd, T(0));
      lse_i = ninf;
      continue;
    }
    const T inv = static_cast<T>(1.0 / l[i]);
    for (int64_t c = 0; c < hd; ++c) o[c] = O[i * hd + c] * inv;
    lse_i = static_cast<T>(m[i] + std::log(l[i]));
  }
}

// Per-thread scratch of the backward: P and dP/dS tiles.
template <typename T>
struct BackwardScratch {
  int64_t ld;  // row stride of the tiles: the key block
  T *P, *dS;
  static int64_t size(const Tiles& t) { return 2 * t.bq * t.bk; }
  // The calling thread's slice of `all` (size() elements per thread).
  BackwardScratch(const Tiles& t, PoolVector<T>& all)
      : ld(t.bk), P(all.data() + omp_get_thread_num() * size(t)), dS(P + t.bq * t.bk) {}
};

// Scratch for every thread of a parallel region, allocated before it: threads allocating their
// own would make the arena's peak depend on how their lifetimes happen to overlap.
template <typename T>
PoolVector<T> per_thread_scratch(int64_t per_thread) {
  return PoolVector<T>(static_cast<size_t>(per_thread * omp_get_max_threads()));
}

// Pointers of the backward for one sequence and one query head.
template <typename T>
struct BackwardView {
  HeadView<T> in;
  const T* dout;   // rows at q_stride, like q
  const T* lse;    // row i at lse + i * heads
  const T* delta;  // D_i, same layout as lse
  T* dq;           // rows at q_stride
  T* dk;           // rows at kv_stride
  T* dv;
  int64_t heads;
};

template <typename T>
BackwardView<T> backward_view(const T* q, const T* k, const T* v, const T* lse, const T* delta,
                              const T* dout, T* dq, T* dk, T* dv, const uint8_t* key_valid,
                              const AttentionDims& d, int64_t seq_begin, int64_t h) {
  const int64_t hd = d.head_dim, g = h / (d.heads / d.kv_heads);
  const int64_t qs = d.heads * hd, ks = d.kv_heads * hd;
  return {head_view(q, k, v, key_valid, d, seq_begin, h),
          dout + seq_begin * qs + h * hd,
          lse + seq_begin * d.heads + h,
          delta + seq_begin * d.heads + h,
          dq + seq_begin * qs + h * hd,
          dk + seq_begin * ks + g * hd,
          dv + seq_begin * ks + g * hd,
          d.heads};
}

// One [query block x key block] tile of the backward. Adds this tile's share to dk and dv (when
// want_dkv) and to dq (when want_dq). Returns without work when no entry is visible.
template <typename T>
void backward_tile(const BackwardView<T>& bv, const AttentionDims& d, int64_t q0, int64_t nq,
                   int64_t k0, int64_t nk, bool want_dkv, bool want_dq, BackwardScratch<T>& s) {
  const HeadView<T>& hv = bv.in;
  const int64_t hd = d.head_dim;
  const T ninf = -std::numeric_limits<T>::infinity();
  const T scale = static_cast<T>(d.scale);
  T* P = s.P;
  T* dS = s.dS;
  const int64_t ld = s.ld;
  gemm<T>(false, true, nq, nk, hd, scale, hv.q + q0 * hv.q_stride, hv.q_stride,
          hv.k + k0 * hv.kv_stride, hv.kv_stride, T(0), P, ld);
  bool any = false;
  for (int64_t i = 0; i < nq; ++i) {
    T* row = P + i * ld;
    const T lse_i = bv.lse[(q0 + i) * bv.heads];
    const int64_t lim = lse_i == ninf ? 0 : causal_limit(d.causal, q0 + i, k0, nk);
    exp_shifted(row, row, lim, lse_i);
    if (hv.valid) {
      const uint8_t* valid = hv.valid + k0;
      for (int64_t j = 0; j < lim; ++j) row[j] = valid[j] ? row[j] : T(0);
    }
    std::fill(row + lim, row + nk, T(0));
    any = any || lim > 0;
  }
  if (!any) return;
  // dP = dout . v^T, then dS = P * (dP - D_i) * scale (the scale of S folded in once).
  gemm<T>(false, true, nq, nk, hd, T(1), bv.dout + q0 * hv.q_stride, hv.q_stride,
          hv.v + k0 * hv.kv_stride, hv.kv_stride, T(0), dS, ld);
  for (int64_t i = 0; i < nq; ++i) {
    const T D_i = bv.delta[(q0 + i) * bv.heads];
    const T* p = P + i * ld;
    T* ds = dS + i * ld;
    for (int64_t j = 0; j < nk; ++j) ds[j] = p[j] * (ds[j] - D_i) * scale;
  }
  if (want_dkv) {
    gemm<T>(true, false, nk, hd, nq, T(1), P, ld, bv.dout + q0 * hv.q_stride, hv.q_stride, T(1),
            bv.dv + k0 * hv.kv_stride, hv.kv_stride);
    gemm<T>(true, false, nk, hd, nq, T(1), dS, ld, hv.q + q0 * hv.q_stride, hv.q_stride, T(1),
            bv.dk + k0 * hv.kv_stride, hv.kv_stride);
  }
  if (want_dq)
    gemm<T>(false, false, nq, hd, nk, T(1), dS, ld, hv.k + k0 * hv.kv_stride, hv.kv_stride, T(1),
            bv.dq + q0 * hv.q_stride, hv.q_stride);
}

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// First query row that can see key block [k0, ...) by causality.
inline int64_t first_query(bool causal, int64_t k0) {
  return causal ? k0 : 0;
}

template <typename T>
void fill_zero_parallel(T* p, int64_t n) {
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t b = 0; b < ceil_div(n, 4096); ++b)
    std::fill(p + b * 4096, p + std::min(n, (b + 1) * 4096), T(0));
}

}  // namespace

template <typename T>
void attention_forward_tuned(const T* q, const T* k, const T* v, T* out, T* lse,
                             const int64_t* cu_seqlens, int64_t n_seqs, const AttentionDims& dims,
                             const uint8_t* key_valid, const AttentionTuning& tuning) {
  check_dims(dims, cu_seqlens, n_seqs);
  const Tiles tiles = choose_tiles(dims.head_dim, tuning);
  const int64_t hd = dims.head_dim, bq = tiles.bq;
  struct Task {
    int64_t seq, head, q0;
  };
  PoolVector<Task> tasks;
  for (int64_t s = 0; s < n_seqs; ++s)
    for (int64_t h = 0; h < dims.heads; ++h)
      for (int64_t q0 = 0; q0 < cu_seqlens[s + 1] - cu_seqlens[s]; q0 += bq)
        tasks.push_back({s, h, q0});
  // Causal blocks late in a sequence cost the most: start them first.
  // (std::sort with ties broken by creation order: stable_sort would allocate a buffer.)
  if (dims.causal)
    std::sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) {
      return a.q0 != b.q0 ? a.q0 > b.q0 : std::tie(a.seq, a.head) < std::tie(b.seq, b.head);
    });
  const int64_t qs = dims.heads * hd;
  const int64_t per_thread = bq * tiles.bk + bq * hd + bq;
  PoolVector<T> scratch = per_thread_scratch<T>(per_thread);
  PoolVector<double> row_sums = per_thread_scratch<double>(bq);
#pragma omp parallel if (score_work(cu_seqlens, n_seqs, dims) > kParallelWork)
  {
    T* S = scratch.data() + omp_get_thread_num() * per_thread;
    T* O = S + bq * tiles.bk;
    T* m = O + bq * hd;
    double* l = row_sums.data() + omp_get_thread_num() * bq;
#pragma omp for schedule(dynamic)
    for (size_t t = 0; t < tasks.size(); ++t) {
      const Task& task = tasks[t];
      const int64_t b = cu_seqlens[task.seq], L = cu_seqlens[task.seq + 1] - b;
      const HeadView<T> hv = head_view(q, k, v, key_valid, dims, b, task.head);
      forward_query_block(hv, L, task.q0, std::min(bq, L - task.q0), tiles.bk, dims,
                          out + b * qs + task.head * hd, qs, lse + b * dims.heads + task.head,
                          dims.heads, S, O, m, l);
    }
  }
}

template <typename T>
void attention_backward_tuned(const T* q, const T* k, const T* v, const T* out, const T* lse,
                              const T* dout, T* dq, T* dk, T* dv, const int64_t* cu_seqlens,
                              int64_t n_seqs, const AttentionDims& dims, const uint8_t* key_valid,
                              const AttentionTuning& tuning) {
  check_dims(dims, cu_seqlens, n_seqs);
  const int64_t N = dims.tokens, H = dims.heads, KVH = dims.kv_heads, hd = dims.head_dim;
  const Tiles tiles = choose_tiles(hd, tuning);
  const int64_t group = H / KVH, bq = tiles.bq, bk = tiles.bk;
  AttentionBackwardPlan plan = tuning.plan;
  const bool parallel = score_work(cu_seqlens, n_seqs, dims) > kParallelWork;
  fill_zero_parallel(dq, N * H * hd);
  fill_zero_parallel(dk, N * KVH * hd);
  fill_zero_parallel(dv, N * KVH * hd);

  // D_i = dout_i . out_i per (token, head).
  PoolVector<T> delta(static_cast<size_t>(N * H));
#pragma omp parallel for if (N * H * hd > (1 << 16))
  for (int64_t r = 0; r < N * H; ++r) {
    double acc = 0;
    const T* a = dout + r * hd;
    const T* b = out + r * hd;
#pragma omp simd reduction(+ : acc)
    for (int64_t c = 0; c < hd; ++c) acc += static_cast<double>(a[c]) * b[c];
    delta[r] = static_cast<T>(acc);
  }

  if (plan == AttentionBackwardPlan::kAuto) {
    // One task per (sequence, kv head) does the least arithmetic; use it unless the largest such
    // task would leave threads idle for long.
    double total = 0, largest = 0;
    for (int64_t s = 0; s < n_seqs; ++s) {
      const double L = static_cast<double>(cu_seqlens[s + 1] - cu_seqlens[s]);
      total += L * L * KVH;
      largest = std::max(largest, L * L);
    }
    const int threads = omp_get_max_threads();
    plan = largest * threads <= total ? AttentionBackwardPlan::kPerKvHead
                                      : AttentionBackwardPlan::kSplit;
  }

  auto view = [&](int64_t s, int64_t h) {
    return backward_view(q, k, v, lse, delta.data(), dout, dq, dk, dv, key_valid, dims,
                         cu_seqlens[s], h);
  };
  auto seq_len = [&](int64_t s) { return cu_seqlens[s + 1] - cu_seqlens[s]; };

  // Every key block of kv head g in sequence s against every query that may see it.
  auto key_block_pass = [&](int64_t s, int64_t g, int64_t k0, bool want_dq,
                            BackwardScratch<T>& scratch) {
    const int64_t L = seq_len(s), nk = std::min(bk, L - k0);
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      const BackwardView<T> bv = view(s, h);
      for (int64_t q0 = first_query(dims.causal, k0) / bq * bq; q0 < L; q0 += bq)
        backward_tile(bv, dims, q0, std::min(bq, L - q0), k0, nk, true, want_dq, scratch);
    }
  };

  if (plan == AttentionBackwardPlan::kPerKvHead) {
    struct SeqHead {
      int64_t seq, kv_head;
    };
    PoolVector<SeqHead> tasks;  // largest sequences first
    for (int64_t s = 0; s < n_seqs; ++s)
      for (int64_t g = 0; g < KVH; ++g) tasks.push_back({s, g});
    std::sort(tasks.begin(), tasks.end(), [&](const SeqHead& a, const SeqHead& b) {
      if (seq_len(a.seq) != seq_len(b.seq)) return seq_len(a.seq) > seq_len(b.seq);
      return std::tie(a.seq, a.kv_head) < std::tie(b.seq, b.kv_head);
    });
    PoolVector<T> scratch_all = per_thread_scratch<T>(BackwardScratch<T>::size(tiles));
#pragma omp parallel if (parallel)
    {
      BackwardScratch<T> scratch(tiles, scratch_all);
#pragma omp for schedule(dynamic)
      for (size_t t = 0; t < tasks.size(); ++t)
        for (int64_t k0 = 0; k0 < seq_len(tasks[t].seq); k0 += bk)
          key_block_pass(tasks[t].seq, tasks[t].kv_head, k0, true, scratch);
    }
    return;
  }

  // Split plan. Pass 1: dk, dv per (sequence, kv head, key block).
  struct Task {
    int64_t seq, head, start;
  };
  PoolVector<Task> kv_tasks, q_tasks;
  for (int64_t s = 0; s < n_seqs; ++s) {
    for (int64_t g = 0; g < KVH; ++g)
      for (int64_t k0 = 0; k0 < seq_len(s); k0 += bk) kv_tasks.push_back({s, g, k0});
    for (int64_t h = 0; h < H; ++h)
      for (int64_t q0 = 0; q0 < seq_len(s); q0 += bq) q_tasks.push_back({s, h, q0});
  }
  if (dims.causal) {  // early key blocks and late query blocks see the most: start them first
    std::sort(kv_tasks.begin(), kv_tasks.end(), [](const Task& a, const Task& b) {
      return a.start != b.start ? a.start < b.start
                                : std::tie(a.seq, a.head) < std::tie(b.seq, b.head);
    });
    std::sort(q_tasks.begin(), q_tasks.end(), [](const Task& a, const Task& b) {
      return a.start != b.start ? a.start > b.start
                                : std::tie(a.seq, a.head) < std::tie(b.seq, b.head);
    });
  }
  PoolVector<T> scratch_all = per_thread_scratch<T>(BackwardScratch<T>::size(tiles));
#pragma omp parallel if (parallel)
  {
    BackwardScratch<T> scratch(tiles, scratch_all);
    // The passes write disjoint outputs, so threads may move on without a barrier.
#pragma omp for schedule(dynamic) nowait
    for (size_t t = 0; t < kv_tasks.size(); ++t) {
      key_block_pass(kv_tasks[t].seq, kv_tasks[t].head, kv_tasks[t].start, false, scratch);
    }
    // Pass 2: dq per (sequence, head, query block).
#pragma omp for schedule(dynamic)
    for (size_t t = 0; t < q_tasks.size(); ++t) {
      const Task& task = q_tasks[t];
      const int64_t L = seq_len(task.seq), q0 = task.start, nq = std::min(bq, L - q0);
      const BackwardView<T> bv = view(task.seq, task.head);
      const int64_t key_end = dims.causal ? q0 + nq : L;
      for (int64_t k0 = 0; k0 < key_end; k0 += bk)
        backward_tile(bv, dims, q0, nq, k0, std::min(bk, key_end - k0), false, true, scratch);
    }
  }
}

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse,
                       const int64_t* cu_seqlens, int64_t n_seqs, const AttentionDims& dims,
                       const uint8_t* key_valid) {
  attention_forward_tuned(q, k, v, out, lse, cu_seqlens, n_seqs, dims, key_valid,
                          AttentionTuning{});
}

template <typename T>
void attention_backward(const T* q, const T* k, const T* v, const T* out, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv, const int64_t* cu_seqlens,
                        int64_t n_seqs, const AttentionDims& dims, const uint8_t* key_valid) {
  attention_backward_tuned(q, k, v, out, lse, dout, dq, dk, dv, cu_seqlens, n_seqs, dims, key_valid,
                           AttentionTuning{});
}

template <typename T>
void attention_decode(const T* q, const T* k_cache, const T* v_cache, T* out, int64_t length,
                      const AttentionDims& dims) {
  QV_CHECK(dims.heads > 0 && dims.kv_heads > 0 && dims.heads % dims.kv_heads == 0,
           "attention_decode: heads (", dims.heads, ") must be a positive multiple of kv_heads (",
           dims.kv_heads, ")");
  QV_CHECK(dims.head_dim > 0 && length >= 0, "attention_decode: bad head_dim ", dims.head_dim,
           " or cache length ", length);
  const int64_t hd = dims.head_dim, group = dims.heads / dims.kv_heads, ks = dims.kv_heads * hd;
  const T scale = static_cast<T>(dims.scale);
  // One query row per head: matrix-vector work that only streams the cache, so plain loops.
#pragma omp parallel if (dims.heads * length * hd > (1 << 16))
  {
    PoolVector<T> s(static_cast<size_t>(length));
#pragma omp for schedule(static)
    for (int64_t h = 0; h < dims.heads; ++h) {
      const T* qh = q + h * hd;
      const T* kg = k_cache + (h / group) * hd;
      const T* vg = v_cache + (h / group) * hd;
      T* o = out + h * hd;
      std::fill_n(o, hd, T(0));
      if (length == 0) continue;  // nothing to attend: zero output, as in the forward
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < length; ++j) {
        const T* kj = kg + j * ks;
        T dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < hd; ++c) dot += qh[c] * kj[c];
        s[j] = dot * scale;
        mx = std::max(mx, s[j]);
      }
      const double sum = exp_shifted(s.data(), s.data(), length, mx);
      for (int64_t j = 0; j < length; ++j) {
        const T p = s[j];
        const T* vj = vg + j * ks;
        for (int64_t c = 0; c < hd; ++c) o[c] += p * vj[c];
      }
      const T inv = static_cast<T>(1.0 / sum);
      for (int64_t c = 0; c < hd; ++c) o[c] *= inv;
    }
  }
}

#define QV_INSTANTIATE(T)                                                                         \
  template void attention_forward<T>(const T*, const T*, const T*, T*, T*, const int64_t*,        \
                                     int64_t, const AttentionDims&, const uint8_t*);              \
  template void attention_backward<T>(const T*, const T*, const T*, const T*, const T*, const T*, \
                                      T*, T*, T*, const int64_t*, int64_t, const AttentionDims&,  \
                                      const uint8_t*);                                            \
  template void attention_decode<T>(const T*, const T*, const T*, T*, int64_t,                    \
                                    const AttentionDims&);                                        \
  template void attention_forward_tuned<T>(const T*, const T*, const T*, T*, T*, const int64_t*,  \
                                           int64_t, const AttentionDims&, const uint8_t*,         \
                                           const AttentionTuning&);                               \
  template void attention_backward_tuned<T>(                                                      \
      const T*, const T*, const T*, const T*, const T*, const T*, T*, T*, T*, const int64_t*,     \
      int64_t, const AttentionDims&, const uint8_t*, const AttentionTuning&);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

}  // namespace qv::kernels::cpu
