// Dispatch of kernels/attention.h to the backend of the calling thread's device.
#include "kernels/attention.h"

#include "kernels/cpu/attention.h"
#include "kernels/dispatch.h"

namespace qv::kernels {

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse,
                       const int64_t* cu_seqlens, int64_t n_seqs, const AttentionDims& dims,
                       const uint8_t* key_valid) {
  QV_DISPATCH_T(T, attention_forward, q, k, v, out, lse, cu_seqlens, n_seqs, dims, key_valid);
}

template <typename T>
void attention_backward(const T* q, const T* k, const T* v, const T* out, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv, const int64_t* cu_seqlens,
                        int64_t n_seqs, const AttentionDims& dims, const uint8_t* key_valid) {
  QV_DISPATCH_T(T, attention_backward, q, k, v, out, lse, dout, dq, dk, dv, cu_seqlens, n_seqs,
                dims, key_valid);
}

template <typename T>
void attention_decode(const T* q, const T* k_cache, const T* v_cache, T* out, int64_t length,
                      const AttentionDims& dims) {
  QV_DISPATCH_T(T, attention_decode, q, k_cache, v_cache, out, length, dims);
}

template void attention_forward<float>(const float* q, const float* k, const float* v, float* out,
                                       float* lse, const int64_t* cu_seqlens, int64_t n_seqs,
                                       const AttentionDims& dims, const uint8_t* key_valid);
template void attention_forward<double>(const double* q, const double* k, const double* v,
                                        double* out, double* lse, const int64_t* cu_seqlens,
                                        int64_t n_seqs, const AttentionDims& dims,
                                        const uint8_t* key_valid);
template void attention_backward<float>(const float* q, const float* k, const float* v,
                                        const float* out, const float* lse, const float* dout,
                                        float* dq, float* dk, float* dv, const int64_t* cu_seqlens,
                                        int64_t n_seqs, const AttentionDims& dims,
                                        const uint8_t* key_valid);
template void attention_backward<double>(const double* q, const double* k, const double* v,
                                         const double* out, const double* lse, const double* dout,
                                         double* dq, double* dk, double* dv,
                                         const int64_t* cu_seqlens, int64_t n_seqs,
                                         const AttentionDims& dims, const uint8_t* key_valid);
template void attention_decode<float>(const float* q, const float* k_cache, const float* v_cache,
                                      float* out, int64_t length, const AttentionDims& dims);
template void attention_decode<double>(const double* q, const double* k_cache,
                                       const double* v_cache, double* out, int64_t length,
                                       const AttentionDims& dims);

}  // namespace qv::kernels
