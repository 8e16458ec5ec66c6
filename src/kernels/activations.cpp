// Dispatch of kernels/activations.h to the backend of the calling thread's device.
#include "kernels/activations.h"

#include "kernels/cpu/activations.h"
#include "kernels/dispatch.h"

namespace qv::kernels {

template <typename T>
void swiglu_forward(const T* gate, const T* up, T* out, int64_t n) {
  QV_DISPATCH_T(T, swiglu_forward, gate, up, out, n);
}

template <typename T>
void swiglu_backward(const T* gate, const T* up, const T* dout, T* dgate, T* dup, int64_t n) {
  QV_DISPATCH_T(T, swiglu_backward, gate, up, dout, dgate, dup, n);
}

template <typename T>
void gelu_tanh_forward(const T* x, T* y, int64_t n) {
  QV_DISPATCH_T(T, gelu_tanh_forward, x, y, n);
}

template <typename T>
void gelu_tanh_backward(const T* x, const T* dy, T* dx, int64_t n) {
  QV_DISPATCH_T(T, gelu_tanh_backward, x, dy, dx, n);
}

template <typename T>
void gelu_erf_forward(const T* x, T* y, int64_t n) {
  QV_DISPATCH_T(T, gelu_erf_forward, x, y, n);
}

template <typename T>
void gelu_erf_backward(const T* x, const T* dy, T* dx, int64_t n) {
  QV_DISPATCH_T(T, gelu_erf_backward, x, dy, dx, n);
}

template <typename T>
void add_inplace(T* a, const T* b, int64_t n) {
  QV_DISPATCH_T(T, add_inplace, a, b, n);
}

template void swiglu_forward<float>(const float* gate, const float* up, float* out, int64_t n);
template void swiglu_forward<double>(const double* gate, const double* up, double* out, int64_t n);
template void swiglu_backward<float>(const float* gate, const float* up, const float* dout,
                                     float* dgate, float* dup, int64_t n);
template void swiglu_backward<double>(const double* gate, const double* up, const double* dout,
                                      double* dgate, double* dup, int64_t n);
template void gelu_tanh_forward<float>(const float* x, float* y, int64_t n);
template void gelu_tanh_forward<double>(const double* x, double* y, int64_t n);
template void gelu_tanh_backward<float>(const float* x, const float* dy, float* dx, int64_t n);
template void gelu_tanh_backward<double>(const double* x, const double* dy, double* dx, int64_t n);
template void gelu_erf_forward<float>(const float* x, float* y, int64_t n);
template void gelu_erf_forward<double>(const double* x, double* y, int64_t n);
template void gelu_erf_backward<float>(const float* x, const float* dy, float* dx, int64_t n);
template void gelu_erf_backward<double>(const double* x, const double* dy, double* dx, int64_t n);
template void add_inplace<float>(float* a, const float* b, int64_t n);
template void add_inplace<double>(double* a, const double* b, int64_t n);

}  // namespace qv::kernels
