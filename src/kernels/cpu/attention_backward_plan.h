// How attention_backward splits its work over threads. Only tests and benchmarks choose a plan;
// the public attention_backward picks one itself.
#pragma once
#include <cstdint>

#include "kernels/cpu/attention.h"

namespace qv::kernels {

enum class AttentionBackwardPlan {
  kAuto,
  // One task per (sequence, kv head) computes dq, dk and dv in a single pass (least arithmetic,
  // but only n_seqs * kv_heads tasks).
  kPerKvHead,
  // dk/dv per (sequence, kv head, key block), then dq per (sequence, head, query block): more
  // arithmetic (scores are recomputed twice) but many small tasks, for few long sequences.
  kSplit,
};

template <typename T>
void attention_backward_with_plan(const T* q, const T* k, const T* v, const T* out, const T* lse,
                                  const T* dout, T* dq, T* dk, T* dv, const int64_t* cu_seqlens,
                                  int64_t n_seqs, const AttentionDims& dims,
                                  const uint8_t* key_valid, AttentionBackwardPlan plan);

}  // namespace qv::kernels
