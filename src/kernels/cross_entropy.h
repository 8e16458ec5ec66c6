// Softmax cross-entropy over rows of logits, with ignore_index = -100 targets.
#pragma once
#include <cstdint>

#include "core/bf16.h"

namespace qv::kernels {

constexpr int64_t kIgnoreIndex = -100;

struct CrossEntropyResult {
  double loss_sum = 0;  // sum over kept rows of -log softmax(logits)[target]
  int64_t kept = 0;     // rows whose target is not ignored
};

// Computes the loss terms for rows of logits [rows, V]. When dlogits is non-null it receives
// (softmax - onehot(target)) * grad_scale for kept rows and 0 for ignored rows (it may alias
// logits). A target outside [0, V) other than -100 throws qv::Error.
template <typename T>
CrossEntropyResult cross_entropy(const T* logits, const int64_t* targets, T* dlogits, int64_t rows,
                                 int64_t V, T grad_scale);

// Shared by every backend's cross_entropy (host code, host memory):
// The result from each row's loss term: the kept rows' terms summed in row order in double, so
// the loss depends neither on the thread count nor on the device; ignored rows are skipped
// (their terms are not read). L is the type the backend computed the terms in.
template <typename L>
CrossEntropyResult sum_row_losses(const L* row_loss, const int64_t* targets, int64_t rows);
// Throws qv::Error naming a target that is outside [0, V) and not the ignore index.
[[noreturn]] void fail_bad_target(int64_t target, int64_t row, int64_t V);

// The same loss, with the gradient written in bf16 (each element the float gradient above rounded
// to nearest even: the same bits as computing it in float and rounding afterwards) for a bf16
// classifier backward: the rounding happens while a row is still in cache instead of in a
// separate pass over [rows, V]. Row r's gradient goes to dlogits + r * ld (ld >= V). `logits` is
// overwritten (used as scratch), and dlogits may be the logits' own memory seen as bf16 with
// ld = 2 V: each row's gradient then fills the first half of that row's float storage, so the
// classifier needs no second [rows, V] buffer.
CrossEntropyResult cross_entropy(float* logits, const int64_t* targets, bf16* dlogits, int64_t ld,
                                 int64_t rows, int64_t V, float grad_scale);

// The deferred forms (a trainer's step): the same gradient, but each row's loss term goes to
// row_loss[r] (double, memory of the current device; 0 for an ignored row) and nothing is read
// back, so on a GPU the call returns without waiting for the stream. The host sums the terms
// later, with sum_row_losses over a copy. Targets must be valid: the CPU throws as above, a GPU
// does not check them (the caller has, on the host: the model's classifier does).
void cross_entropy_terms(const float* logits, const int64_t* targets, float* dlogits, int64_t rows,
                         int64_t V, float grad_scale, double* row_loss);
void cross_entropy_terms(float* logits, const int64_t* targets, bf16* dlogits, int64_t ld,
                         int64_t rows, int64_t V, float grad_scale, double* row_loss);

}  // namespace qv::kernels
