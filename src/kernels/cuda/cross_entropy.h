// CUDA: softmax cross-entropy over rows of logits, with ignore_index = -100 targets. Same
// signature and semantics as kernels/cpu/cross_entropy.h (T = float); logits, targets and
// dlogits are device memory. cross_entropy returns the loss, so it waits for the stream (the
// model's chunked classifier calls it once per chunk of rows in validation and inference);
// cross_entropy_terms leaves the row terms in device memory and does not wait (training).
#pragma once
#include <cstdint>

#include "kernels/cross_entropy.h"

namespace qv::kernels::cuda {

using qv::kernels::CrossEntropyResult;
using qv::kernels::kIgnoreIndex;

// Computes the loss terms for rows of logits [rows, V]. When dlogits is non-null it receives
// (softmax - onehot(target)) * grad_scale for kept rows and 0 for ignored rows (it may alias
// logits). A target outside [0, V) other than -100 throws qv::Error.
template <typename T>
CrossEntropyResult cross_entropy(const T* logits, const int64_t* targets, T* dlogits, int64_t rows,
                                 int64_t V, T grad_scale);
CrossEntropyResult cross_entropy(float* logits, const int64_t* targets, bf16* dlogits, int64_t ld,
                                 int64_t rows, int64_t V, float grad_scale);
// kernels/cross_entropy.h's deferred forms: row_loss (double, device) receives each row's term;
// targets are not checked (an invalid one gives the term 0 and a zero gradient row).
void cross_entropy_terms(const float* logits, const int64_t* targets, float* dlogits, int64_t rows,
                         int64_t V, float grad_scale, double* row_loss);
void cross_entropy_terms(float* logits, const int64_t* targets, bf16* dlogits, int64_t ld,
                         int64_t rows, int64_t V, float grad_scale, double* row_loss);
// y[i] = double(x[i]) for n device values, on the stream (widen.cu).
void widen_to_double(const float* x, double* y, int64_t n);

}  // namespace qv::kernels::cuda
