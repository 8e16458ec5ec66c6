#include "kernels/cpu/norms.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/parallel.h"

namespace qv::kernels {

// Reductions run in double for float inputs too: the per-row sums are short and this keeps the
// result independent of vector width.

template <typename T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t rows, int64_t D, T eps) {
#pragma omp parallel for if (rows * D > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * D;
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const T var = static_cast<T>(ss / D);
    const T rs = T(1) / std::sqrt(var + eps);
    rstd[r] = rs;
    T* yr = y + r * D;
    for (int64_t i = 0; i < D; ++i) yr[i] = w[i] * (xr[i] * rs);
  }
}

template <typename T>
void rmsnorm_backward(const T* x, const T* w, const T* rstd, const T* dy, T* dx, T* dw,
                      int64_t rows, int64_t D) {
  // y_i = w_i * x_i * r, r = (mean(x^2) + eps)^-1/2; dr/dx_j = -r^3 x_j / D.
#pragma omp parallel for if (rows * D > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * D;
    const T* g = dy + r * D;
    const double rs = rstd[r];
    double dot = 0;  // sum_i g_i w_i x_i
    for (int64_t i = 0; i < D; ++i) dot += static_cast<double>(g[i]) * w[i] * xr[i];
    const double c = dot * rs * rs * rs / D;
    T* dxr = dx + r * D;
    for (int64_t i = 0; i < D; ++i)
      dxr[i] = static_cast<T>(static_cast<double>(g[i]) * w[i] * rs - c * xr[i]);
  }
  if (dw) accumulate_columns(dw, rows, D, [&](int64_t r, int64_t i) {
      return static_cast<double>(dy[r * D + i]) * x[r * D + i] * rstd[r];
    });
}

template <typename T>
void layernorm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows,
                       int64_t D, T eps) {
#pragma omp parallel for if (rows * D > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * D;
    double s = 0;
    for (int64_t i = 0; i < D; ++i) s += xr[i];
    const double mu = s / D;
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += (xr[i] - mu) * (xr[i] - mu);
    const T m = static_cast<T>(mu);
    const T rs = static_cast<T>(1.0 / std::sqrt(ss / D + static_cast<double>(eps)));
    mean[r] = m;
    rstd[r] = rs;
    T* yr = y + r * D;
    for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - m) * rs * w[i] + b[i];
  }
}

template <typename T>
void layernorm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx,
                        T* dw, T* db, int64_t rows, int64_t D) {
#pragma omp parallel for if (rows * D > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * D;
    const T* g = dy + r * D;
    const double m = mean[r], rs = rstd[r];
    double sum_gw = 0, sum_gw_xhat = 0;
    for (int64_t i = 0; i < D; ++i) {
      const double gw = static_cast<double>(g[i]) * w[i];
      sum_gw += gw;
      sum_gw_xhat += gw * (xr[i] - m) * rs;
    }
    T* dxr = dx + r * D;
    for (int64_t i = 0; i < D; ++i) {
      const double xhat = (xr[i] - m) * rs;
      const double gw = static_cast<double>(g[i]) * w[i];
      dxr[i] = static_cast<T>(rs * (gw - sum_gw / D - xhat * sum_gw_xhat / D));
    }
  }
  if (dw) accumulate_columns(dw, rows, D, [&](int64_t r, int64_t i) {
      return static_cast<double>(dy[r * D + i]) * (x[r * D + i] - mean[r]) * rstd[r];
    });
  if (db) accumulate_columns(db, rows, D, [&](int64_t r, int64_t i) {
      return static_cast<double>(dy[r * D + i]);
    });
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
