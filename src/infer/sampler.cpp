#include "infer/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"

namespace qv::infer {

void apply_repetition_penalty(std::vector<float>& logits, const std::vector<int32_t>& context,
                              double penalty) {
  if (penalty == 1.0) return;
  QV_CHECK(penalty > 0, "repetition penalty must be positive, got ", penalty);
  std::vector<uint8_t> seen(logits.size(), 0);
  const auto p = static_cast<float>(penalty);
  for (int32_t id : context) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size() || seen[id]) continue;
    seen[id] = 1;
    logits[id] = logits[id] < 0 ? logits[id] * p : logits[id] / p;
  }
}

int64_t Sampler::next(std::vector<float> logits, const std::vector<int32_t>& context) {
  apply_repetition_penalty(logits, context, c_.repetition_penalty);
  return next(logits);
}

int64_t Sampler::next(const std::vector<float>& logits) {
  QV_CHECK(!logits.empty(), "sampler: empty logits");
  if (calls_++ >= c_.min_new_tokens || c_.end_ids.empty()) return choose(logits);
  std::vector<float> masked = logits;
  for (int64_t id : c_.end_ids)
    if (id >= 0 && id < static_cast<int64_t>(masked.size()))
      masked[id] = -std::numeric_limits<float>::infinity();
  return choose(masked);
}

int64_t Sampler::choose(const std::vector<float>& logits) {
  if (c_.temperature <= 0) {
    return std::max_element(logits.begin(), logits.end()) - logits.begin();
  }
  std::vector<int64_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  const int64_t k = c_.top_k > 0 ? std::min<int64_t>(c_.top_k, logits.size()) : logits.size();
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  order.resize(k);
  std::vector<double> p(k);
  const double mx = logits[order[0]];
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += p[i] = std::exp((logits[order[i]] - mx) / c_.temperature);
  // Nucleus: the smallest prefix of the sorted distribution with mass >= top_p.
  int64_t keep = k;
  double mass = 0;
  for (int64_t i = 0; i < k; ++i) {
    mass += p[i] / sum;
    if (mass >= c_.top_p) {
      keep = i + 1;
      break;
    }
  }
  std::discrete_distribution<int64_t> pick(p.begin(), p.begin() + keep);
  return order[pick(rng_)];
}

}  // namespace qv::infer
