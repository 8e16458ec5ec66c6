// Dispatch of kernels/rope.h to the backend of the calling thread's device.
#include "kernels/rope.h"

#include "kernels/cpu/rope.h"
#include "kernels/dispatch.h"

namespace qv::kernels {

template <typename T>
void rope_forward(const T* x, const T* cos, const T* sin, T* y, int64_t rows, int64_t heads,
                  int64_t hd) {
  QV_DISPATCH_T(T, rope_forward, x, cos, sin, y, rows, heads, hd);
}

template <typename T>
void rope_backward(const T* dy, const T* cos, const T* sin, T* dx, int64_t rows, int64_t heads,
                   int64_t hd) {
  QV_DISPATCH_T(T, rope_backward, dy, cos, sin, dx, rows, heads, hd);
}

template void rope_forward<float>(const float* x, const float* cos, const float* sin, float* y,
                                  int64_t rows, int64_t heads, int64_t hd);
template void rope_forward<double>(const double* x, const double* cos, const double* sin, double* y,
                                   int64_t rows, int64_t heads, int64_t hd);
template void rope_backward<float>(const float* dy, const float* cos, const float* sin, float* dx,
                                   int64_t rows, int64_t heads, int64_t hd);
template void rope_backward<double>(const double* dy, const double* cos, const double* sin,
                                    double* dx, int64_t rows, int64_t heads, int64_t hd);

}  // namespace qv::kernels
