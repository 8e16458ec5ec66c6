// Dispatch of kernels/gemm.h to the backend of the calling thread's device.
#include "kernels/gemm.h"

#include "kernels/cpu/gemm.h"
#include "kernels/dispatch.h"

namespace qv::kernels {

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  QV_DISPATCH_T(T, gemm, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, float* C,
               int64_t ldc) {
  QV_DISPATCH(gemm_bf16, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void convert_to_bf16(const float* src, bf16* dst, int64_t n) {
  QV_DISPATCH(convert_to_bf16, src, dst, n);
}

std::string gemm_description() {
  if (!current_device().is_cuda()) return cpu::gemm_info().describe();
  QV_CUDA_CALL(gemm_description);
}

bool gemm_bf16_native() {
  if (!current_device().is_cuda()) return cpu::gemm_info().bf16_native;
  QV_CUDA_CALL(gemm_bf16_native);
}

double measure_peak_gflops(DType dtype) {
  QV_DISPATCH(measure_peak_gflops, dtype);
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                           const double*, int64_t, double, double*, int64_t);

}  // namespace qv::kernels
