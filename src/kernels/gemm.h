// Matrix products on the calling thread's device (kernels/device.h): the engine behind every
// dense layer, attention tile and the classifier. Each backend chooses its own kernels (CPU:
// kernels/cpu/gemm.h; oneDNN / OpenBLAS chosen from the processor's features).
#pragma once
#include <cstdint>
#include <string>

#include "core/bf16.h"
#include "core/tensor.h"

namespace qv::kernels {

// Row-major C[M,N] = alpha * op(A) . op(B) + beta * C (beta == 0 overwrites C, as in BLAS).
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// The same product with bf16 A and B and float C; accumulation in float. Not to be called from
// inside a parallel region (the engine parallelises itself).
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, float* C,
               int64_t ldc);

// dst[i] = bf16(src[i]), rounded to nearest even (core/bf16.h's to_bf16): the activation operand
// of a bf16 product.
void convert_to_bf16(const float* src, bf16* dst, int64_t n);

// One line for logs: the device and the engines its products run on.
std::string gemm_description();

// Whether bf16 products run on bf16 hardware paths (false: widened to float, at the float rate).
bool gemm_bf16_native();

// The engine's rate on a large square product (n = 2048), best of several runs, for `dtype`
// kF32 or kBF16: the peak that MFU is measured against. Measured once per process and device.
double measure_peak_gflops(DType dtype);

}  // namespace qv::kernels
