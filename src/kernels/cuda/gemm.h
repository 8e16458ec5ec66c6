// CUDA: the matrix-product engine, cuBLASLt. Same row-major convention as kernels/cpu/gemm.h;
// every matrix is device memory of the current device. float products compute in float
// (CUBLAS_COMPUTE_32F, no TF32: the path the golden fp32 tests take); bf16 products take bf16
// A and B, accumulate in float and write float C (the CPU op's semantics). Algorithms come from
// cuBLASLt's heuristic, cached per shape and pointer alignment.
#pragma once
#include <cstdint>
#include <string>

#include "core/bf16.h"
#include "core/tensor.h"

namespace qv::kernels::cuda {

// Row-major C[M,N] = alpha * op(A) . op(B) + beta * C (beta == 0 overwrites C).
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, float* C,
               int64_t ldc);

// dst[i] = bf16(src[i]) (round to nearest even, as core/bf16.h's to_bf16) and back (named
// apart from qv::to_bf16, which argument-dependent lookup would also find).
void convert_to_bf16(const float* src, bf16* dst, int64_t n);
void convert_to_float(const bf16* src, float* dst, int64_t n);

// "cuBLASLt 13.0.0 on NVIDIA H200 (sm_90, ...)": one line for logs.
std::string gemm_description();
// bf16 products run on tensor cores: true.
bool gemm_bf16_native();
// The peak MFU is quoted against, in GFLOP/s: the datasheet's dense rate of a known GPU (bf16
// tensor cores for kBF16, plain fp32 for kF32), else a measured 4096^3 cuBLASLt product.
double measure_peak_gflops(DType dtype);

}  // namespace qv::kernels::cuda
