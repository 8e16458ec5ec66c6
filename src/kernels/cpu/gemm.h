// The CPU implementation of kernels/gemm.h. The path is chosen once from the processor's
// features (core/cpu_features.h):
//  - float: oneDNN's JIT sgemm, which generates AVX-512, AVX2 or SSE4.1 code for the processor it
//    runs on; QWEN3VL_GEMM=openblas selects OpenBLAS instead (for comparisons);
//  - bfloat16 inputs with float accumulation: oneDNN's matmul primitive where the processor has
//    AVX-512 (native VDPBF16PS with AVX512-BF16, AMX tiles with AMX-BF16, emulated otherwise);
//    elsewhere the bf16 inputs are widened to float and multiplied by the float engine (exact
//    same products, at the float rate), which gemm_info() says.
//  - double (finite-difference tests only): OpenBLAS.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/gemm.h"

namespace qv::kernels::cpu {

enum class GemmEngine { kOneDnn, kOpenBlas };

struct GemmInfo {
  GemmEngine f32_engine = GemmEngine::kOneDnn;
  bool bf16_native = false;      // bf16 products on bf16 hardware paths (false: widened to float)
  std::string f32_kernel;        // e.g. "oneDNN sgemm (JIT, AVX-512)"
  std::string bf16_kernel;       // e.g. "oneDNN matmul brg:avx512_core_bf16"
  std::string describe() const;  // one line for logs: CPU, ISA, engines
};

// Chosen on first use; thread-safe.
const GemmInfo& gemm_info();

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, float* C,
               int64_t ldc);

// dst[i] = bf16(src[i]) (core/bf16.h's to_bf16, threaded over large arrays).
void convert_to_bf16(const float* src, bf16* dst, int64_t n);
// Builds (once; cached) what gemm_bf16 with this shape and beta will run, so that a later call
// allocates nothing. No-op where bf16 products are widened to float.
void gemm_bf16_prepare(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       int64_t lda, int64_t ldb, float beta, int64_t ldc);

// The path gemm_bf16 takes where the processor has no bf16 kernels: both operands widened to
// float (exactly), then the float engine. Public so that tests check it on every machine.
void gemm_bf16_widened(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, float* C,
                       int64_t ldc);

double measure_peak_gflops(DType dtype);

// What the bf16 matmul cache has done in this process: primitives built (each a JIT compile and
// its allocations) and products executed. For the no-allocation test.
struct Bf16MatmulStats {
  int64_t built = 0, executed = 0;
};
Bf16MatmulStats bf16_matmul_stats();

// True while the calling thread is inside oneDNN's execution of a bf16 matmul, which allocates its
// argument bookkeeping on the heap at every call (freed before it returns; nothing we can pass
// in). The no-allocation test sets those allocations apart from ours with it.
bool in_bf16_matmul_execution();

}  // namespace qv::kernels::cpu
