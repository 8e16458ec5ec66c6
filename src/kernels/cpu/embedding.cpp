#include "kernels/cpu/embedding.h"

#include <cstring>

#include "core/error.h"

namespace qv::kernels {

template <typename T>
void embedding_forward(const int64_t* ids, const T* table, T* out, int64_t n, int64_t vocab,
                       int64_t D) {
  for (int64_t i = 0; i < n; ++i)
    QV_CHECK(ids[i] >= 0 && ids[i] < vocab, "token id ", ids[i], " at position ", i,
             " is outside the embedding table [0, ", vocab, ")");
#pragma omp parallel for if (n * D > 65536)
  for (int64_t i = 0; i < n; ++i) std::memcpy(out + i * D, table + ids[i] * D, D * sizeof(T));
}

template <typename T>
void embedding_backward(const int64_t* ids, const T* dout, T* dtable, int64_t n, int64_t D,
                        const uint8_t* skip) {
  // Serial over tokens: repeated ids would race, and this is memory-bound anyway.
  for (int64_t i = 0; i < n; ++i) {
    if (skip && skip[i]) continue;
    T* row = dtable + ids[i] * D;
    const T* g = dout + i * D;
    for (int64_t j = 0; j < D; ++j) row[j] += g[j];
  }
}

template <typename T>
void weighted_gather_forward(const int64_t* index, const T* weight, const T* table, T* out,
                             int64_t n, int64_t taps, int64_t D) {
#pragma omp parallel for if (n * D > 65536)
  for (int64_t i = 0; i < n; ++i) {
    T* o = out + i * D;
    for (int64_t c = 0; c < taps; ++c) {
      const T w = weight[i * taps + c];
      const T* row = table + index[i * taps + c] * D;
      if (c == 0)
        for (int64_t j = 0; j < D; ++j) o[j] = row[j] * w;
      else
        for (int64_t j = 0; j < D; ++j) o[j] += row[j] * w;
    }
  }
}

template <typename T>
void weighted_gather_backward(const int64_t* index, const T* weight, const T* dout, T* dtable,
                              int64_t n, int64_t taps, int64_t D) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < taps; ++c) {
      const T w = weight[i * taps + c];
      T* row = dtable + index[i * taps + c] * D;
      const T* g = dout + i * D;
      for (int64_t j = 0; j < D; ++j) row[j] += w * g[j];
    }
}

#define QV_INSTANTIATE(T)                                                                       \
  template void embedding_forward<T>(const int64_t*, const T*, T*, int64_t, int64_t, int64_t); \
  template void embedding_backward<T>(const int64_t*, const T*, T*, int64_t, int64_t,           \
                                      const uint8_t*);                                          \
  template void weighted_gather_forward<T>(const int64_t*, const T*, const T*, T*, int64_t,     \
                                           int64_t, int64_t);                                   \
  template void weighted_gather_backward<T>(const int64_t*, const T*, const T*, T*, int64_t,    \
                                            int64_t, int64_t);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

}  // namespace qv::kernels
