// Dispatch of kernels/cross_entropy.h to the backend of the calling thread's device.
#include "kernels/cross_entropy.h"

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

template CrossEntropyResult cross_entropy<float>(const float* logits, const int64_t* targets,
                                                 float* dlogits, int64_t rows, int64_t V,
                                                 float grad_scale);
template CrossEntropyResult cross_entropy<double>(const double* logits, const int64_t* targets,
                                                  double* dlogits, int64_t rows, int64_t V,
                                                  double grad_scale);

}  // namespace qv::kernels
