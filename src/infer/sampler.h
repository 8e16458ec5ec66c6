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
  // transformers' RepetitionPenaltyLogitsProcessor: each distinct id already in the context
  // (prompt and generated text) has its logit divided by this when positive, multiplied when
  // negative; 1 = off. Applied before min_new_tokens masking, temperature, top-k and top-p.
  double repetition_penalty = 1.0;
};

// The repetition penalty applied in place to `logits` for the ids in `context`.
void apply_repetition_penalty(std::vector<float>& logits, const std::vector<int32_t>& context,
                              double penalty);

class Sampler {
 public:
  explicit Sampler(const SamplingConfig& config) : c_(config), rng_(config.seed) {}
  int64_t next(const std::vector<float>& logits);
  // The same after the repetition penalty over `context` (every id before the one to choose).
  int64_t next(std::vector<float> logits, const std::vector<int32_t>& context);

 private:
  int64_t choose(const std::vector<float>& logits);
  SamplingConfig c_;
  int64_t calls_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace qv::infer
