// The optimizer's arithmetic over the flat parameter and gradient buffers: the fused AdamW update
// (writing the bf16 copy in the same pass), the squared gradient norm and gradient scaling for
// clipping. Results do not depend on the thread count: work is cut into blocks of a fixed size.
#pragma once
#include <cstdint>
#include <span>

#include "core/bf16.h"

namespace qv::kernels {

// One AdamW step's scalars, computed in double by the caller and applied in float in torch's
// order of operations: p = p * decay; m = m * b1 + one_b1 * g; v = v * b2 + one_b2 * g * g;
// p = p + step_size * (m / (sqrt(v) / bc2_sqrt + eps)).
struct AdamWScalars {
  float decay, b1, one_b1, b2, one_b2, step_size, bc2_sqrt, eps;
};

// Updates n elements of p, m and v in place from g; also writes p rounded to bf16 into p_bf16
// when it is non-null (round to nearest even).
void adamw_update(const AdamWScalars& s, float* p, const float* g, float* m, float* v, bf16* p_bf16,
                  int64_t n);

// [begin, end) offsets into a flat buffer.
struct FlatPiece {
  int64_t begin = 0, end = 0;
};

// Sum of x[j]^2 over the pieces: each block of 2^15 elements (blocks start at each piece's
// begin) summed in double, then the block sums added in order.
double squared_norm(const float* x, std::span<const FlatPiece> pieces);

// x[j] *= factor for j in [begin, end) of each piece.
void scale(float* x, std::span<const FlatPiece> pieces, float factor);

}  // namespace qv::kernels
