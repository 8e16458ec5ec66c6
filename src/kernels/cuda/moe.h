// CUDA: kernels/moe.h's ops (float; moe.cu). Every pointer is device memory of the current
// device, MoeRouting's and MoeExperts' included. Three ops wait for the stream, because the host
// needs device values to go on (see moe.cu): moe_topk and moe_bucket run the CPU op on a host
// copy of their input (torch's tie order, a stable counting sort) and upload the result, and the
// grouped expert GEMMs read the per-expert slot counts (offsets, E + 1 values) back to launch
// one GEMM per expert. The rest are asynchronous kernels without atomics.
#pragma once
#include <cstdint>

#include "kernels/moe.h"

namespace qv::kernels::cuda {

template <typename T>
void moe_softmax(const T* logits, T* probs, int64_t N, int64_t E);
template <typename T>
void moe_softmax_backward(const T* probs, const T* d_probs, T* d_logits, int64_t N, int64_t E);
template <typename T>
void moe_topk(const T* probs, const MoeDims& d, int32_t* expert, T* weight);
template <typename T>
void moe_topk_backward(const T* probs, const int32_t* expert, const T* weight, const T* d_weight,
                       const MoeDims& d, T* d_probs);
void moe_router_stats(const float* probs, const int32_t* expert, const uint8_t* valid,
                      const MoeDims& d, int64_t* tokens_per_expert, double* chosen,
                      double* prob_sum);
void moe_add_aux_grad(const float* per_expert, const uint8_t* valid, int64_t N, int64_t E,
                      float* d_probs);
void moe_bucket(const int32_t* expert, const MoeDims& d, int64_t* offsets, int64_t* order,
                int64_t* position);
template <typename T>
void moe_dispatch(const T* x, const MoeRouting& r, const MoeDims& d, T* xs);
template <typename T>
void moe_dispatch_backward(const T* d_xs, const MoeRouting& r, const MoeDims& d, T* dx);
template <typename T>
void moe_combine(const T* ys, const MoeRouting& r, const T* weight, const MoeDims& d, T* y);
template <typename T>
void moe_combine_backward(const T* dy, const T* ys, const MoeRouting& r, const T* weight,
                          const MoeDims& d, T* d_ys, T* d_weight);
template <typename T>
void moe_experts_forward(const T* x, const MoeExperts<T>& w, const MoeRouting& r, const T* weight,
                         const MoeDims& d, const MoeActs<T>& acts, T* y);
template <typename T>
void moe_experts_backward(const T* dy, const MoeExperts<T>& w, const MoeRouting& r, const T* weight,
                          const MoeDims& d, const MoeSaved<T>& acts, T* dx, T* d_gate_up, T* d_down,
                          T* d_weight);

}  // namespace qv::kernels::cuda
