// Dense layers as thin wrappers over the GEMM engine.
#include "kernels/cpu/linear.h"

#include <algorithm>

#include "core/buffer_pool.h"
#include "core/error.h"
#include "kernels/cpu/gemm.h"

namespace qv::kernels::cpu {
namespace {

template <typename T>
void fill_bias(const T* bias, T* y, int64_t M, int64_t N) {
#pragma omp parallel for if (M * N > (1 << 16))
  for (int64_t i = 0; i < M; ++i) std::copy(bias, bias + N, y + i * N);
}

// dbias[N] += column sums of dy[M,N]. Each thread owns a block of columns, so the sums need no
// reduction and do not depend on the thread count.
template <typename T>
void bias_grad(const T* dy, T* dbias, int64_t M, int64_t N) {
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (N + kBlock - 1) / kBlock;
#pragma omp parallel for if (M * N > (1 << 16))
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t j0 = b * kBlock, j1 = std::min(N, j0 + kBlock);
    double acc[kBlock] = {};
    for (int64_t i = 0; i < M; ++i) {
      const T* row = dy + i * N;
      for (int64_t j = j0; j < j1; ++j) acc[j - j0] += row[j];
    }
    for (int64_t j = j0; j < j1; ++j) dbias[j] += static_cast<T>(acc[j - j0]);
  }
}

PoolVector<bf16> rounded(const float* x, int64_t n) {
  PoolVector<bf16> out(n);
  to_bf16(x, out.data(), n);
  return out;
}

// The two bf16 backward products from a bf16 dy: dx = dy . w, dw += dy^T . round(x).
void products_from_bf16_dy(const float* x, Weight w, const bf16* dy, int64_t ldy, float* dx,
                           float* dw, int64_t M, int64_t K, int64_t N, bool accumulate_dx) {
  if (dx)
    gemm_bf16(false, false, M, K, N, 1.0f, dy, ldy, w.b16, K, accumulate_dx ? 1.0f : 0.0f, dx, K);
  if (dw) {
    const PoolVector<bf16> xb = rounded(x, M * K);
    gemm_bf16(true, false, N, K, M, 1.0f, dy, ldy, xb.data(), K, 1.0f, dw, K);
  }
}

}  // namespace

template <typename T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, int64_t M, int64_t K, int64_t N) {
  if (bias) fill_bias(bias, y, M, N);
  gemm<T>(false, true, M, N, K, T(1), x, K, w, K, bias ? T(1) : T(0), y, N);
}

void linear_forward(const float* x, Weight w, const float* bias, float* y, int64_t M, int64_t K,
                    int64_t N) {
  if (!w.b16) return linear_forward<float>(x, w.f32, bias, y, M, K, N);
  if (bias) fill_bias(bias, y, M, N);
  const PoolVector<bf16> xb = rounded(x, M * K);
  gemm_bf16(false, true, M, N, K, 1.0f, xb.data(), K, w.b16, K, bias ? 1.0f : 0.0f, y, N);
}

template <typename T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* dbias, int64_t M,
                     int64_t K, int64_t N, bool accumulate_dx) {
  if (dx) gemm<T>(false, false, M, K, N, T(1), dy, N, w, K, accumulate_dx ? T(1) : T(0), dx, K);
  if (dw) gemm<T>(true, false, N, K, M, T(1), dy, N, x, K, T(1), dw, K);
  if (dbias) bias_grad(dy, dbias, M, N);
}

void linear_backward(const float* x, Weight w, const float* dy, float* dx, float* dw, float* dbias,
                     int64_t M, int64_t K, int64_t N, bool accumulate_dx) {
  if (!w.b16) return linear_backward<float>(x, w.f32, dy, dx, dw, dbias, M, K, N, accumulate_dx);
  if (dx || dw) {
    const PoolVector<bf16> dyb = rounded(dy, M * N);
    products_from_bf16_dy(x, w, dyb.data(), N, dx, dw, M, K, N, accumulate_dx);
  }
  if (dbias) bias_grad(dy, dbias, M, N);
}

void linear_backward(const float* x, Weight w, const bf16* dy, int64_t ldy, float* dx, float* dw,
                     int64_t M, int64_t K, int64_t N) {
  QV_CHECK(w.b16 != nullptr, "linear_backward with a bf16 dy needs the weight's bf16 copy");
  QV_CHECK(ldy >= N, "linear_backward: dy's row stride ", ldy, " is below N = ", N);
  products_from_bf16_dy(x, w, dy, ldy, dx, dw, M, K, N, false);
}

#define QV_INSTANTIATE(T)                                                                       \
  template void linear_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t); \
  template void linear_backward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t,  \
                                   int64_t, bool);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

}  // namespace qv::kernels::cpu
