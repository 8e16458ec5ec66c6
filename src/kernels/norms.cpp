// Dispatch of kernels/norms.h to the backend of the calling thread's device.
#include "kernels/norms.h"

#include "kernels/cpu/norms.h"
#include "kernels/dispatch.h"

namespace qv::kernels {

template <typename T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t rows, int64_t D, T eps) {
  QV_DISPATCH_T(T, rmsnorm_forward, x, w, y, rstd, rows, D, eps);
}

template <typename T>
void rmsnorm_backward(const T* x, const T* w, const T* rstd, const T* dy, T* dx, T* dw,
                      int64_t rows, int64_t D) {
  QV_DISPATCH_T(T, rmsnorm_backward, x, w, rstd, dy, dx, dw, rows, D);
}

template <typename T>
void layernorm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows,
                       int64_t D, T eps) {
  QV_DISPATCH_T(T, layernorm_forward, x, w, b, y, mean, rstd, rows, D, eps);
}

template <typename T>
void layernorm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx,
                        T* dw, T* db, int64_t rows, int64_t D) {
  QV_DISPATCH_T(T, layernorm_backward, x, w, mean, rstd, dy, dx, dw, db, rows, D);
}

template void rmsnorm_forward<float>(const float* x, const float* w, float* y, float* rstd,
                                     int64_t rows, int64_t D, float eps);
template void rmsnorm_forward<double>(const double* x, const double* w, double* y, double* rstd,
                                      int64_t rows, int64_t D, double eps);
template void rmsnorm_backward<float>(const float* x, const float* w, const float* rstd,
                                      const float* dy, float* dx, float* dw, int64_t rows,
                                      int64_t D);
template void rmsnorm_backward<double>(const double* x, const double* w, const double* rstd,
                                       const double* dy, double* dx, double* dw, int64_t rows,
                                       int64_t D);
template void layernorm_forward<float>(const float* x, const float* w, const float* b, float* y,
                                       float* mean, float* rstd, int64_t rows, int64_t D,
                                       float eps);
template void layernorm_forward<double>(const double* x, const double* w, const double* b,
                                        double* y, double* mean, double* rstd, int64_t rows,
                                        int64_t D, double eps);
template void layernorm_backward<float>(const float* x, const float* w, const float* mean,
                                        const float* rstd, const float* dy, float* dx, float* dw,
                                        float* db, int64_t rows, int64_t D);
template void layernorm_backward<double>(const double* x, const double* w, const double* mean,
                                         const double* rstd, const double* dy, double* dx,
                                         double* dw, double* db, int64_t rows, int64_t D);

}  // namespace qv::kernels
