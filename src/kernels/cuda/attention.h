// CUDA: variable-length multi-head attention, forward and backward, and decoding against a KV
// cache: the semantics and signatures of kernels/cpu/attention.h (varlen documents with
// cu_seqlens, causal or full, GQA, key padding mask, out = 0 and lse = -inf for a query with no
// key). Every pointer, cu_seqlens and key_valid included, is device memory.
//
// Our own flash-style kernels, not cuDNN's fused attention: cuDNN's SDPA takes fp16/bf16 only,
// and the golden tests run fp32; its ragged (varlen) graph needs per-call graph building that we
// could not check on a GPU here. Float storage and decoding run on CUDA cores (attention.cu);
// bf16 storage with head_dim <= 128 runs on tensor cores (attention_tc.h), larger heads on CUDA
// cores. head_dim <= 256. cu_seqlens is not validated here (the caller builds it); ranges are
// clamped to [0, tokens), so a bad one reads no memory outside the arrays.
#pragma once
#include <cstdint>

#include "core/bf16.h"
#include "kernels/attention.h"

namespace qv::kernels::cuda {

using qv::kernels::AttentionDims;

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

// bf16 storage (q, k, v, out, dout, dq, dk, dv) with a float log-sum-exp: a bf16 lse would move
// the backward's recomputed probabilities by up to 2^-8 * |lse| relative (about 3% at lse = 8).
// Scores, softmax and accumulations are float.
void attention_forward(const bf16* q, const bf16* k, const bf16* v, bf16* out, float* lse,
                       const int64_t* cu_seqlens, int64_t n_seqs, const AttentionDims& dims,
                       const uint8_t* key_valid = nullptr);
void attention_backward(const bf16* q, const bf16* k, const bf16* v, const bf16* out,
                        const float* lse, const bf16* dout, bf16* dq, bf16* dk, bf16* dv,
                        const int64_t* cu_seqlens, int64_t n_seqs, const AttentionDims& dims,
                        const uint8_t* key_valid = nullptr);

// One new query per head against a key/value cache (incremental decoding): q [heads, hd],
// k_cache / v_cache [length, kv_heads, hd], out [heads, hd]. Attends to every cached position.
template <typename T>
void attention_decode(const T* q, const T* k_cache, const T* v_cache, T* out, int64_t length,
                      const AttentionDims& dims);

}  // namespace qv::kernels::cuda
