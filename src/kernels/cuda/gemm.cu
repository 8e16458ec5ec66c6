// CUDA: GEMMs on cuBLASLt (gemm.h), the bf16 conversions, and the dense layers' bias broadcast
// (linear.h; the layers themselves are composed in kernels/linear.cpp).
//
// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so cuBLASLt is called with
// the operands swapped: its "A" is our B, its "B" our A, m = N, n = M. One cuBLASLt handle and a
// 32 MiB workspace per device; the heuristic's algorithm is cached per (types, transposes,
// shape, leading dimensions, pointer alignments, beta == 0).
#include <cublasLt.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/linear.h"

#define QV_CUBLAS_CHECK(expr)                                                             \
  do {                                                                                    \
    const cublasStatus_t qv_st_ = (expr);                                                 \
    if (qv_st_ != CUBLAS_STATUS_SUCCESS)                                                  \
      ::qv::fail("cuBLASLt: ", #expr, " failed: ", cublasLtGetStatusString(qv_st_), " (", \
                 __FILE__, ":", __LINE__, ")");                                           \
  } while (0)

namespace qv::kernels::cuda {
namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;

struct DeviceLt {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

struct PlanKey {
  int a_type, c_type;
  bool ta, tb, beta_zero;
  int64_t M, N, K, lda, ldb, ldc;
  int align_a, align_b, align_c;
  auto tie() const {
    return std::tie(a_type, c_type, ta, tb, beta_zero, M, N, K, lda, ldb, ldc, align_a, align_b,
                    align_c);
  }
  bool operator<(const PlanKey& o) const { return tie() < o.tie(); }
};

std::mutex g_mu;
std::array<DeviceLt, 64> g_lt;
std::map<std::pair<int, PlanKey>, cublasLtMatmulAlgo_t> g_algos;

DeviceLt& device_lt(int device) {
  DeviceLt& d = g_lt.at(static_cast<size_t>(device));
  if (!d.handle) {
    QV_CUBLAS_CHECK(cublasLtCreate(&d.handle));
    d.workspace = allocate(kWorkspaceBytes);
  }
  return d;
}

int alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  int al = 256;
  while (al > 1 && a % static_cast<uintptr_t>(al) != 0) al /= 2;
  return al;
}

// RAII for the descriptors of one call.
struct Descs {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~Descs() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// Column-major matmul on cuBLASLt: C[m,n] = alpha op(A) op(B) + beta C, A/B of type ab_type,
// C of c_type, float scale and compute.
void lt_matmul(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const void* A,
               int64_t lda, const void* B, int64_t ldb, float beta, void* C, int64_t ldc,
               cudaDataType_t ab_type, cudaDataType_t c_type) {
  if (m <= 0 || n <= 0) return;
  const int device = current_device_index();
  std::lock_guard<std::mutex> lock(g_mu);
  DeviceLt& lt = device_lt(device);
  Descs d;
  const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  QV_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  QV_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
  QV_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
  // Stored shapes (column-major): A is m x k (or k x m when transposed), B k x n (or n x k).
  QV_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.a, ab_type, ta ? k : m, ta ? m : k, lda));
  QV_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.b, ab_type, tb ? n : k, tb ? k : n, ldb));
  QV_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.c, c_type, m, n, ldc));

  const PlanKey key{ab_type, c_type, ta,  tb,           beta == 0.f,  m,           n, k,
                    lda,     ldb,    ldc, alignment(A), alignment(B), alignment(C)};
  auto it = g_algos.find({device, key});
  if (it == g_algos.end()) {
    QV_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d.pref));
    QV_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(d.pref,
                                                         CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &kWorkspaceBytes, sizeof kWorkspaceBytes));
    const uint32_t al[3] = {static_cast<uint32_t>(key.align_a), static_cast<uint32_t>(key.align_b),
                            static_cast<uint32_t>(key.align_c)};
    QV_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al[0], sizeof al[0]));
    QV_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al[1], sizeof al[1]));
    QV_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al[2], sizeof al[2]));
    QV_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al[2], sizeof al[2]));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    QV_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt.handle, d.op, d.a, d.b, d.c, d.c, d.pref, 1,
                                                   &result, &found));
    QV_CHECK(found > 0, "cuBLASLt: no algorithm for a ", m, "x", n, "x", k, " product");
    it = g_algos.emplace(std::make_pair(device, key), result.algo).first;
  }
  QV_CUBLAS_CHECK(cublasLtMatmul(lt.handle, d.op, &alpha, A, d.a, B, d.b, &beta, C, d.c, C, d.c,
                                 &it->second, lt.workspace, kWorkspaceBytes, cuda_stream()));
}

