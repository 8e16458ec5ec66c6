// CUDA: tensor-core flash attention (attention_tc.cu), used by attention.h's bf16 overloads, and
// by its float ones when AttentionDims::bf16_products allows (mixed precision), when the head
// fits (tc_attention_fits); other heads, fp32 and decoding keep attention.cu's CUDA-core kernels.
// Same semantics as kernels/cpu/attention.h: varlen documents, causal or full, GQA, key padding,
// out = 0 and lse = -inf for a query with no key.
//
// Numerics (as FlashAttention's): the products run on tensor cores with bf16 inputs and float
// accumulation; the probabilities P (forward, and dk-dv's P^T dO) and the score gradients dS are
// rounded to bf16 before the product that consumes them; softmax statistics, lse and the
// accumulators are float. tests/test_cuda_kernels.cpp states the resulting bounds.
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/attention.h"
#include "kernels/cuda/attention_masks.cuh"

namespace qv::kernels::cuda {

// Whether the tensor-core kernels take this head: head_dim <= 128 (padded to a multiple of 16
// in shared memory; the backward's tiles of a larger head would not fit in one SM's 227 KiB).
bool tc_attention_fits(const AttentionDims& dims);

// q, k, v, out: [tokens, heads or kv_heads, head_dim] as D = __nv_bfloat16, or float (rounded
// to bf16 as they are staged: mixed precision, AttentionDims::bf16_products); lse float
// [tokens, heads].
template <typename D>
void attention_forward_tc(const D* q, const D* k, const D* v, D* out, float* lse,
                          const AttnArgs& a);

// delta[tokens, heads] = dout . out (attention.cu computes it); dq, dk, dv overwritten.
template <typename D>
void attention_backward_tc(const D* q, const D* k, const D* v, const float* lse, const float* delta,
                           const D* dout, D* dq, D* dk, D* dv, const AttnArgs& a);

}  // namespace qv::kernels::cuda
