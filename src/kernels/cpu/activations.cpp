#include "kernels/cpu/activations.h"

#include <cmath>

namespace qv::kernels {

namespace {
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
constexpr int64_t kParallelMin = 1 << 15;
}  // namespace

template <typename T>
void swiglu_forward(const T* gate, const T* up, T* out, int64_t n) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i];
    out[i] = g / (T(1) + std::exp(-g)) * up[i];
  }
}

template <typename T>
void swiglu_backward(const T* gate, const T* up, const T* dout, T* dgate, T* dup, int64_t n) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T g = gate[i];
    const T sig = T(1) / (T(1) + std::exp(-g));
    const T silu = g * sig;
    const T d = dout[i];
    dup[i] = d * silu;
    dgate[i] = d * up[i] * (sig * (T(1) + g * (T(1) - sig)));
  }
}

template <typename T>
void gelu_tanh_forward(const T* x, T* y, int64_t n) {
  const T k = static_cast<T>(kSqrt2OverPi), c = static_cast<T>(0.044715);
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    y[i] = T(0.5) * v * (T(1) + std::tanh(k * (v + c * v * v * v)));
  }
}

template <typename T>
void gelu_tanh_backward(const T* x, const T* dy, T* dx, int64_t n) {
  const T k = static_cast<T>(kSqrt2OverPi), c = static_cast<T>(0.044715);
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T t = std::tanh(k * (v + c * v * v * v));
    const T dinner = k * (T(1) + T(3) * c * v * v);
    dx[i] = dy[i] * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * dinner);
  }
}

template <typename T>
void gelu_erf_forward(const T* x, T* y, int64_t n) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    y[i] = v * T(0.5) * (T(1) + std::erf(v * static_cast<T>(kInvSqrt2)));
  }
}

template <typename T>
void gelu_erf_backward(const T* x, const T* dy, T* dx, int64_t n) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T v = x[i];
    const T cdf = T(0.5) * (T(1) + std::erf(v * static_cast<T>(kInvSqrt2)));
    const T pdf = static_cast<T>(kInvSqrt2Pi) * std::exp(T(-0.5) * v * v);
    dx[i] = dy[i] * (cdf + v * pdf);
  }
}

template <typename T>
void add_inplace(T* a, const T* b, int64_t n) {
#pragma omp parallel for if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) a[i] += b[i];
}

#define QV_INSTANTIATE(T)                                                             \
  template void swiglu_forward<T>(const T*, const T*, T*, int64_t);                   \
  template void swiglu_backward<T>(const T*, const T*, const T*, T*, T*, int64_t);    \
  template void gelu_tanh_forward<T>(const T*, T*, int64_t);                          \
  template void gelu_tanh_backward<T>(const T*, const T*, T*, int64_t);               \
  template void gelu_erf_forward<T>(const T*, T*, int64_t);                           \
  template void gelu_erf_backward<T>(const T*, const T*, T*, int64_t);                \
  template void add_inplace<T>(T*, const T*, int64_t);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

}  // namespace qv::kernels
