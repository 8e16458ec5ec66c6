#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/fast_math.h"
#include "kernels/cpu/linear.h"

namespace qv::kernels {

namespace {

// Queries are processed in blocks of this many rows: scores for one block against the keys it
// may see are the largest temporary, so memory stays linear in sequence length.
constexpr int64_t kQueryBlock = 64;

struct Task {
  int64_t seq_begin, seq_len, head;
};

template <typename T>
void check_dims(const AttentionDims& d, const int64_t* cu, int64_t n_seqs) {
  QV_CHECK(d.heads > 0 && d.kv_heads > 0 && d.heads % d.kv_heads == 0,
           "attention: heads (", d.heads, ") must be a positive multiple of kv_heads (",
           d.kv_heads, ")");
  QV_CHECK(cu[0] == 0 && cu[n_seqs] == d.tokens, "attention: cu_seqlens must run from 0 to ",
           d.tokens);
  for (int64_t s = 0; s < n_seqs; ++s)
    QV_CHECK(cu[s + 1] >= cu[s], "attention: cu_seqlens must be non-decreasing");
}

// Scores of queries [q0, q0 + nq) of one sequence against keys [0, nk): masked entries -inf.
template <typename T>
void block_scores(const T* q, const T* k, T* S, int64_t q0, int64_t nq, int64_t nk,
                  int64_t q_stride, int64_t k_stride, int64_t hd, const AttentionDims& d,
                  const uint8_t* key_valid) {
  gemm<T>(false, true, nq, nk, hd, static_cast<T>(d.scale), q + q0 * q_stride, q_stride, k,
          k_stride, T(0), S, nk);
  const T ninf = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < nq; ++i) {
    T* row = S + i * nk;
    if (d.causal)
      for (int64_t j = q0 + i + 1; j < nk; ++j) row[j] = ninf;
    if (key_valid)
      for (int64_t j = 0; j < nk; ++j)
        if (!key_valid[j]) row[j] = ninf;
  }
}

template <typename T>
std::vector<Task> make_tasks(const int64_t* cu, int64_t n_seqs, int64_t heads) {
  std::vector<Task> tasks;
  for (int64_t s = 0; s < n_seqs; ++s)
    for (int64_t h = 0; h < heads; ++h)
      if (cu[s + 1] > cu[s]) tasks.push_back({cu[s], cu[s + 1] - cu[s], h});
  return tasks;
}

}  // namespace

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse,
                       const int64_t* cu_seqlens, int64_t n_seqs, const AttentionDims& d,
                       const uint8_t* key_valid) {
  check_dims<T>(d, cu_seqlens, n_seqs);
  const int64_t hd = d.head_dim, group = d.heads / d.kv_heads;
  const int64_t qs = d.heads * hd, ks = d.kv_heads * hd;
  const std::vector<Task> tasks = make_tasks<T>(cu_seqlens, n_seqs, d.heads);
#pragma omp parallel
  {
    std::vector<T> S;
#pragma omp for schedule(dynamic)
    for (size_t t = 0; t < tasks.size(); ++t) {
      const Task& task = tasks[t];
      const int64_t L = task.seq_len, h = task.head, g = h / group;
      const T* qh = q + task.seq_begin * qs + h * hd;
      const T* kh = k + task.seq_begin * ks + g * hd;
      const T* vh = v + task.seq_begin * ks + g * hd;
      T* oh = out + task.seq_begin * qs + h * hd;
      const uint8_t* valid = key_valid ? key_valid + task.seq_begin : nullptr;
      for (int64_t q0 = 0; q0 < L; q0 += kQueryBlock) {
        const int64_t nq = std::min(kQueryBlock, L - q0);
        const int64_t nk = d.causal ? q0 + nq : L;
        S.resize(nq * nk);
        block_scores(qh, kh, S.data(), q0, nq, nk, qs, ks, hd, d, valid);
        for (int64_t i = 0; i < nq; ++i) {
          T* row = S.data() + i * nk;
          T mx = -std::numeric_limits<T>::infinity();
          for (int64_t j = 0; j < nk; ++j) mx = std::max(mx, row[j]);
          T* lse_out = lse + (task.seq_begin + q0 + i) * d.heads + h;
          if (mx == -std::numeric_limits<T>::infinity()) {  // nothing to attend
            std::fill(row, row + nk, T(0));
            *lse_out = -std::numeric_limits<T>::infinity();
            continue;
          }
          double sum = 0;
          for (int64_t j = 0; j < nk; ++j) row[j] = fast_exp(row[j] - mx);
          for (int64_t j = 0; j < nk; ++j) sum += row[j];
          const T inv = static_cast<T>(1.0 / sum);
          for (int64_t j = 0; j < nk; ++j) row[j] *= inv;
          *lse_out = mx + static_cast<T>(std::log(sum));
        }
        gemm<T>(false, false, nq, hd, nk, T(1), S.data(), nk, vh, ks, T(0), oh + q0 * qs, qs);
      }
    }
  }
}

