#include "kernels/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/fast_math.h"

namespace qv::kernels {

namespace {

// Sum of e[0..n) with 8 independent accumulators (vectorisable), combined in double.
template <typename T>
double lane_sum(const T* e, int64_t n) {
  T acc[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += e[j + k];
  double s = 0;
  for (int k = 0; k < 8; ++k) s += acc[k];
  for (; j < n; ++j) s += e[j];
  return s;
}

}  // namespace

template <typename T>
CrossEntropyResult cross_entropy(const T* logits, const int64_t* targets, T* dlogits, int64_t rows,
                                 int64_t V, T grad_scale) {
  for (int64_t r = 0; r < rows; ++r)
    QV_CHECK(targets[r] == kIgnoreIndex || (targets[r] >= 0 && targets[r] < V), "target ",
             targets[r], " in row ", r, " is outside [0, ", V, ") and is not ", kIgnoreIndex);
  double loss_sum = 0;
  int64_t kept = 0;
#pragma omp parallel reduction(+ : loss_sum, kept) if (rows * V > 65536)
  {
    std::vector<T> scratch(dlogits ? 0 : V);
#pragma omp for
    for (int64_t r = 0; r < rows; ++r) {
      const T* x = logits + r * V;
      const int64_t t = targets[r];
      T* e = dlogits ? dlogits + r * V : scratch.data();  // may alias x: each x[j] read once
      if (t == kIgnoreIndex) {
        if (dlogits) std::fill(e, e + V, T(0));
        continue;
      }
      T mx = x[0];
      for (int64_t j = 1; j < V; ++j) mx = std::max(mx, x[j]);
      const T xt = x[t];
      for (int64_t j = 0; j < V; ++j) e[j] = fast_exp(x[j] - mx);
      const double sum = lane_sum(e, V);
      loss_sum += static_cast<double>(mx) + std::log(sum) - static_cast<double>(xt);
      ++kept;
      if (dlogits) {
        const T k = static_cast<T>(grad_scale / sum);
        for (int64_t j = 0; j < V; ++j) e[j] *= k;
        e[t] = static_cast<T>((static_cast<double>(e[t]) / grad_scale - 1.0) * grad_scale);
      }
    }
  }
  return {loss_sum, kept};
}

template CrossEntropyResult cross_entropy<float>(const float*, const int64_t*, float*, int64_t,
                                                 int64_t, float);
template CrossEntropyResult cross_entropy<double>(const double*, const int64_t*, double*, int64_t,
                                                  int64_t, double);

}  // namespace qv::kernels
