// Variable-length multi-head attention ("varlen"): tokens of several sequences are concatenated
// and cu_seqlens[0..n_seqs] marks where each starts; attention never crosses a sequence. Causal
// (decoder documents) or full (vision images / frames). GQA: query head h reads kv head
// h / (heads / kv_heads). Memory is linear in sequence length: probabilities are never stored;
// the backward recomputes them from the saved log-sum-exp.
#pragma once
#include <cstdint>

namespace qv::kernels {

struct AttentionDims {
  int64_t tokens = 0;    // N, total over all sequences
  int64_t heads = 0;     // query heads
  int64_t kv_heads = 0;  // key/value heads (divides heads)
  int64_t head_dim = 0;
  bool causal = false;
  double scale = 0;  // usually head_dim^-0.5
  // Mixed precision: a backend may run the products with bf16 inputs (q, k, v and the
  // probabilities rounded to bf16, float accumulation), as torch's bf16 autocast does. The CUDA
  // backend then uses tensor cores (kernels/cuda/attention_tc.h); the CPU computes in float.
  bool bf16_products = false;
};

// q: [N, heads, hd]; k, v: [N, kv_heads, hd]; out: [N, heads, hd]; lse: [N, heads] saved for
// backward. key_valid (optional, [N]): keys with 0 are never attended (padding). A query row with
// no key to attend gets out = 0 and lse = -inf.
template <typename T>
void attention_forward(const T* q, const T* k, const T* v, T* out, T* lse,
                       const int64_t* cu_seqlens, int64_t n_seqs, const AttentionDims& dims,
                       const uint8_t* key_valid = nullptr);

// dq, dk, dv overwritten.
template <typename T>
void attention_backward(const T* q, const T* k, const T* v, const T* out, const T* lse,
                        const T* dout, T* dq, T* dk, T* dv, const int64_t* cu_seqlens,
                        int64_t n_seqs, const AttentionDims& dims,
                        const uint8_t* key_valid = nullptr);

// One new query per head against a key/value cache (incremental decoding): q [heads, hd],
// k_cache / v_cache [length, kv_heads, hd], out [heads, hd]. Attends to every cached position.
template <typename T>
void attention_decode(const T* q, const T* k_cache, const T* v_cache, T* out, int64_t length,
                      const AttentionDims& dims);

}  // namespace qv::kernels