template <typename T>
void attention_backward(const T* q, const T* k, const T* v, const T* out, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv, const int64_t* cu_seqlens,
                        int64_t n_seqs, const AttentionDims& d, const uint8_t* key_valid) {
  check_dims<T>(d, cu_seqlens, n_seqs);
  const int64_t hd = d.head_dim, group = d.heads / d.kv_heads;
  const int64_t qs = d.heads * hd, ks = d.kv_heads * hd;
  const T scale = static_cast<T>(d.scale);
  // One task per (sequence, kv head): it owns that kv head's dk/dv rows and its query heads' dq
  // rows, so tasks never write the same memory.
  const std::vector<Task> tasks = make_tasks<T>(cu_seqlens, n_seqs, d.kv_heads);
#pragma omp parallel
  {
    std::vector<T> P, dP, Dsum;
#pragma omp for schedule(dynamic)
    for (size_t t = 0; t < tasks.size(); ++t) {
      const Task& task = tasks[t];
      const int64_t L = task.seq_len, g = task.head;
      const T* kh = k + task.seq_begin * ks + g * hd;
      const T* vh = v + task.seq_begin * ks + g * hd;
      T* dkh = dk + task.seq_begin * ks + g * hd;
      T* dvh = dv + task.seq_begin * ks + g * hd;
      for (int64_t i = 0; i < L; ++i)
        for (int64_t c = 0; c < hd; ++c) dkh[i * ks + c] = dvh[i * ks + c] = T(0);
      const uint8_t* valid = key_valid ? key_valid + task.seq_begin : nullptr;
      for (int64_t h = g * group; h < (g + 1) * group; ++h) {
        const T* qh = q + task.seq_begin * qs + h * hd;
        const T* oh = out + task.seq_begin * qs + h * hd;
        const T* doh = dout + task.seq_begin * qs + h * hd;
        T* dqh = dq + task.seq_begin * qs + h * hd;
        for (int64_t q0 = 0; q0 < L; q0 += kQueryBlock) {
          const int64_t nq = std::min(kQueryBlock, L - q0);
          const int64_t nk = d.causal ? q0 + nq : L;
          P.resize(nq * nk);
          dP.resize(nq * nk);
          Dsum.resize(nq);
          block_scores(qh, kh, P.data(), q0, nq, nk, qs, ks, hd, d, valid);
          for (int64_t i = 0; i < nq; ++i) {
            const T l = lse[(task.seq_begin + q0 + i) * d.heads + h];
            T* row = P.data() + i * nk;
            if (l == -std::numeric_limits<T>::infinity()) {
              std::fill(row, row + nk, T(0));
            } else {
              for (int64_t j = 0; j < nk; ++j) row[j] = fast_exp(row[j] - l);
            }
            double s = 0;
            for (int64_t c = 0; c < hd; ++c)
              s += static_cast<double>(doh[(q0 + i) * qs + c]) * oh[(q0 + i) * qs + c];
            Dsum[i] = static_cast<T>(s);
          }
          // dV += P^T dO ; dP = dO V^T ; dS = P (dP - D) ; dQ = dS K scale ; dK += dS^T Q scale.
          gemm<T>(true, false, nk, hd, nq, T(1), P.data(), nk, doh + q0 * qs, qs, T(1), dvh, ks);
          gemm<T>(false, true, nq, nk, hd, T(1), doh + q0 * qs, qs, vh, ks, T(0), dP.data(), nk);
          for (int64_t i = 0; i < nq; ++i)
            for (int64_t j = 0; j < nk; ++j)
              dP[i * nk + j] = P[i * nk + j] * (dP[i * nk + j] - Dsum[i]);
          gemm<T>(false, false, nq, hd, nk, scale, dP.data(), nk, kh, ks, T(0), dqh + q0 * qs, qs);
          gemm<T>(true, false, nk, hd, nq, scale, dP.data(), nk, qh + q0 * qs, qs, T(1), dkh, ks);
        }
      }
    }
  }
}

template <typename T>
void attention_decode(const T* q, const T* k_cache, const T* v_cache, T* out, int64_t length,
                      const AttentionDims& d) {
  const int64_t hd = d.head_dim, group = d.heads / d.kv_heads, ks = d.kv_heads * hd;
#pragma omp parallel
  {
    std::vector<T> s(length);
#pragma omp for
    for (int64_t h = 0; h < d.heads; ++h) {
      const int64_t g = h / group;
      // scores = K q * scale (a matrix-vector product over the cache rows of kv head g)
      gemm<T>(false, true, length, 1, hd, static_cast<T>(d.scale), k_cache + g * hd, ks,
              q + h * hd, hd, T(0), s.data(), 1);
      T mx = s[0];
      for (int64_t j = 1; j < length; ++j) mx = std::max(mx, s[j]);
      double sum = 0;
      for (int64_t j = 0; j < length; ++j) s[j] = fast_exp(s[j] - mx);
      for (int64_t j = 0; j < length; ++j) sum += s[j];
      const T inv = static_cast<T>(1.0 / sum);
      for (int64_t j = 0; j < length; ++j) s[j] *= inv;
      gemm<T>(false, false, 1, hd, length, T(1), s.data(), length, v_cache + g * hd, ks, T(0),
              out + h * hd, hd);
    }
  }
}

#define QV_INSTANTIATE(T)                                                                    \
  template void attention_decode<T>(const T*, const T*, const T*, T*, int64_t,               \
                                    const AttentionDims&);                                   \
  template void attention_forward<T>(const T*, const T*, const T*, T*, T*, const int64_t*,   \
                                     int64_t, const AttentionDims&, const uint8_t*);         \
  template void attention_backward<T>(const T*, const T*, const T*, const T*, const T*,      \
                                      const T*, T*, T*, T*, const int64_t*, int64_t,         \
                                      const AttentionDims&, const uint8_t*);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

}  // namespace qv::kernels
