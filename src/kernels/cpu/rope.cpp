// Rotary position embedding, rotate_half form (element i pairs with i + hd/2).
#include "kernels/cpu/rope.h"

#include "core/error.h"

namespace qv::kernels::cpu {

// With h = hd/2, a = x[i], b = x[i+h]:  y[i] = a cos[i] - b sin[i],  y[i+h] = b cos[i+h] + a
// sin[i+h].
template <typename T>
void rope_forward(const T* x, const T* cos, const T* sin, T* y, int64_t rows, int64_t heads,
                  int64_t hd) {
  QV_CHECK(hd % 2 == 0, "rope: head_dim must be even, got ", hd);
  const int64_t half = hd / 2;
#pragma omp parallel for if (rows * heads * hd > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const T* c = cos + r * hd;
    const T* s = sin + r * hd;
    for (int64_t h = 0; h < heads; ++h) {
      const T* xv = x + (r * heads + h) * hd;
      T* yv = y + (r * heads + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        const T a = xv[i], b = xv[i + half];  // read both before writing: y may alias x
        yv[i] = a * c[i] - b * s[i];
        yv[i + half] = b * c[i + half] + a * s[i + half];
      }
    }
  }
}

// The transpose of the rotation above:  dx[i] = dy[i] cos[i] + dy[i+h] sin[i+h],
// dx[i+h] = dy[i+h] cos[i+h] - dy[i] sin[i].
template <typename T>
void rope_backward(const T* dy, const T* cos, const T* sin, T* dx, int64_t rows, int64_t heads,
                   int64_t hd) {
  QV_CHECK(hd % 2 == 0, "rope: head_dim must be even, got ", hd);
  const int64_t half = hd / 2;
#pragma omp parallel for if (rows * heads * hd > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) {
    const T* c = cos + r * hd;
    const T* s = sin + r * hd;
    for (int64_t h = 0; h < heads; ++h) {
      const T* g = dy + (r * heads + h) * hd;
      T* d = dx + (r * heads + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        const T a = g[i], b = g[i + half];
        d[i] = a * c[i] + b * s[i + half];
        d[i + half] = b * c[i + half] - a * s[i];
      }
    }
  }
}

#define QV_INSTANTIATE(T)                                                                     \
  template void rope_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t); \
  template void rope_backward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

}  // namespace qv::kernels::cpu