// Row-major call through the column-major library (see the file comment). K == 0 still scales
// C by beta, as BLAS does.
void row_major(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const void* A, int64_t lda, const void* B, int64_t ldb, float beta, void* C,
               int64_t ldc, cudaDataType_t ab, cudaDataType_t c) {
  QV_CHECK(K > 0, "CUDA gemm: K must be positive, got ", K);
  lt_matmul(trans_b, trans_a, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc, ab, c);
}

constexpr int kThreads = 256;

__global__ void to_bf16_k(const float* s, __nv_bfloat16* d, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    d[i] = __float2bfloat16_rn(s[i]);
}
__global__ void to_float_k(const __nv_bfloat16* s, float* d, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    d[i] = __bfloat162float(s[i]);
}
// y[r, :] = bias for every row.
template <typename D>
__global__ void broadcast_bias_k(const D* bias, D* y, int64_t M, int64_t N) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < M * N;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = bias[i % N];
}

}  // namespace

template <typename T>
void broadcast_bias(const T* bias, T* y, int64_t M, int64_t N) {
  if (M * N <= 0) return;
  QV_LAUNCH(grid_for(M * N, kThreads), kThreads, 0, cuda_stream(), broadcast_bias_k)(bias, y, M, N);
  QV_CUDA_LAUNCHED();
}
template void broadcast_bias<float>(const float*, float*, int64_t, int64_t);

template <>
void gemm<float>(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                 int64_t ldc) {
  row_major(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, CUDA_R_32F, CUDA_R_32F);
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, float* C,
               int64_t ldc) {
  row_major(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, CUDA_R_16BF,
            CUDA_R_32F);
}

void convert_to_bf16(const float* src, bf16* dst, int64_t n) {
  if (n <= 0) return;
  QV_LAUNCH(grid_for(n, kThreads), kThreads, 0, cuda_stream(), to_bf16_k)(src, dev(dst), n);
  QV_CUDA_LAUNCHED();
}

void convert_to_float(const bf16* src, float* dst, int64_t n) {
  if (n <= 0) return;
  QV_LAUNCH(grid_for(n, kThreads), kThreads, 0, cuda_stream(), to_float_k)(dev(src), dst, n);
  QV_CUDA_LAUNCHED();
}

bool gemm_bf16_native() {
  return true;
}

double measure_peak_gflops(DType dtype) {
  QV_CHECK(dtype == DType::kF32 || dtype == DType::kBF16,
           "measure_peak_gflops: float32 or bfloat16 only");
  const bool b16 = dtype == DType::kBF16;
  const int device = current_device_index();
  const double datasheet = b16 ? bf16_dense_peak_tflops(device) : fp32_peak_tflops(device);
  if (datasheet > 0) return datasheet * 1e3;
  constexpr int64_t n = 4096;
  DeviceArray<float> c(n * n), a(b16 ? 1 : n * n), b(b16 ? 1 : n * n);
  DeviceArray<bf16> ab(b16 ? n * n : 1), bb(b16 ? n * n : 1);
  fill_zero(c.data(), c.bytes());
  fill_zero(a.data(), a.bytes()), fill_zero(b.data(), b.bytes());
  fill_zero(ab.data(), ab.bytes()), fill_zero(bb.data(), bb.bytes());
  auto run = [&] {
    if (b16)
      gemm_bf16(false, true, n, n, n, 1.f, ab.data(), n, bb.data(), n, 0.f, c.data(), n);
    else
      gemm<float>(false, true, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  };
  run();
  synchronize();
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    synchronize();
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * n * n * n / best / 1e9;
}

std::string gemm_description() {
  const size_t v = cublasLtGetVersion();
  const int device = current_device_index();
  return cat("cuBLASLt ", v / 10000, ".", (v / 100) % 100, ".", v % 100, " on ",
             describe_device(device));
}

}  // namespace qv::kernels::cuda
