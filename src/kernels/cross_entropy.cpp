// Dispatch of kernels/cross_entropy.h to the backend of the calling thread's device, and the
// host code every backend shares (the row-order loss sum, the bad-target error).
#include "kernels/cross_entropy.h"

#include "core/error.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/dispatch.h"

namespace qv::kernels {

template <typename T>
CrossEntropyResult cross_entropy(const T* logits, const int64_t* targets, T* dlogits, int64_t rows,
                                 int64_t V, T grad_scale) {
  QV_DISPATCH_T(T, cross_entropy, logits, targets, dlogits, rows, V, grad_scale);
}

CrossEntropyResult cross_entropy(float* logits, const int64_t* targets, bf16* dlogits, int64_t ld,
                                 int64_t rows, int64_t V, float grad_scale) {
  QV_DISPATCH(cross_entropy, logits, targets, dlogits, ld, rows, V, grad_scale);
}

void cross_entropy_terms(const float* logits, const int64_t* targets, float* dlogits, int64_t rows,
                         int64_t V, float grad_scale, double* row_loss) {
  QV_DISPATCH(cross_entropy_terms, logits, targets, dlogits, rows, V, grad_scale, row_loss);
}

void cross_entropy_terms(float* logits, const int64_t* targets, bf16* dlogits, int64_t ld,
                         int64_t rows, int64_t V, float grad_scale, double* row_loss) {
  QV_DISPATCH(cross_entropy_terms, logits, targets, dlogits, ld, rows, V, grad_scale, row_loss);
}

template <typename L>
CrossEntropyResult sum_row_losses(const L* row_loss, const int64_t* targets, int64_t rows) {
  CrossEntropyResult result;
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == kIgnoreIndex) continue;
    result.loss_sum += row_loss[r];
    ++result.kept;
  }
  return result;
}

void fail_bad_target(int64_t target, int64_t row, int64_t V) {
  fail("cross_entropy: target ", target, " in row ", row, " is outside [0, ", V,
       ") and is not the ignore index ", kIgnoreIndex);
}

template CrossEntropyResult sum_row_losses<float>(const float*, const int64_t*, int64_t);
template CrossEntropyResult sum_row_losses<double>(const double*, const int64_t*, int64_t);
template CrossEntropyResult cross_entropy<float>(const float* logits, const int64_t* targets,
                                                 float* dlogits, int64_t rows, int64_t V,
                                                 float grad_scale);
template CrossEntropyResult cross_entropy<double>(const double* logits, const int64_t* targets,
                                                  double* dlogits, int64_t rows, int64_t V,
                                                  double grad_scale);

}  // namespace qv::kernels
