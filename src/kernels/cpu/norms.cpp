// RMSNorm and LayerNorm, forward and backward, one row of D values at a time.
//
// Row statistics are summed in double and rounded to T once, which is at least as accurate as
// torch's float reductions. The backward computes dx and the weight-gradient terms in one pass
// over the rows; weight gradients are summed per fixed chunk of rows and the chunks are added in
// order, so results do not depend on the thread count and need no atomics.
#include "kernels/cpu/norms.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/buffer_pool.h"

namespace qv::kernels::cpu {
namespace {

constexpr int64_t kRowChunk = 128;

// Partial column sums, one row of D doubles per chunk of kRowChunk rows (or none when unused).
struct ChunkSums {
  int64_t D;
  PoolVector<double> sums;
  ChunkSums(bool used, int64_t rows, int64_t D_)
      : D(D_), sums(used ? static_cast<size_t>((rows + kRowChunk - 1) / kRowChunk * D_) : 0) {}
  double* chunk(int64_t c) { return sums.empty() ? nullptr : sums.data() + c * D; }
  // out[j] += sum over chunks in chunk order.
  template <typename T>
  void add_to(T* out) const {
    if (!out) return;
    const int64_t chunks = static_cast<int64_t>(sums.size()) / std::max<int64_t>(D, 1);
#pragma omp parallel for if (chunks * D > (1 << 16))
    for (int64_t j = 0; j < D; ++j) {
      double acc = 0;
      for (int64_t c = 0; c < chunks; ++c) acc += sums[c * D + j];
      out[j] += static_cast<T>(acc);
    }
  }
};

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
  // y_j = w_j x_j r with r = (mean(x^2) + eps)^-1/2, so
  // dx_j = r w_j dy_j - x_j r^3 / D * sum_k w_k dy_k x_k, and dw_j = sum over rows of dy_j x_j r.
  ChunkSums dw_sums(dw != nullptr, rows, D);
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
#pragma omp parallel for if (rows * D > (1 << 15))
  for (int64_t c = 0; c < chunks; ++c) {
    double* pw = dw_sums.chunk(c);
    for (int64_t r = c * kRowChunk; r < std::min(rows, (c + 1) * kRowChunk); ++r) {
      const T* xr = x + r * D;
      const T* dyr = dy + r * D;
      T* dxr = dx + r * D;
      const double rs = rstd[r];
      double dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < D; ++j) dot += static_cast<double>(w[j]) * dyr[j] * xr[j];
      if (pw)
        for (int64_t j = 0; j < D; ++j) pw[j] += static_cast<double>(dyr[j]) * xr[j] * rs;
      const T a = static_cast<T>(rs);
      const T b = static_cast<T>(dot * rs * rs * rs / static_cast<double>(D));
      for (int64_t j = 0; j < D; ++j) dxr[j] = a * w[j] * dyr[j] - b * xr[j];
    }
  }
  dw_sums.add_to(dw);
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
  // With xhat = (x - mean) * rstd and g = dy * w:
  // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), dw = sum of dy * xhat, db = sum of dy.
  ChunkSums dw_sums(dw != nullptr, rows, D), db_sums(db != nullptr, rows, D);
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
#pragma omp parallel for if (rows * D > (1 << 15))
  for (int64_t c = 0; c < chunks; ++c) {
    double* pw = dw_sums.chunk(c);
    double* pb = db_sums.chunk(c);
    for (int64_t r = c * kRowChunk; r < std::min(rows, (c + 1) * kRowChunk); ++r) {
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
      if (pw)
        for (int64_t j = 0; j < D; ++j) pw[j] += static_cast<double>(dyr[j]) * ((xr[j] - m) * rs);
      if (pb)
        for (int64_t j = 0; j < D; ++j) pb[j] += dyr[j];
      const T mg = static_cast<T>(sum_g / static_cast<double>(D));
      const T mgx = static_cast<T>(sum_gx / static_cast<double>(D));
      const T m_t = static_cast<T>(m), rs_t = static_cast<T>(rs);
      for (int64_t j = 0; j < D; ++j) {
        const T xhat = (xr[j] - m_t) * rs_t;
        dxr[j] = rs_t * (dyr[j] * w[j] - mg - xhat * mgx);
      }
    }
  }
  dw_sums.add_to(dw);
  db_sums.add_to(db);
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

}  // namespace qv::kernels::cpu
