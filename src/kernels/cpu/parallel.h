// Small parallel helpers shared by the CPU kernels (private to kernels/cpu).
#pragma once
#include <omp.h>

#include <cstdint>
#include <vector>

namespace qv::kernels {

// out[i] += sum_r term(r, i) for i < D, summing rows in parallel blocks (per-thread partials in
// double, combined in thread order so the result does not depend on scheduling).
template <typename T, typename Term>
void accumulate_columns(T* out, int64_t rows, int64_t D, Term term) {
  const int threads = rows * D > 32768 ? omp_get_max_threads() : 1;
  std::vector<double> partial(static_cast<size_t>(threads) * D, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const int n = omp_get_num_threads();
    const int64_t begin = rows * t / n, end = rows * (t + 1) / n;
    double* p = partial.data() + static_cast<size_t>(t) * D;
    for (int64_t r = begin; r < end; ++r)
      for (int64_t i = 0; i < D; ++i) p[i] += term(r, i);
  }
  for (int t = 0; t < threads; ++t)
    for (int64_t i = 0; i < D; ++i) out[i] += static_cast<T>(partial[static_cast<size_t>(t) * D + i]);
}

}  // namespace qv::kernels
