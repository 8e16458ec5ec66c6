// Softmax cross-entropy per row of logits with a numerically stable log-sum-exp.
#include "kernels/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/buffer_pool.h"
#include "core/error.h"
#include "kernels/cpu/fast_exp.h"

namespace qv::kernels::cpu {

template <typename T>
CrossEntropyResult cross_entropy(const T* logits, const int64_t* targets, T* dlogits, int64_t rows,
                                 int64_t V, T grad_scale) {
  for (int64_t r = 0; r < rows; ++r)
    QV_CHECK(targets[r] == kIgnoreIndex || (targets[r] >= 0 && targets[r] < V),
             "cross_entropy: target ", targets[r], " in row ", r, " is outside [0, ", V,
             ") and is not the ignore index ", kIgnoreIndex);

  // Per-row terms are summed afterwards in row order, so the loss does not depend on threads.
  PoolVector<double> row_loss(static_cast<size_t>(rows), 0.0);
#pragma omp parallel for schedule(dynamic, 4) if (rows * V > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = logits + r * V;
    T* d = dlogits ? dlogits + r * V : nullptr;
    const int64_t t = targets[r];
    if (t == kIgnoreIndex) {
      if (d) std::fill_n(d, V, T(0));
      continue;
    }
    T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < V; ++j) mx = x[j] > mx ? x[j] : mx;
    const double target_logit = x[t];  // read now: d may alias x and is written below
    double sum = 0;
    if (d) {
      // Keep exp(x - max) in d to avoid a second exp pass; it is rescaled once the sum is known.
      sum = exp_shifted(x, d, V, mx);
    } else {
      T scratch[1024];
      for (int64_t j = 0; j < V; j += 1024)
        sum += exp_shifted(x + j, scratch, std::min<int64_t>(1024, V - j), mx);
    }
    const double lse = mx + std::log(sum);
    row_loss[r] = lse - target_logit;
    if (d) {
      const T factor = static_cast<T>(static_cast<double>(grad_scale) / sum);
      for (int64_t j = 0; j < V; ++j) d[j] *= factor;
      d[t] -= grad_scale;
    }
  }
  CrossEntropyResult result;
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == kIgnoreIndex) continue;
    result.loss_sum += row_loss[r];
    ++result.kept;
  }
  return result;
}

template CrossEntropyResult cross_entropy<float>(const float*, const int64_t*, float*, int64_t,
                                                 int64_t, float);
template CrossEntropyResult cross_entropy<double>(const double*, const int64_t*, double*, int64_t,
                                                  int64_t, double);

}  // namespace qv::kernels::cpu
