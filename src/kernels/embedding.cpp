// Dispatch of kernels/embedding.h to the backend of the calling thread's device.
#include "kernels/embedding.h"

#include "kernels/cpu/embedding.h"
#include "kernels/dispatch.h"

namespace qv::kernels {

template <typename T>
void embedding_forward(const int64_t* ids, const T* table, T* out, int64_t n, int64_t vocab,
                       int64_t D) {
  QV_DISPATCH_T(T, embedding_forward, ids, table, out, n, vocab, D);
}

template <typename T>
void embedding_backward(const int64_t* ids, const T* dout, T* dtable, int64_t n, int64_t D,
                        const uint8_t* skip) {
  QV_DISPATCH_T(T, embedding_backward, ids, dout, dtable, n, D, skip);
}

template <typename T>
void weighted_gather_forward(const int64_t* index, const T* weight, const T* table, T* out,
                             int64_t n, int64_t taps, int64_t D) {
  QV_DISPATCH_T(T, weighted_gather_forward, index, weight, table, out, n, taps, D);
}

template <typename T>
void weighted_gather_backward(const int64_t* index, const T* weight, const T* dout, T* dtable,
                              int64_t n, int64_t taps, int64_t D) {
  QV_DISPATCH_T(T, weighted_gather_backward, index, weight, dout, dtable, n, taps, D);
}

template void embedding_forward<float>(const int64_t* ids, const float* table, float* out,
                                       int64_t n, int64_t vocab, int64_t D);
template void embedding_forward<double>(const int64_t* ids, const double* table, double* out,
                                        int64_t n, int64_t vocab, int64_t D);
template void embedding_backward<float>(const int64_t* ids, const float* dout, float* dtable,
                                        int64_t n, int64_t D, const uint8_t* skip);
template void embedding_backward<double>(const int64_t* ids, const double* dout, double* dtable,
                                         int64_t n, int64_t D, const uint8_t* skip);
template void weighted_gather_forward<float>(const int64_t* index, const float* weight,
                                             const float* table, float* out, int64_t n,
                                             int64_t taps, int64_t D);
template void weighted_gather_forward<double>(const int64_t* index, const double* weight,
                                              const double* table, double* out, int64_t n,
                                              int64_t taps, int64_t D);
template void weighted_gather_backward<float>(const int64_t* index, const float* weight,
                                              const float* dout, float* dtable, int64_t n,
                                              int64_t taps, int64_t D);
template void weighted_gather_backward<double>(const int64_t* index, const double* weight,
                                               const double* dout, double* dtable, int64_t n,
                                               int64_t taps, int64_t D);

}  // namespace qv::kernels
