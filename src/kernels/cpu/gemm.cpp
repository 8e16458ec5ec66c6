#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/buffer_pool.h"
#include "core/cpu_features.h"
#include "core/error.h"
#include "core/log.h"

namespace qv::kernels::cpu {
namespace {

void check(dnnl_status_t s, const char* what) {
  QV_CHECK(s == dnnl_success, "oneDNN: ", what, " failed (status ", static_cast<int>(s), ")");
}

// One engine and stream for the process.
struct Dnnl {
  dnnl_engine_t engine = nullptr;
  dnnl_stream_t stream = nullptr;
  Dnnl() {
    // MatmulCache below is the one cache of primitives (bounded); oneDNN's own would keep every
    // shape's JIT code for up to 1024 shapes.
    check(dnnl_set_primitive_cache_capacity(0), "set_primitive_cache_capacity");
    check(dnnl_engine_create(&engine, dnnl_cpu, 0), "engine_create");
    check(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags), "stream_create");
  }
};

Dnnl& dnnl() {
  static Dnnl d;
  return d;
}

thread_local bool t_in_execution = false;  // in_bf16_matmul_execution()

// A bf16 matmul primitive for one shape, with memory objects whose data handles are set per call.
struct BF16Matmul {
  dnnl_primitive_t prim = nullptr;
  dnnl_memory_t a = nullptr, b = nullptr, c = nullptr;
  std::string impl;
  bool usable = false;  // false: oneDNN offers only its reference loop for it
};

using MatmulKey =
    std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, bool>;

BF16Matmul make_bf16_matmul(const MatmulKey& key) {
  const auto [ta, tb, M, N, K, lda, ldb, ldc, alpha, accumulate] = key;
  dnnl_memory_desc_t ad, bd, cd;
  const dnnl_dims_t a_dims = {M, K}, b_dims = {K, N}, c_dims = {M, N};
  const dnnl_dims_t a_strides = {ta ? 1 : lda, ta ? lda : 1};
  const dnnl_dims_t b_strides = {tb ? 1 : ldb, tb ? ldb : 1};
  const dnnl_dims_t c_strides = {ldc, 1};
  check(dnnl_memory_desc_init_by_strides(&ad, 2, a_dims, dnnl_bf16, a_strides), "memory desc A");
  check(dnnl_memory_desc_init_by_strides(&bd, 2, b_dims, dnnl_bf16, b_strides), "memory desc B");
  check(dnnl_memory_desc_init_by_strides(&cd, 2, c_dims, dnnl_f32, c_strides), "memory desc C");
  dnnl_matmul_desc_t desc;
  check(dnnl_matmul_desc_init(&desc, &ad, &bd, nullptr, &cd), "matmul_desc_init");
  dnnl_primitive_attr_t attr;
  check(dnnl_primitive_attr_create(&attr), "attr_create");
  if (alpha != 1.0f) check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha), "scales");
  if (accumulate) {
    dnnl_post_ops_t po;
    check(dnnl_post_ops_create(&po), "post_ops_create");
    check(dnnl_post_ops_append_sum(po, 1.0f), "append_sum");
    check(dnnl_primitive_attr_set_post_ops(attr, po), "set_post_ops");
    dnnl_post_ops_destroy(po);
  }
  BF16Matmul m;
  dnnl_primitive_desc_t pd = nullptr;
  const dnnl_status_t s = dnnl_primitive_desc_create(&pd, &desc, attr, dnnl().engine, nullptr);
  dnnl_primitive_attr_destroy(attr);
  if (s != dnnl_success) return m;  // unimplemented here: the caller widens to float
  const char* impl = nullptr;
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  m.impl = impl ? impl : "?";
  m.usable = m.impl.rfind("ref", 0) != 0;
  if (m.usable) {
    check(dnnl_primitive_create(&m.prim, pd), "primitive_create");
    check(dnnl_memory_create(&m.a, &ad, dnnl().engine, DNNL_MEMORY_NONE), "memory A");
    check(dnnl_memory_create(&m.b, &bd, dnnl().engine, DNNL_MEMORY_NONE), "memory B");
    check(dnnl_memory_create(&m.c, &cd, dnnl().engine, DNNL_MEMORY_NONE), "memory C");
  }
  dnnl_primitive_desc_destroy(pd);
  return m;
}

