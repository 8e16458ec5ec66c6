// The dense layers' bias primitives on the CPU.
#include "kernels/cpu/linear.h"

#include <algorithm>

namespace qv::kernels::cpu {

template <typename T>
void broadcast_bias(const T* bias, T* y, int64_t M, int64_t N) {
#pragma omp parallel for if (M * N > (1 << 16))
  for (int64_t i = 0; i < M; ++i) std::copy(bias, bias + N, y + i * N);
}

// Each thread owns a block of columns, so the sums need no reduction and do not depend on the
// thread count.
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

#define QV_INSTANTIATE(T)                                          \
  template void broadcast_bias<T>(const T*, T*, int64_t, int64_t); \
  template void bias_grad<T>(const T*, T*, int64_t, int64_t);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

}  // namespace qv::kernels::cpu
