// CUDA: the MoE ops' placeholders (kernels/cuda/moe.h): each names itself and throws.
#include "kernels/cuda/moe.h"

#include "core/error.h"

namespace qv::kernels::cuda {
namespace {
[[noreturn]] void not_on_cuda(const char* op) {
  fail("kernel ", op, " on cuda: not implemented on the GPU yet (MoE runs on the CPU)");
}
}  // namespace

template <typename T>
void moe_softmax(const T*, T*, int64_t, int64_t) {
  not_on_cuda("moe_softmax");
}
template <typename T>
void moe_softmax_backward(const T*, const T*, T*, int64_t, int64_t) {
  not_on_cuda("moe_softmax_backward");
}
template <typename T>
void moe_topk(const T*, const MoeDims&, int32_t*, T*) {
  not_on_cuda("moe_topk");
}
template <typename T>
void moe_topk_backward(const T*, const int32_t*, const T*, const T*, const MoeDims&, T*) {
  not_on_cuda("moe_topk_backward");
}
void moe_bucket(const int32_t*, const MoeDims&, int64_t*, int64_t*, int64_t*) {
  not_on_cuda("moe_bucket");
}
template <typename T>
void moe_dispatch(const T*, const MoeRouting&, const MoeDims&, T*) {
  not_on_cuda("moe_dispatch");
}
template <typename T>
void moe_dispatch_backward(const T*, const MoeRouting&, const MoeDims&, T*) {
  not_on_cuda("moe_dispatch_backward");
}
template <typename T>
void moe_combine(const T*, const MoeRouting&, const T*, const MoeDims&, T*) {
  not_on_cuda("moe_combine");
}
template <typename T>
void moe_combine_backward(const T*, const T*, const MoeRouting&, const T*, const MoeDims&, T*, T*) {
  not_on_cuda("moe_combine_backward");
}
template <typename T>
void moe_experts_forward(const T*, const MoeExperts<T>&, const MoeRouting&, const T*,
                         const MoeDims&, const MoeActs<T>&, T*) {
  not_on_cuda("moe_experts_forward");
}
template <typename T>
void moe_experts_backward(const T*, const MoeExperts<T>&, const MoeRouting&, const T*,
                          const MoeDims&, const MoeSaved<T>&, T*, T*, T*, T*) {
  not_on_cuda("moe_experts_backward");
}

template void moe_softmax<float>(const float*, float*, int64_t, int64_t);
template void moe_softmax_backward<float>(const float*, const float*, float*, int64_t, int64_t);
template void moe_topk<float>(const float*, const MoeDims&, int32_t*, float*);
template void moe_topk_backward<float>(const float*, const int32_t*, const float*, const float*,
                                       const MoeDims&, float*);
template void moe_dispatch<float>(const float*, const MoeRouting&, const MoeDims&, float*);
template void moe_dispatch_backward<float>(const float*, const MoeRouting&, const MoeDims&, float*);
template void moe_combine<float>(const float*, const MoeRouting&, const float*, const MoeDims&,
                                 float*);
template void moe_combine_backward<float>(const float*, const float*, const MoeRouting&,
                                          const float*, const MoeDims&, float*, float*);
template void moe_experts_forward<float>(const float*, const MoeExperts<float>&, const MoeRouting&,
                                         const float*, const MoeDims&, const MoeActs<float>&,
                                         float*);
template void moe_experts_backward<float>(const float*, const MoeExperts<float>&, const MoeRouting&,
                                          const float*, const MoeDims&, const MoeSaved<float>&,
                                          float*, float*, float*, float*);

}  // namespace qv::kernels::cuda
