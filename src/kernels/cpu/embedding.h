// The CPU implementation of kernels/embedding.h (OpenMP; see that header for what each op does).
#pragma once
#include <cstdint>

#include "kernels/embedding.h"

namespace qv::kernels::cpu {

template <typename T>
void embedding_forward(const int64_t* ids, const T* table, T* out, int64_t n, int64_t vocab,
                       int64_t D);
template <typename T>
void embedding_backward(const int64_t* ids, const T* dout, T* dtable, int64_t n, int64_t D,
                        const uint8_t* skip = nullptr);
template <typename T>
void weighted_gather_forward(const int64_t* index, const T* weight, const T* table, T* out,
                             int64_t n, int64_t taps, int64_t D);
template <typename T>
void weighted_gather_backward(const int64_t* index, const T* weight, const T* dout, T* dtable,
                              int64_t n, int64_t taps, int64_t D);

}  // namespace qv::kernels::cpu
