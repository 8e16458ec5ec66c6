// Dispatch of kernels/optim.h to the backend of the calling thread's device.
#include "kernels/optim.h"

#include "kernels/cpu/optim.h"
#include "kernels/dispatch.h"

namespace qv::kernels {

void adamw_update(const AdamWScalars& s, float* p, const float* g, float* m, float* v, bf16* p_bf16,
                  int64_t n) {
  QV_DISPATCH(adamw_update, s, p, g, m, v, p_bf16, n);
}

double squared_norm(const float* x, std::span<const FlatPiece> pieces) {
  QV_DISPATCH(squared_norm, x, pieces);
}

}  // namespace qv::kernels
