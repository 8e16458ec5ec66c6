// RMSNorm and LayerNorm, forward and backward, one row of D values at a time.
//
// Row statistics are summed in double and rounded to T once, which is at least as accurate as
// torch's float reductions. Weight gradients are reduced over rows by threads that each own a
// block of columns, so results do not depend on the thread count and need no atomics.
#include "kernels/cpu/norms.h"

#include <algorithm>
#include <cmath>

namespace qv::kernels {
namespace {

constexpr int64_t kColumnBlock = 64;

// Runs fn(j0, j1) over blocks of columns [0, D) in parallel.
template <typename Fn>
void for_column_blocks(int64_t D, int64_t work, Fn fn) {
  const int64_t blocks = (D + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for if (work > (1 << 15))
  for (int64_t b = 0; b < blocks; ++b) fn(b * kColumnBlock, std::min(D, (b + 1) * kColumnBlock));
}

}  // namespace

template <typename T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t rows, int64_t D, T eps) {
#pragma omp parallel for if (rows * D > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    double ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < D; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    // As Qwen3RMSNorm: variance in T, rsqrt(variance + eps), then weight * (x * rstd).
    const T var = static_cast<T>(ss / static_cast<double>(D));
    const T rs = T(1) / std::sqrt(var + eps);
    rstd[r] = rs;
    for (int64_t j = 0; j < D; ++j) yr[j] = w[j] * (xr[j] * rs);
  }
}

template <typename T>
void rmsnorm_backward(const T* x, const T* w, const T* rstd, const T* dy, T* dx, T* dw,
                      int64_t rows, int64_t D) {
  // dw first: dx may then overwrite nothing dw still needs.
  if (dw) {
    for_column_blocks(D, rows * D, [&](int64_t j0, int64_t j1) {
      double acc[kColumnBlock] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const T* xr = x + r * D;
        const T* dyr = dy + r * D;
        const double rs = rstd[r];
        for (int64_t j = j0; j < j1; ++j) acc[j - j0] += static_cast<double>(dyr[j]) * xr[j] * rs;
      }
      for (int64_t j = j0; j < j1; ++j) dw[j] += static_cast<T>(acc[j - j0]);
    });
  }
  // y_j = w_j x_j r with r = (mean(x^2) + eps)^-1/2, so
  // dx_j = r w_j dy_j - x_j r^3 / D * sum_k w_k dy_k x_k.
#pragma omp parallel for if (rows * D > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * D;
    const T* dyr = dy + r * D;
    T* dxr = dx + r * D;
    const double rs = rstd[r];
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t j = 0; j < D; ++j) dot += static_cast<double>(w[j]) * dyr[j] * xr[j];
    const T a = static_cast<T>(rs);
    const T c = static_cast<T>(dot * rs * rs * rs / static_cast<double>(D));
    for (int64_t j = 0; j < D; ++j) dxr[j] = a * w[j] * dyr[j] - c * xr[j];
  }
}

template <typename T>
void layernorm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows,
                       int64_t D, T eps) {
#pragma omp parallel for if (rows * D > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < D; ++j) sum += xr[j];
    const double mu = sum / static_cast<double>(D);
    double sq = 0;  // two-pass variance: no cancellation for rows with a large mean
#pragma omp simd reduction(+ : sq)
    for (int64_t j = 0; j < D; ++j) sq += (xr[j] - mu) * (xr[j] - mu);
    const double var = sq / static_cast<double>(D);  // biased, as torch
    const T m = static_cast<T>(mu);
    const T rs = static_cast<T>(1.0 / std::sqrt(var + static_cast<double>(eps)));
    mean[r] = m;
    rstd[r] = rs;
    for (int64_t j = 0; j < D; ++j) yr[j] = (xr[j] - m) * rs * w[j] + b[j];
  }
}

template <typename T>
void layernorm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx,
                        T* dw, T* db, int64_t rows, int64_t D) {
  if (dw || db) {
    for_column_blocks(D, rows * D, [&](int64_t j0, int64_t j1) {
      double acc_w[kColumnBlock] = {};
      double acc_b[kColumnBlock] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const T* xr = x + r * D;
        const T* dyr = dy + r * D;
        const double m = mean[r], rs = rstd[r];
        for (int64_t j = j0; j < j1; ++j) {
          acc_w[j - j0] += static_cast<double>(dyr[j]) * ((xr[j] - m) * rs);
          acc_b[j - j0] += dyr[j];
        }
      }
      for (int64_t j = j0; j < j1; ++j) {
        if (dw) dw[j] += static_cast<T>(acc_w[j - j0]);
        if (db) db[j] += static_cast<T>(acc_b[j - j0]);
      }
    });
  }
  // With xhat = (x - mean) * rstd and g = dy * w:
  // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
#pragma omp parallel for if (rows * D > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * D;
    const T* dyr = dy + r * D;
    T* dxr = dx + r * D;
    const double m = mean[r], rs = rstd[r];
    double sum_g = 0, sum_gx = 0;
#pragma omp simd reduction(+ : sum_g, sum_gx)
    for (int64_t j = 0; j < D; ++j) {
      const double g = static_cast<double>(dyr[j]) * w[j];
      sum_g += g;
      sum_gx += g * ((xr[j] - m) * rs);
    }
    const T mg = static_cast<T>(sum_g / static_cast<double>(D));
    const T mgx = static_cast<T>(sum_gx / static_cast<double>(D));
    const T m_t = static_cast<T>(m), rs_t = static_cast<T>(rs);
    for (int64_t j = 0; j < D; ++j) {
      const T xhat = (xr[j] - m_t) * rs_t;
      dxr[j] = rs_t * (dyr[j] * w[j] - mg - xhat * mgx);
    }
  }
}

#define QV_INSTANTIATE(T)                                                                        \
  template void rmsnorm_forward<T>(const T*, const T*, T*, T*, int64_t, int64_t, T);             \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t,     \
                                    int64_t);                                                    \
  template void layernorm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, \
                                     T);                                                         \
  template void layernorm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*,  \
                                      T*, int64_t, int64_t);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

}  // namespace qv::kernels
