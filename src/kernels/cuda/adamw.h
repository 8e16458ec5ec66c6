// CUDA: the fused AdamW update over one contiguous span of fp32 master weights (torch.optim.AdamW
// semantics, as train/adamw.cpp): decay, both moments, bias-corrected step, and the bf16 copy of
// the updated weights written in the same pass. Every operation is rounded as the CPU update
// rounds it (no FMA contraction), so the results are bit-identical to train::AdamW's.
#pragma once
#include <cstdint>

#include "core/bf16.h"

namespace qv::kernels::cuda {

// The per-span constants, computed on the host exactly as train/adamw.cpp does:
// decay = 1 - lr * wd, step_size = -(lr / (1 - beta1^t)), bc2_sqrt = sqrt(1 - beta2^t).
struct AdamWScalars {
  float decay, b1, one_b1, b2, one_b2, step_size, bc2_sqrt, eps;
};

// p, g, m, v: n floats on the device; p_bf16 (optional) receives bf16(p) after the update.
void adamw_update(const AdamWScalars& s, float* p, const float* g, float* m, float* v, bf16* p_bf16,
                  int64_t n);

}  // namespace qv::kernels::cuda
