// Row gathers (token embeddings, weighted position-table sampling) and their scatter-add
// backwards. The backwards let each thread own a block of columns: rows with repeated ids then
// never race, and the summation order (i ascending, then c) is fixed whatever the thread count.
#include "kernels/cpu/embedding.h"

#include <algorithm>

#include "core/error.h"

namespace qv::kernels::cpu {
namespace {

constexpr int64_t kColumnBlock = 256;

template <typename Fn>
void for_column_blocks(int64_t D, int64_t work, Fn fn) {
  const int64_t blocks = (D + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for if (work > (1 << 15))
  for (int64_t b = 0; b < blocks; ++b) fn(b * kColumnBlock, std::min(D, (b + 1) * kColumnBlock));
}

}  // namespace

template <typename T>
void embedding_forward(const int64_t* ids, const T* table, T* out, int64_t n, int64_t vocab,
                       int64_t D) {
  for (int64_t i = 0; i < n; ++i)
    QV_CHECK(ids[i] >= 0 && ids[i] < vocab, "embedding: token id ", ids[i], " at position ", i,
             " is outside the vocabulary of size ", vocab);
#pragma omp parallel for if (n * D > (1 << 15))
  for (int64_t i = 0; i < n; ++i) std::copy_n(table + ids[i] * D, D, out + i * D);
}

template <typename T>
void embedding_backward(const int64_t* ids, const T* dout, T* dtable, int64_t n, int64_t D,
                        const uint8_t* skip) {
  for (int64_t i = 0; i < n; ++i)
    QV_CHECK((skip && skip[i]) || ids[i] >= 0, "embedding backward: negative token id ", ids[i],
             " at position ", i);
  for_column_blocks(D, n * D, [&](int64_t j0, int64_t j1) {
    for (int64_t i = 0; i < n; ++i) {
      if (skip && skip[i]) continue;
      T* dst = dtable + ids[i] * D;
      const T* src = dout + i * D;
      for (int64_t j = j0; j < j1; ++j) dst[j] += src[j];
    }
  });
}

template <typename T>
void weighted_gather_forward(const int64_t* index, const T* weight, const T* table, T* out,
                             int64_t n, int64_t taps, int64_t D) {
  for (int64_t i = 0; i < n * taps; ++i)
    QV_CHECK(index[i] >= 0, "weighted_gather: negative index ", index[i], " at entry ", i);
#pragma omp parallel for if (n * taps * D > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    T* dst = out + i * D;
    std::fill_n(dst, D, T(0));
    for (int64_t c = 0; c < taps; ++c) {
      const T wgt = weight[i * taps + c];
      const T* src = table + index[i * taps + c] * D;
      for (int64_t j = 0; j < D; ++j) dst[j] += wgt * src[j];
    }
  }
}

template <typename T>
void weighted_gather_backward(const int64_t* index, const T* weight, const T* dout, T* dtable,
                              int64_t n, int64_t taps, int64_t D) {
  for (int64_t i = 0; i < n * taps; ++i)
    QV_CHECK(index[i] >= 0, "weighted_gather backward: negative index ", index[i], " at entry ", i);
  for_column_blocks(D, n * taps * D, [&](int64_t j0, int64_t j1) {
    for (int64_t i = 0; i < n; ++i) {
      const T* src = dout + i * D;
      for (int64_t c = 0; c < taps; ++c) {
        const T wgt = weight[i * taps + c];
        T* dst = dtable + index[i * taps + c] * D;
        for (int64_t j = j0; j < j1; ++j) dst[j] += wgt * src[j];
      }
    }
  });
}

#define QV_INSTANTIATE(T)                                                                      \
  template void embedding_forward<T>(const int64_t*, const T*, T*, int64_t, int64_t, int64_t); \
  template void embedding_backward<T>(const int64_t*, const T*, T*, int64_t, int64_t,          \
                                      const uint8_t*);                                         \
  template void weighted_gather_forward<T>(const int64_t*, const T*, const T*, T*, int64_t,    \
                                           int64_t, int64_t);                                  \
  template void weighted_gather_backward<T>(const int64_t*, const T*, const T*, T*, int64_t,   \
                                            int64_t, int64_t);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

}  // namespace qv::kernels::cpu
