#include "kernels/cpu/rope.h"

namespace qv::kernels {

template <typename T>
void rope_forward(const T* x, const T* cos, const T* sin, T* y, int64_t rows, int64_t heads,
                  int64_t hd) {
  const int64_t half = hd / 2;
#pragma omp parallel for if (rows * heads * hd > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T* c = cos + r * hd;
    const T* s = sin + r * hd;
    for (int64_t h = 0; h < heads; ++h) {
      const T* xi = x + (r * heads + h) * hd;
      T* yi = y + (r * heads + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        const T a = xi[i], b = xi[i + half];
        yi[i] = a * c[i] + (-b) * s[i];
        yi[i + half] = b * c[i + half] + a * s[i + half];
      }
    }
  }
}

template <typename T>
void rope_backward(const T* dy, const T* cos, const T* sin, T* dx, int64_t rows, int64_t heads,
                   int64_t hd) {
  const int64_t half = hd / 2;
#pragma omp parallel for if (rows * heads * hd > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    const T* c = cos + r * hd;
    const T* s = sin + r * hd;
    for (int64_t h = 0; h < heads; ++h) {
      const T* g = dy + (r * heads + h) * hd;
      T* d = dx + (r * heads + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        const T ga = g[i], gb = g[i + half];
        d[i] = ga * c[i] + gb * s[i + half];
        d[i + half] = gb * c[i + half] - ga * s[i];
      }
    }
  }
}

template void rope_forward<float>(const float*, const float*, const float*, float*, int64_t,
                                  int64_t, int64_t);
template void rope_forward<double>(const double*, const double*, const double*, double*, int64_t,
                                   int64_t, int64_t);
template void rope_backward<float>(const float*, const float*, const float*, float*, int64_t,
                                   int64_t, int64_t);
template void rope_backward<double>(const double*, const double*, const double*, double*, int64_t,
                                    int64_t, int64_t);

}  // namespace qv::kernels
