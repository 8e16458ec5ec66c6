// The CPU implementation of kernels/optim.h (OpenMP; see that header for what each op does).
#pragma once
#include <cstdint>
#include <span>

#include "kernels/optim.h"

namespace qv::kernels::cpu {

void adamw_update(const AdamWScalars& s, float* p, const float* g, float* m, float* v, bf16* p_bf16,
                  int64_t n);
double squared_norm(const float* x, std::span<const FlatPiece> pieces);

}  // namespace qv::kernels::cpu
