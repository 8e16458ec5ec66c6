// CUDA: RMSNorm (Qwen3 decoder, per-head q/k norm) and LayerNorm (vision tower, mergers), row-wise.
// Same signatures and semantics as kernels/cpu/norms.h; every pointer is device memory of the
// current device, and ops run on its stream (kernels/cuda/runtime.h). T = float or qv::bf16
// (bf16 elements are computed in float and rounded once on store).
#pragma once
#include <cstdint>

namespace qv::kernels::cuda {

// y = w * (x * rstd), rstd = 1/sqrt(mean(x^2) + eps), per row of D values. rstd[rows] is saved.
template <typename T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t rows, int64_t D, T eps);

// dx overwritten; dw accumulated (+=) when non-null.
template <typename T>
void rmsnorm_backward(const T* x, const T* w, const T* rstd, const T* dy, T* dx, T* dw,
                      int64_t rows, int64_t D);

// y = (x - mean) * rstd * w + b, biased variance (torch semantics). mean/rstd[rows] saved.
template <typename T>
void layernorm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows,
                       int64_t D, T eps);

// dx overwritten; dw, db accumulated when non-null.
template <typename T>
void layernorm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx,
                        T* dw, T* db, int64_t rows, int64_t D);

}  // namespace qv::kernels::cuda

namespace qv::kernels::cuda {
// dbias[N] += column sums of dy[rows, N] (fixed order, no atomics); the bias gradient of linear
// layers.
template <typename T>
void bias_grad(const T* dy, T* dbias, int64_t rows, int64_t N);
}  // namespace qv::kernels::cuda
