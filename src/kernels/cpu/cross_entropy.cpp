#include "kernels/cpu/cross_entropy.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace qv::kernels {

template <typename T>
CrossEntropyResult cross_entropy(const T* logits, const int64_t* targets, T* dlogits, int64_t rows,
                                 int64_t V, T grad_scale) {
  for (int64_t r = 0; r < rows; ++r)
    QV_CHECK(targets[r] == kIgnoreIndex || (targets[r] >= 0 && targets[r] < V), "target ",
             targets[r], " in row ", r, " is outside [0, ", V, ") and is not ", kIgnoreIndex);
  double loss_sum = 0;
  int64_t kept = 0;
#pragma omp parallel for reduction(+ : loss_sum, kept) if (rows * V > 65536)
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = logits + r * V;
    const int64_t t = targets[r];
    if (t == kIgnoreIndex) {
      if (dlogits)
        for (int64_t j = 0; j < V; ++j) dlogits[r * V + j] = T(0);
      continue;
    }
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < V; ++j) mx = x[j] > mx ? x[j] : mx;
    double sum = 0;
    for (int64_t j = 0; j < V; ++j) sum += std::exp(static_cast<double>(x[j] - mx));
    const double lse = static_cast<double>(mx) + std::log(sum);
    loss_sum += lse - static_cast<double>(x[t]);
    ++kept;
    if (dlogits) {
      T* d = dlogits + r * V;  // may alias x: read x[j] before writing d[j]
      for (int64_t j = 0; j < V; ++j) {
        const double p = std::exp(static_cast<double>(x[j]) - lse) - (j == t ? 1.0 : 0.0);
        d[j] = static_cast<T>(p * grad_scale);
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
