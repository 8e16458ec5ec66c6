// Choosing the next token from logits: greedy, or temperature + top-k + top-p sampling with a
// seeded generator (same seed, same text).
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace qv::infer {

struct SamplingConfig {
  double temperature = 0.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = no limit
  double top_p = 1.0;
  uint64_t seed = 0;
  // The first min_new_tokens calls of next() never return an id in end_ids (their logits are
  // set to -inf first), like transformers' MinNewTokensLengthLogitsProcessor.
  int64_t min_new_tokens = 0;
  std::vector<int64_t> end_ids;
};

class Sampler {
 public:
  explicit Sampler(const SamplingConfig& config) : c_(config), rng_(config.seed) {}
  int64_t next(const std::vector<float>& logits);

 private:
  int64_t choose(const std::vector<float>& logits);
  SamplingConfig c_;
  int64_t calls_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace qv::infer
