// The vectorised exp loop of the softmax kernels, built for the baseline ISA and for AVX2 + FMA.
// Floating-point exceptions are never trapped in this project; saying so lets GCC if-convert the
// range checks of fast_exp and vectorise. Before any include, so inline callees agree.
#pragma GCC optimize("no-trapping-math")

#include "kernels/cpu/fast_exp.h"

namespace qv::kernels::cpu {
namespace {

template <typename T>
inline double exp_shifted_loop(const T* x, T* y, int64_t n, T shift) {
  double sum = 0;
  // simd: each element is read before it is written, so y == x is fine.
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    const T e = fast_exp(x[j] - shift);
    y[j] = e;
    sum += e;
  }
  return sum;
}

}  // namespace

[[gnu::target_clones("arch=x86-64-v3", "default")]] double exp_shifted(const float* x, float* y,
                                                                       int64_t n, float shift) {
  return exp_shifted_loop(x, y, n, shift);
}

[[gnu::target_clones("arch=x86-64-v3", "default")]] double exp_shifted(const double* x, double* y,
                                                                       int64_t n, double shift) {
  return exp_shifted_loop(x, y, n, shift);
}

}  // namespace qv::kernels::cpu
