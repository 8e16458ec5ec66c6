// Dispatch of kernels/linear.h to the backend of the calling thread's device.
#include "kernels/linear.h"

#include "kernels/cpu/linear.h"
#include "kernels/dispatch.h"

namespace qv::kernels {

template <typename T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, int64_t M, int64_t K, int64_t N) {
  QV_DISPATCH_T(T, linear_forward, x, w, bias, y, M, K, N);
}

void linear_forward(const float* x, Weight w, const float* bias, float* y, int64_t M, int64_t K,
                    int64_t N) {
  QV_DISPATCH(linear_forward, x, w, bias, y, M, K, N);
}

template <typename T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* dbias, int64_t M,
                     int64_t K, int64_t N, bool accumulate_dx) {
  QV_DISPATCH_T(T, linear_backward, x, w, dy, dx, dw, dbias, M, K, N, accumulate_dx);
}

void linear_backward(const float* x, Weight w, const float* dy, float* dx, float* dw, float* dbias,
                     int64_t M, int64_t K, int64_t N, bool accumulate_dx) {
  QV_DISPATCH(linear_backward, x, w, dy, dx, dw, dbias, M, K, N, accumulate_dx);
}

void linear_backward(const float* x, Weight w, const bf16* dy, int64_t ldy, float* dx, float* dw,
                     int64_t M, int64_t K, int64_t N) {
  QV_DISPATCH(linear_backward, x, w, dy, ldy, dx, dw, M, K, N);
}

template void linear_forward<float>(const float* x, const float* w, const float* bias, float* y,
                                    int64_t M, int64_t K, int64_t N);
template void linear_forward<double>(const double* x, const double* w, const double* bias,
                                     double* y, int64_t M, int64_t K, int64_t N);
template void linear_backward<float>(const float* x, const float* w, const float* dy, float* dx,
                                     float* dw, float* dbias, int64_t M, int64_t K, int64_t N,
                                     bool accumulate_dx);
template void linear_backward<double>(const double* x, const double* w, const double* dy,
                                      double* dx, double* dw, double* dbias, int64_t M, int64_t K,
                                      int64_t N, bool accumulate_dx);

}  // namespace qv::kernels
