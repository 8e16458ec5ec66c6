// CUDA: kernels/optim.h. The fused AdamW update over one contiguous span of fp32 master weights
// (torch.optim.AdamW semantics, as train/adamw.cpp): decay, both moments, bias-corrected step, and
// the bf16 copy of the updated weights written in the same pass. Every operation is rounded as the
// CPU update rounds it (no FMA contraction), so the results are bit-identical to train::AdamW's.
#pragma once
#include <cstdint>
#include <span>

#include "core/bf16.h"
#include "kernels/optim.h"

namespace qv::kernels::cuda {

using qv::kernels::AdamWScalars;  // computed on the host (kernels/optim.h)

// p, g, m, v: n floats on the device; p_bf16 (optional) receives bf16(p) after the update.
void adamw_update(const AdamWScalars& s, float* p, const float* g, float* m, float* v, bf16* p_bf16,
                  int64_t n);

// kernels/optim.h's gradient norm and scaling; the pieces (offsets) are host memory, x device
// memory. The norm sums each block of 2^15 elements in double on the device and adds the block
// sums in order on the host (the CPU op's blocking; the order inside a block differs).
double squared_norm(const float* x, std::span<const FlatPiece> pieces);

}  // namespace qv::kernels::cuda
