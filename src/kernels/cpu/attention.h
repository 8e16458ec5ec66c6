// The CPU implementation of kernels/attention.h (OpenMP; see that header for what each op does).
#pragma once
#include <cstdint>

#include "kernels/attention.h"

namespace qv::kernels::cpu {

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse,
                       const int64_t* cu_seqlens, int64_t n_seqs, const AttentionDims& dims,
                       const uint8_t* key_valid = nullptr);
template <typename T>
void attention_backward(const T* q, const T* k, const T* v, const T* out, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv, const int64_t* cu_seqlens,
                        int64_t n_seqs, const AttentionDims& dims,
                        const uint8_t* key_valid = nullptr);
template <typename T>
void attention_decode(const T* q, const T* k_cache, const T* v_cache, T* out, int64_t length,
                      const AttentionDims& dims);

}  // namespace qv::kernels::cpu
