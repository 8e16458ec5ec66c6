// How the attention kernels cut their work into tiles and tasks. Only tests and benchmarks set
// these; the public functions in attention.h choose them from the shapes and the BLAS build.
#pragma once
#include <cstdint>

#include "kernels/cpu/attention.h"

namespace qv::kernels::cpu {

enum class AttentionBackwardPlan {
  kAuto,
  // One task per (sequence, kv head) computes dq, dk and dv in a single pass (least arithmetic,
  // but only n_seqs * kv_heads tasks).
  kPerKvHead,
  // dk/dv per (sequence, kv head, key block), then dq per (sequence, head, query block): scores
  // are recomputed in both passes, but the many small tasks keep every thread busy when there
  // are few long sequences.
  kSplit,
};

struct AttentionTuning {
  AttentionBackwardPlan plan = AttentionBackwardPlan::kAuto;
  int64_t query_block = 0;  // query rows per tile; 0 chooses
  int64_t key_block = 0;    // keys per tile; 0 chooses
};

template <typename T>
void attention_forward_tuned(const T* q, const T* k, const T* v, T* out, T* lse,
                             const int64_t* cu_seqlens, int64_t n_seqs, const AttentionDims& dims,
                             const uint8_t* key_valid, const AttentionTuning& tuning);

template <typename T>
void attention_backward_tuned(const T* q, const T* k, const T* v, const T* out, const T* lse,
                              const T* dout, T* dq, T* dk, T* dv, const int64_t* cu_seqlens,
                              int64_t n_seqs, const AttentionDims& dims, const uint8_t* key_valid,
                              const AttentionTuning& tuning);

}  // namespace qv::kernels::cpu
