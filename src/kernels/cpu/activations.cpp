// Elementwise activations (SwiGLU, GELU tanh / erf) and their derivatives, as torch computes them.
#include "kernels/cpu/activations.h"

#include <cmath>

namespace qv::kernels::cpu {
namespace {

// Elementwise loops are memory-bound; threads only pay off on large arrays.
constexpr int64_t kParallelMin = 1 << 15;

template <typename T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;  // sqrt(2/pi)
constexpr double kGeluCoeff = 0.044715;
constexpr double kInvSqrt2 = 0.70710678118654752440084436210485;
constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;  // 1/sqrt(2*pi)

}  // namespace

template <typename T>
void swiglu_forward(const T* gate, const T* up, T* out, int64_t n) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i];
    out[i] = g / (T(1) + std::exp(-g)) * up[i];  // torch's silu: x / (1 + exp(-x))
  }
}

template <typename T>
void swiglu_backward(const T* gate, const T* up, const T* dout, T* dgate, T* dup, int64_t n) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i], u = up[i], d = dout[i];
    const T s = sigmoid(g);
    // d silu(g)/dg = s * (1 + g * (1 - s)).
    dgate[i] = d * u * (s * (T(1) + g * (T(1) - s)));
    dup[i] = d * (g * s);
  }
}

template <typename T>
void gelu_tanh_forward(const T* x, T* y, int64_t n) {
  const T beta = static_cast<T>(kSqrt2OverPi), kappa = static_cast<T>(kGeluCoeff);
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T inner = beta * (v + kappa * (v * v * v));
    y[i] = T(0.5) * v * (T(1) + std::tanh(inner));
  }
}

template <typename T>
void gelu_tanh_backward(const T* x, const T* dy, T* dx, int64_t n) {
  const T beta = static_cast<T>(kSqrt2OverPi), kappa = static_cast<T>(kGeluCoeff);
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T v2 = v * v;
    const T t = std::tanh(beta * (v + kappa * (v2 * v)));
    // d/dv [0.5 v (1 + t)] = 0.5 (1 + t) + 0.5 v (1 - t^2) beta (1 + 3 kappa v^2).
    const T left = T(0.5) * (T(1) + t);
    const T right = T(0.5) * v * (T(1) - t * t) * beta * (T(1) + T(3) * kappa * v2);
    dx[i] = dy[i] * (left + right);
  }
}

template <typename T>
void gelu_erf_forward(const T* x, T* y, int64_t n) {
  const T inv_sqrt2 = static_cast<T>(kInvSqrt2);
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    y[i] = T(0.5) * v * (T(1) + std::erf(v * inv_sqrt2));
  }
}

template <typename T>
void gelu_erf_backward(const T* x, const T* dy, T* dx, int64_t n) {
  const T inv_sqrt2 = static_cast<T>(kInvSqrt2), inv_sqrt2pi = static_cast<T>(kInvSqrt2Pi);
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T cdf = T(0.5) * (T(1) + std::erf(v * inv_sqrt2));
    const T pdf = inv_sqrt2pi * std::exp(T(-0.5) * v * v);
    dx[i] = dy[i] * (cdf + v * pdf);
  }
}

template <typename T>
void add_inplace(T* a, const T* b, int64_t n) {
#pragma omp parallel for simd if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) a[i] += b[i];
}

#define QV_INSTANTIATE(T)                                                          \
  template void swiglu_forward<T>(const T*, const T*, T*, int64_t);                \
  template void swiglu_backward<T>(const T*, const T*, const T*, T*, T*, int64_t); \
  template void gelu_tanh_forward<T>(const T*, T*, int64_t);                       \
  template void gelu_tanh_backward<T>(const T*, const T*, T*, int64_t);            \
  template void gelu_erf_forward<T>(const T*, T*, int64_t);                        \
  template void gelu_erf_backward<T>(const T*, const T*, T*, int64_t);             \
  template void add_inplace<T>(T*, const T*, int64_t);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

}  // namespace qv::kernels::cpu
