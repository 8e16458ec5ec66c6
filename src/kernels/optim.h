// The optimizer's arithmetic over the flat parameter and gradient buffers: the fused AdamW update
// (gradient clipping and the bf16 copy in the same pass) and the squared gradient norm. Results do
// not depend on the thread count: work is cut into blocks of a fixed size.
#pragma once
#include <cstdint>
#include <span>

#include "core/bf16.h"

namespace qv::kernels {

// One AdamW step's scalars, computed in double by the caller and applied in float in torch's
// order of operations: g = g * grad_scale (gradient clipping; 1 leaves g exactly as it is);
// p = p * decay; m = m * b1 + one_b1 * g; v = v * b2 + one_b2 * g * g;
// p = p + step_size * (m / (sqrt(v) / bc2_sqrt + eps)).
struct AdamWScalars {
  float decay, b1, one_b1, b2, one_b2, step_size, bc2_sqrt, eps;
  float grad_scale = 1.0f;
};

// Updates n elements of p, m and v in place from g (g itself is not written: clipping is applied
// on the fly, saving a pass over the gradients); also writes p rounded to bf16 into p_bf16 when
// it is non-null (round to nearest even).
void adamw_update(const AdamWScalars& s, float* p, const float* g, float* m, float* v, bf16* p_bf16,
                  int64_t n);

// [begin, end) offsets into a flat buffer.
struct FlatPiece {
  int64_t begin = 0, end = 0;
};

// Sum of x[j]^2 over the pieces: each block of 2^15 elements (blocks start at each piece's
// begin) summed in double, then the block sums added in order.
double squared_norm(const float* x, std::span<const FlatPiece> pieces);

}  // namespace qv::kernels
