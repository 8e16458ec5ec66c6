#include "model/loss_terms.h"

#include <algorithm>

#include "kernels/cross_entropy.h"
#include "kernels/host_staging.h"

namespace qv::model {

double* LossTerms::add_batch(std::span<const int64_t> targets, int64_t chunk) {
  Batch& b = batches_.emplace_back();
  b.terms.resize(targets.size());
  b.targets.assign(targets.begin(), targets.end());
  b.chunk = std::max<int64_t>(1, chunk);
  return b.terms.data();
}

double LossTerms::sum() const {
  double total = 0;
  std::vector<double> staging;
  for (const Batch& b : batches_) {
    const auto rows = static_cast<int64_t>(b.targets.size());
    const double* terms =
        kernels::host_readable(b.terms.data(), b.terms.device(), b.terms.size(), staging);
    double batch_sum = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += b.chunk)
      batch_sum +=
          kernels::sum_row_losses(terms + r0, b.targets.data() + r0, std::min(b.chunk, rows - r0))
              .loss_sum;
    total += batch_sum;
  }
  return total;
}

}  // namespace qv::model
