// Softmax cross-entropy per row of logits with a numerically stable log-sum-exp.
#include "kernels/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/buffer_pool.h"
#include "core/error.h"
#include "kernels/cpu/fast_exp.h"

namespace qv::kernels::cpu {

namespace {

void check_targets(const int64_t* targets, int64_t rows, int64_t V) {
  for (int64_t r = 0; r < rows; ++r)
    if (targets[r] != kIgnoreIndex && (targets[r] < 0 || targets[r] >= V))
      fail_bad_target(targets[r], r, V);
}

// One row: returns its loss term; with d, leaves (softmax - onehot) * grad_scale in d (which may
// alias x). Ignored rows are handled by the callers.
template <typename T>
double row_loss_and_grad(const T* x, T* d, int64_t t, int64_t V, T grad_scale) {
  T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < V; ++j) mx = x[j] > mx ? x[j] : mx;
  const double target_logit = x[t];  // read now: d may alias x and is written below
  double sum = 0;
  if (d) {
    // Keep exp(x - max) in d to avoid a second exp pass; it is rescaled once the sum is known.
    sum = exp_shifted(x, d, V, mx);
  } else {
    T scratch[1024];
    for (int64_t j = 0; j < V; j += 1024)
      sum += exp_shifted(x + j, scratch, std::min<int64_t>(1024, V - j), mx);
  }
  if (d) {
    const T factor = static_cast<T>(static_cast<double>(grad_scale) / sum);
    for (int64_t j = 0; j < V; ++j) d[j] *= factor;
    d[t] -= grad_scale;
  }
  return mx + std::log(sum) - target_logit;
}

}  // namespace

// Each row's loss term into row_loss (0 for ignored rows), the gradient into dlogits.
template <typename T>
void terms_into(const T* logits, const int64_t* targets, T* dlogits, int64_t rows, int64_t V,
                T grad_scale, double* row_loss) {
  check_targets(targets, rows, V);
#pragma omp parallel for schedule(dynamic, 4) if (rows * V > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    T* d = dlogits ? dlogits + r * V : nullptr;
    if (targets[r] == kIgnoreIndex) {
      if (d) std::fill_n(d, V, T(0));
      row_loss[r] = 0;
      continue;
    }
    row_loss[r] = row_loss_and_grad(logits + r * V, d, targets[r], V, grad_scale);
  }
}

template <typename T>
CrossEntropyResult cross_entropy(const T* logits, const int64_t* targets, T* dlogits, int64_t rows,
                                 int64_t V, T grad_scale) {
  PoolVector<double> row_loss(static_cast<size_t>(rows), 0.0);
  terms_into(logits, targets, dlogits, rows, V, grad_scale, row_loss.data());
  return sum_row_losses(row_loss.data(), targets, rows);
}

void cross_entropy_terms(const float* logits, const int64_t* targets, float* dlogits, int64_t rows,
                         int64_t V, float grad_scale, double* row_loss) {
  terms_into(logits, targets, dlogits, rows, V, grad_scale, row_loss);
}

namespace {

// Rounds a row of V floats to bf16 into d, which may be the row's own memory (d == (bf16*)x):
// blocks pass through a buffer on the stack, and block j's bf16 values land on bytes
// [2 j, 2 j + 2 n) of the row, floats that this block or an earlier one has already read.
void row_to_bf16(const float* x, bf16* d, int64_t V) {
  constexpr int64_t kBlock = 1024;
  bf16 block[kBlock];
  for (int64_t j = 0; j < V; j += kBlock) {
    const int64_t n = std::min(kBlock, V - j);
    to_bf16(x + j, block, n);  // serial: n is far below to_bf16's threading grain
    std::memcpy(d + j, block, static_cast<size_t>(n) * sizeof(bf16));
  }
}

}  // namespace

void cross_entropy_terms(float* logits, const int64_t* targets, bf16* dlogits, int64_t ld,
                         int64_t rows, int64_t V, float grad_scale, double* row_loss) {
  check_targets(targets, rows, V);
  QV_CHECK(ld >= V, "cross_entropy: the bf16 gradient's row stride ", ld, " is below V = ", V);
#pragma omp parallel for schedule(dynamic, 4) if (rows * V > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    bf16* d = dlogits + r * ld;
    if (targets[r] == kIgnoreIndex) {
      std::fill_n(d, V, bf16{0});
      row_loss[r] = 0;
      continue;
    }
    float* x = logits + r * V;
    row_loss[r] = row_loss_and_grad(x, x, targets[r], V, grad_scale);
    row_to_bf16(x, d, V);  // the row is still in cache
  }
}

CrossEntropyResult cross_entropy(float* logits, const int64_t* targets, bf16* dlogits, int64_t ld,
                                 int64_t rows, int64_t V, float grad_scale) {
  PoolVector<double> row_loss(static_cast<size_t>(rows), 0.0);
  cross_entropy_terms(logits, targets, dlogits, ld, rows, V, grad_scale, row_loss.data());
  return sum_row_losses(row_loss.data(), targets, rows);
}

template CrossEntropyResult cross_entropy<float>(const float*, const int64_t*, float*, int64_t,
                                                 int64_t, float);
template CrossEntropyResult cross_entropy<double>(const double*, const int64_t*, double*, int64_t,
                                                  int64_t, double);

}  // namespace qv::kernels::cpu