// Primitives by shape, least recently used evicted beyond kMaxEntries. Each primitive holds its
// JIT code (~0.7 MiB measured), so the bound matters when shapes vary (the vision tower's row
// count follows the images of each batch); training cycles through a few dozen shapes a step, and
// a mixture-of-experts model adds 9 piece shapes per expert product (kernels/cpu/moe.cpp).
class MatmulCache {
 public:
  MatmulCache() = default;
  MatmulCache(const MatmulCache&) = delete;
  MatmulCache& operator=(const MatmulCache&) = delete;
  ~MatmulCache() {
    while (!cache_.empty()) evict_oldest();
  }
  // Runs the product on oneDNN; false when no usable primitive exists for this shape.
  bool run(const MatmulKey& key, const bf16* A, const bf16* B, float* C) {
    std::lock_guard<std::mutex> lock(mu_);
    BF16Matmul& m = find_or_make(key);
    if (!m.usable) return false;
    dnnl_memory_set_data_handle(m.a, const_cast<bf16*>(A));
    dnnl_memory_set_data_handle(m.b, const_cast<bf16*>(B));
    dnnl_memory_set_data_handle(m.c, C);
    const dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_SRC, m.a}, {DNNL_ARG_WEIGHTS, m.b}, {DNNL_ARG_DST, m.c}};
    t_in_execution = true;
    const dnnl_status_t s = dnnl_primitive_execute(m.prim, dnnl().stream, 3, args);
    t_in_execution = false;
    check(s, "matmul execute");
    check(dnnl_stream_wait(dnnl().stream), "stream_wait");
    ++stats_.executed;
    return true;
  }
  Bf16MatmulStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void prepare(const MatmulKey& key) {
    std::lock_guard<std::mutex> lock(mu_);
    find_or_make(key);
  }
  std::string impl_of(const MatmulKey& key) {
    std::lock_guard<std::mutex> lock(mu_);
    const BF16Matmul& m = find_or_make(key);
    return m.usable ? m.impl : "";
  }

 private:
  static constexpr size_t kMaxEntries = 128;
  struct Entry {
    BF16Matmul matmul;
    uint64_t last_use = 0;
  };
  BF16Matmul& find_or_make(const MatmulKey& key) {
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      if (cache_.size() >= kMaxEntries) evict_oldest();
      it = cache_.emplace(key, Entry{make_bf16_matmul(key), 0}).first;
      ++stats_.built;
    }
    it->second.last_use = ++clock_;
    return it->second.matmul;
  }
  void evict_oldest() {
    auto oldest = cache_.begin();
    for (auto it = cache_.begin(); it != cache_.end(); ++it)
      if (it->second.last_use < oldest->second.last_use) oldest = it;
    BF16Matmul& m = oldest->second.matmul;
    if (m.prim) dnnl_primitive_destroy(m.prim);
    for (dnnl_memory_t mem : {m.a, m.b, m.c})
      if (mem) dnnl_memory_destroy(mem);
    cache_.erase(oldest);
  }
  std::mutex mu_;
  std::map<MatmulKey, Entry> cache_;
  uint64_t clock_ = 0;
  Bf16MatmulStats stats_;
};

MatmulCache& matmul_cache() {
  static MatmulCache c;
  return c;
}

GemmInfo choose() {
  const CpuFeatures& f = cpu_features();
  GemmInfo g;
  const char* env = std::getenv("QWEN3VL_GEMM");
  if (env && std::strcmp(env, "openblas") == 0)
    g.f32_engine = GemmEngine::kOpenBlas;
  else
    QV_CHECK(!env || !*env || std::strcmp(env, "onednn") == 0,
             "QWEN3VL_GEMM must be 'onednn' or 'openblas', got '", env, "'");
  g.f32_kernel = g.f32_engine == GemmEngine::kOpenBlas ? "OpenBLAS sgemm"
                                                       : cat("oneDNN sgemm (JIT, ",
                                                             f.avx512_core() ? "AVX-512"
                                                             : f.avx2        ? "AVX2"
                                                                             : "SSE4.1",
                                                             ")");
  if (f.avx512_core()) {
    // Probe a decoder-sized product: which kernel oneDNN picks tells the path in use.
    const std::string impl =
        matmul_cache().impl_of({false, true, 256, 256, 256, 256, 256, 256, 1.0f, false});
    g.bf16_native = !impl.empty();
    if (g.bf16_native) g.bf16_kernel = "oneDNN matmul " + impl;
  }
  if (!g.bf16_native)
    g.bf16_kernel = "none native: bf16 inputs widened to float (" + g.f32_kernel + ")";
  return g;
}

