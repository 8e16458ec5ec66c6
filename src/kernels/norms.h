// RMSNorm (Qwen3 decoder, per-head q/k norm) and LayerNorm (vision tower, mergers), row-wise.
#pragma once
#include <cstdint>

namespace qv::kernels {

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

}  // namespace qv::kernels
