// CUDA: Row gathers: token embedding lookup and weighted gathers (bilinear position-table
// sampling). Same signatures and semantics as kernels/cpu/embedding.h; every pointer is device
// memory of the current device, and ops run on its stream (kernels/cuda/runtime.h). T = float or
// qv::bf16 (bf16 elements are computed in float and rounded once on store).
#pragma once
#include <cstdint>

namespace qv::kernels::cuda {

// out[i] = table[ids[i]] (rows of D). Throws qv::Error naming the id when out of [0, vocab)
// (the check reads one flag back from the device: the call waits for the stream).
template <typename T>
void embedding_forward(const int64_t* ids, const T* table, T* out, int64_t n, int64_t vocab,
                       int64_t D);

// dtable[ids[i]] += dout[i] for rows where skip is null or skip[i] == 0. On the device ids are
// not re-checked (the forward checked them); negative ones are skipped.
template <typename T>
void embedding_backward(const int64_t* ids, const T* dout, T* dtable, int64_t n, int64_t D,
                        const uint8_t* skip = nullptr);

// out[i] = sum_c weight[i*taps + c] * table[index[i*taps + c]] (rows of D), summed in c order.
// On the device negative indices contribute nothing (the CPU op throws); indices are built by the
// model, not read from input.
template <typename T>
void weighted_gather_forward(const int64_t* index, const T* weight, const T* table, T* out,
                             int64_t n, int64_t taps, int64_t D);

// dtable[index[i*taps + c]] += weight[i*taps + c] * dout[i].
template <typename T>
void weighted_gather_backward(const int64_t* index, const T* weight, const T* dout, T* dtable,
                              int64_t n, int64_t taps, int64_t D);

}  // namespace qv::kernels::cuda
