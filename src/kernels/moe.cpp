// Dispatch of kernels/moe.h to the backend of the calling thread's device.
#include "kernels/moe.h"

#include "kernels/cpu/moe.h"
#include "kernels/dispatch.h"

namespace qv::kernels {

template <typename T>
void moe_softmax(const T* logits, T* probs, int64_t N, int64_t E) {
  QV_DISPATCH_T(T, moe_softmax, logits, probs, N, E);
}

template <typename T>
void moe_softmax_backward(const T* probs, const T* d_probs, T* d_logits, int64_t N, int64_t E) {
  QV_DISPATCH_T(T, moe_softmax_backward, probs, d_probs, d_logits, N, E);
}

template <typename T>
void moe_topk(const T* probs, const MoeDims& d, int32_t* expert, T* weight) {
  QV_DISPATCH_T(T, moe_topk, probs, d, expert, weight);
}

template <typename T>
void moe_topk_backward(const T* probs, const int32_t* expert, const T* weight, const T* d_weight,
                       const MoeDims& d, T* d_probs) {
  QV_DISPATCH_T(T, moe_topk_backward, probs, expert, weight, d_weight, d, d_probs);
}

void moe_router_stats(const float* probs, const int32_t* expert, const uint8_t* valid,
                      const MoeDims& d, int64_t* tokens_per_expert, double* chosen,
                      double* prob_sum) {
  QV_DISPATCH(moe_router_stats, probs, expert, valid, d, tokens_per_expert, chosen, prob_sum);
}

void moe_add_aux_grad(const float* per_expert, const uint8_t* valid, int64_t N, int64_t E,
                      float* d_probs) {
  QV_DISPATCH(moe_add_aux_grad, per_expert, valid, N, E, d_probs);
}

void moe_bucket(const int32_t* expert, const MoeDims& d, int64_t* offsets, int64_t* order,
                int64_t* position) {
  QV_DISPATCH(moe_bucket, expert, d, offsets, order, position);
}

template <typename T>
void moe_dispatch(const T* x, const MoeRouting& r, const MoeDims& d, T* xs) {
  QV_DISPATCH_T(T, moe_dispatch, x, r, d, xs);
}

template <typename T>
void moe_dispatch_backward(const T* d_xs, const MoeRouting& r, const MoeDims& d, T* dx) {
  QV_DISPATCH_T(T, moe_dispatch_backward, d_xs, r, d, dx);
}

template <typename T>
void moe_combine(const T* ys, const MoeRouting& r, const T* weight, const MoeDims& d, T* y) {
  QV_DISPATCH_T(T, moe_combine, ys, r, weight, d, y);
}

template <typename T>
void moe_combine_backward(const T* dy, const T* ys, const MoeRouting& r, const T* weight,
                          const MoeDims& d, T* d_ys, T* d_weight) {
  QV_DISPATCH_T(T, moe_combine_backward, dy, ys, r, weight, d, d_ys, d_weight);
}

template <typename T>
void moe_experts_forward(const T* x, const MoeExperts<T>& w, const MoeRouting& r, const T* weight,
                         const MoeDims& d, const MoeActs<T>& acts, T* y) {
  QV_DISPATCH_T(T, moe_experts_forward, x, w, r, weight, d, acts, y);
}

template <typename T>
void moe_experts_backward(const T* dy, const MoeExperts<T>& w, const MoeRouting& r, const T* weight,
                          const MoeDims& d, const MoeSaved<T>& acts, T* dx, T* d_gate_up, T* d_down,
                          T* d_weight) {
  QV_DISPATCH_T(T, moe_experts_backward, dy, w, r, weight, d, acts, dx, d_gate_up, d_down,
                d_weight);
}

template void moe_softmax<float>(const float* logits, float* probs, int64_t N, int64_t E);
template void moe_softmax<double>(const double* logits, double* probs, int64_t N, int64_t E);
template void moe_softmax_backward<float>(const float* probs, const float* d_probs, float* d_logits,
                                          int64_t N, int64_t E);
template void moe_softmax_backward<double>(const double* probs, const double* d_probs,
                                           double* d_logits, int64_t N, int64_t E);
template void moe_topk<float>(const float* probs, const MoeDims& d, int32_t* expert, float* weight);
template void moe_topk<double>(const double* probs, const MoeDims& d, int32_t* expert,
                               double* weight);
template void moe_topk_backward<float>(const float* probs, const int32_t* expert,
                                       const float* weight, const float* d_weight, const MoeDims& d,
                                       float* d_probs);
template void moe_topk_backward<double>(const double* probs, const int32_t* expert,
                                        const double* weight, const double* d_weight,
                                        const MoeDims& d, double* d_probs);
#define QV_INSTANTIATE_ROUTE(T)                                                            \
  template void moe_dispatch<T>(const T*, const MoeRouting&, const MoeDims&, T*);          \
  template void moe_dispatch_backward<T>(const T*, const MoeRouting&, const MoeDims&, T*); \
  template void moe_combine<T>(const T*, const MoeRouting&, const T*, const MoeDims&, T*); \
  template void moe_combine_backward<T>(const T*, const T*, const MoeRouting&, const T*,   \
                                        const MoeDims&, T*, T*);
QV_INSTANTIATE_ROUTE(float)
QV_INSTANTIATE_ROUTE(double)
#undef QV_INSTANTIATE_ROUTE
template void moe_experts_forward<float>(const float* x, const MoeExperts<float>& w,
                                         const MoeRouting& r, const float* weight, const MoeDims& d,
                                         const MoeActs<float>& acts, float* y);
template void moe_experts_forward<double>(const double* x, const MoeExperts<double>& w,
                                          const MoeRouting& r, const double* weight,
                                          const MoeDims& d, const MoeActs<double>& acts, double* y);
template void moe_experts_backward<float>(const float* dy, const MoeExperts<float>& w,
                                          const MoeRouting& r, const float* weight,
                                          const MoeDims& d, const MoeSaved<float>& acts, float* dx,
                                          float* d_gate_up, float* d_down, float* d_weight);
template void moe_experts_backward<double>(const double* dy, const MoeExperts<double>& w,
                                           const MoeRouting& r, const double* weight,
                                           const MoeDims& d, const MoeSaved<double>& acts,
                                           double* dx, double* d_gate_up, double* d_down,
                                           double* d_weight);

}  // namespace qv::kernels