template <typename T>
void fill_beta(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  // Nothing to multiply: C = beta * C, with beta == 0 meaning "overwrite" as in BLAS.
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
}

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (gemm_info().f32_engine == GemmEngine::kOpenBlas) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  check(dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc),
        "sgemm");
}

}  // namespace

std::string GemmInfo::describe() const {
  const CpuFeatures& f = cpu_features();
  return cat("CPU ", f.brand.empty() ? f.vendor : f.brand, " | ISA ", f.isa(), " | float GEMM ",
             f32_kernel, " | bf16 GEMM ", bf16_kernel);
}

const GemmInfo& gemm_info() {
  static const GemmInfo g = choose();
  return g;
}

template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return fill_beta(M, N, beta, C, ldc);
  sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                  int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return fill_beta(M, N, beta, C, ldc);
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16_widened(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta, float* C,
                       int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return fill_beta(M, N, beta, C, ldc);
  // Widen the stored extents of both operands, then multiply in float.
  const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
  const int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
  PoolVector<float> a((a_rows - 1) * lda + a_cols), b((b_rows - 1) * ldb + b_cols);
  to_float(A, a.data(), static_cast<int64_t>(a.size()));
  to_float(B, b.data(), static_cast<int64_t>(b.size()));
  sgemm(ta, tb, M, N, K, alpha, a.data(), lda, b.data(), ldb, beta, C, ldc);
}

void gemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const bf16* A,
               int64_t lda, const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return fill_beta(M, N, beta, C, ldc);
  if (gemm_info().bf16_native && (beta == 0.0f || beta == 1.0f) &&
      matmul_cache().run({ta, tb, M, N, K, lda, ldb, ldc, alpha, beta == 1.0f}, A, B, C))
    return;
  gemm_bf16_widened(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_bf16_prepare(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, int64_t lda,
                       int64_t ldb, float beta, int64_t ldc) {
  if (M <= 0 || N <= 0 || K <= 0 || !gemm_info().bf16_native || (beta != 0.0f && beta != 1.0f))
    return;
  matmul_cache().prepare({ta, tb, M, N, K, lda, ldb, ldc, alpha, beta == 1.0f});
}

bool in_bf16_matmul_execution() {
  return t_in_execution;
}

Bf16MatmulStats bf16_matmul_stats() {
  return matmul_cache().stats();
}

double measure_peak_gflops(DType dtype) {
  QV_CHECK(dtype == DType::kF32 || dtype == DType::kBF16, "measure_peak_gflops: F32 or BF16");
  static std::once_flag once[2];
  static double peak[2] = {0, 0};
  const int i = dtype == DType::kBF16 ? 1 : 0;
  std::call_once(once[i], [&] {
    const int64_t n = 2048;
    std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
    std::vector<bf16> ah(n * n, to_bf16(0.5f)), bh(n * n, to_bf16(0.25f));
    auto run = [&] {
      if (i == 1)
        gemm_bf16(false, true, n, n, n, 1.0f, ah.data(), n, bh.data(), n, 0.0f, c.data(), n);
      else
        gemm<float>(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    };
    run();  // warm-up: JIT, page faults, caches
    double best = 1e30;
    for (int r = 0; r < 4; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      run();
      best = std::min(best,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    peak[i] = 2.0 * n * n * n / best / 1e9;
  });
  return peak[i];
}

void convert_to_bf16(const float* src, bf16* dst, int64_t n) {
  to_bf16(src, dst, n);
}

}  // namespace qv::kernels::cpu
