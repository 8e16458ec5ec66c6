// bfloat16: conversions against a brute-force nearest-value reference, the bf16 GEMM against a
// float64 loop over the same (bf16) inputs, and bf16 dense layers against their float versions
// within the bound that bf16's 8-bit significand gives. Also the engine's choice and report.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <limits>
#include <random>

#include "core/bf16.h"
#include "core/cpu_features.h"
#include "kernel_test_utils.h"
#include "kernels/cpu/gemm.h"
#include "kernels/gemm.h"
#include "kernels/linear.h"

namespace qv {
namespace {

using testing::random_vector;

// The bf16 value nearest to f (ties to the even significand), found by comparing the two
// candidates around f in double: independent of the bit trick under test.
uint16_t nearest_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
  const double d = f, dl = std::bit_cast<float>(lo);
  const double dh = (hi & 0x7f800000u) == 0x7f800000u && (lo & 0x7fffffffu) == 0x7f7f0000u
                        ? std::ldexp(1.0, 128) * (f < 0 ? -1 : 1)  // rounds up to infinity
                        : static_cast<double>(std::bit_cast<float>(hi));
  const double el = std::fabs(d - dl), eh = std::fabs(dh - d);
  if (el < eh) return static_cast<uint16_t>(lo >> 16);
  if (eh < el) return static_cast<uint16_t>(hi >> 16);
  return static_cast<uint16_t>(((lo >> 16) & 1) ? hi >> 16 : lo >> 16);
}

TEST(BF16, RoundsToNearestEvenOnRandomAndEdgeBitPatterns) {
  std::mt19937 rng(7);
  std::vector<float> v;
  for (int i = 0; i < 200000; ++i) {
    const float f = std::bit_cast<float>(static_cast<uint32_t>(rng()));
    if (std::isfinite(f)) v.push_back(f);
  }
  // Exact ties (low half 0x8000) with even and odd kept bits, the largest finite values, zeros
  // and subnormals.
  for (uint32_t base : {0x3f800000u, 0x3f810000u, 0x00010000u, 0x80020000u, 0x7f7e0000u})
    for (uint32_t low : {0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu})
      v.push_back(std::bit_cast<float>(base | low));
  v.push_back(0.0f);
  v.push_back(-0.0f);
  v.push_back(std::numeric_limits<float>::denorm_min());
  std::vector<bf16> bulk(v.size());
  to_bf16(v.data(), bulk.data(), static_cast<int64_t>(v.size()));
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t want = nearest_bf16(v[i]);
    ASSERT_EQ(to_bf16(v[i]).bits, want) << std::hex << std::bit_cast<uint32_t>(v[i]);
    ASSERT_EQ(bulk[i].bits, want) << std::hex << std::bit_cast<uint32_t>(v[i]);
  }
}

TEST(BF16, SpecialValuesAndWidening) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(to_bf16(inf).bits, 0x7f80);
  EXPECT_EQ(to_bf16(-inf).bits, 0xff80);
  const float big = std::bit_cast<float>(0x7f7fffffu);  // rounds past the largest bf16
  EXPECT_EQ(to_bf16(big).bits, 0x7f80);
  const float nan = std::bit_cast<float>(0x7f800001u);  // a NaN whose top half alone is inf
  EXPECT_TRUE(std::isnan(to_float(to_bf16(nan))));
  EXPECT_TRUE(std::isnan(to_float(to_bf16(-nan))));
  EXPECT_TRUE(std::signbit(to_float(to_bf16(-nan))));
  std::vector<float> f = {nan, -nan, 1.0f};
  std::vector<bf16> h(3);
  to_bf16(f.data(), h.data(), 3);
  EXPECT_TRUE(std::isnan(to_float(h[0])));
  EXPECT_TRUE(std::isnan(to_float(h[1])));
  // Widening is exact: every bf16 bit pattern round-trips.
  std::vector<bf16> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i].bits = static_cast<uint16_t>(i);
  std::vector<float> wide(65536);
  to_float(all.data(), wide.data(), 65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    if (std::isnan(wide[i])) continue;
    ASSERT_EQ(std::bit_cast<uint32_t>(wide[i]), i << 16);
    ASSERT_EQ(to_bf16(wide[i]).bits, i);
  }
}

std::vector<bf16> to_bf16_vector(const std::vector<double>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_bf16(static_cast<float>(v[i]));
  return out;
}

using BF16Gemm = void (*)(bool, bool, int64_t, int64_t, int64_t, float, const bf16*, int64_t,
                          const bf16*, int64_t, float, float*, int64_t);

// The bf16 GEMM computes exact products of its bf16 inputs (8 x 8 significant bits fit in a
// float) and sums them in float: against a float64 sum of the same products, each output may
// differ by at most K * 2^-24 * sum_k |a_k b_k| (float accumulation, any order); we allow 2x.
TEST(GemmBF16, MatchesFloat64OverTheSameInputsForEveryLayout) {
  // The engine's path on this processor, and the widened-float path of processors without bf16.
  for (BF16Gemm gemm : {&kernels::gemm_bf16, &kernels::cpu::gemm_bf16_widened})
    for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                           {7, 13, 5},
                           {33, 70, 45},
                           {64, 256, 64},
                           {130, 96, 300}})
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (float beta : {0.0f, 1.0f})
            for (float alpha : {1.0f, 0.5f}) {
              const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
              const auto A = to_bf16_vector(random_vector((ta ? K : M) * lda, 1));
              const auto B = to_bf16_vector(random_vector((tb ? N : K) * ldb, 2));
              const auto C0 = random_vector(M * ldc, 3);
              std::vector<float> C(C0.begin(), C0.end());
              gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
              for (int64_t i = 0; i < M; ++i)
                for (int64_t j = 0; j < N; ++j) {
                  double s = 0, s_abs = 0;
                  for (int64_t k = 0; k < K; ++k) {
                    const double a = to_float(ta ? A[k * lda + i] : A[i * lda + k]);
                    const double b = to_float(tb ? B[j * ldb + k] : B[k * ldb + j]);
                    s += a * b;
                    s_abs += std::fabs(a * b);
                  }
                  const double want = alpha * s + beta * static_cast<float>(C0[i * ldc + j]);
                  const double bound = 2.0 * K * std::ldexp(1.0, -24) * (s_abs + std::fabs(want));
                  ASSERT_NEAR(C[i * ldc + j], want, bound + 1e-30)
                      << M << "x" << N << "x" << K << " ta " << ta << " tb " << tb << " beta "
                      << beta << " alpha " << alpha << " at " << i << "," << j;
                }
              // Padding columns of C are untouched.
              for (int64_t i = 0; i < M; ++i)
                for (int64_t j = N; j < ldc; ++j)
                  ASSERT_EQ(C[i * ldc + j], static_cast<float>(C0[i * ldc + j]));
            }
}

TEST(GemmBF16, EmptyInnerDimensionScalesOrClears) {
  std::vector<bf16> A(4), B(4);
  std::vector<float> C = {1, 2, 3, 4};
  kernels::gemm_bf16(false, false, 2, 2, 0, 1.0f, A.data(), 1, B.data(), 2, 1.0f, C.data(), 2);
  EXPECT_EQ(C, (std::vector<float>{1, 2, 3, 4}));
  kernels::gemm_bf16(false, false, 2, 2, 0, 1.0f, A.data(), 1, B.data(), 2, 0.0f, C.data(), 2);
  EXPECT_EQ(C, (std::vector<float>{0, 0, 0, 0}));
}

// A bf16 dense layer rounds x and w to bf16 (relative error <= 2^-8 each), so each product is
// off by at most (1 + 2^-8)^2 - 1 < 2^-7 + 2^-16 of its size: |y_bf16 - y| <= 2^-7.0 * sum_k
// |x_k w_k| + float accumulation. Measured: the worst error is about a quarter of that bound;
// the test also requires a nonzero error, which proves the bf16 path ran.
double bf16_bound(const std::vector<float>& x, const std::vector<float>& w, int64_t m, int64_t n,
                  int64_t K) {
  double s = 0;
  for (int64_t k = 0; k < K; ++k) s += std::fabs(static_cast<double>(x[m * K + k]) * w[n * K + k]);
  return (std::ldexp(1.0, -7) + std::ldexp(1.0, -15) + K * std::ldexp(1.0, -23)) * s;
}

TEST(LinearBF16, ForwardAndBackwardWithinTheBF16Bound) {
  const int64_t M = 37, K = 96, N = 53;
  const auto xd = random_vector(M * K, 11), wd = random_vector(N * K, 12),
             dyd = random_vector(M * N, 13), bd = random_vector(N, 14);
  const std::vector<float> x(xd.begin(), xd.end()), w(wd.begin(), wd.end()),
      dy(dyd.begin(), dyd.end()), b(bd.begin(), bd.end());
  std::vector<bf16> wb(w.size());
  to_bf16(w.data(), wb.data(), static_cast<int64_t>(w.size()));
  const kernels::Weight weight{w.data(), wb.data()};
  // Forward.
  std::vector<float> y32(M * N), y16(M * N);
  kernels::linear_forward<float>(x.data(), w.data(), b.data(), y32.data(), M, K, N);
  kernels::linear_forward(x.data(), weight, b.data(), y16.data(), M, K, N);
  double worst = 0, worst_share = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const double err = std::fabs(y16[m * N + n] - y32[m * N + n]);
      const double bound = bf16_bound(x, w, m, n, K);
      ASSERT_LE(err, bound) << m << "," << n;
      worst = std::max(worst, err);
      worst_share = std::max(worst_share, err / bound);
    }
  std::printf("[bf16 linear] worst forward error %.3g = %.2f of the bound\n", worst, worst_share);
  EXPECT_GT(worst, 0.0);
  // Backward: dx = dy . w (sum over N), dw = dy^T . x (sum over M); dbias stays float exact.
  std::vector<float> dx32(M * K), dx16(M * K), dw32(N * K, 0.5f), dw16(N * K, 0.5f), db32(N),
      db16(N);
  kernels::linear_backward<float>(x.data(), w.data(), dy.data(), dx32.data(), dw32.data(),
                                  db32.data(), M, K, N);
  kernels::linear_backward(x.data(), weight, dy.data(), dx16.data(), dw16.data(), db16.data(), M, K,
                           N);
  EXPECT_EQ(db16, db32);
  // Transposed views of the same bound: dx[m,k] sums dy[m,n] w[n,k] over n.
  std::vector<float> wt(K * N), xt(K * M), dyt(N * M);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) wt[k * N + n] = w[n * K + k];
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) xt[k * M + m] = x[m * K + k];
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) dyt[n * M + m] = dy[m * N + n];
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k)
      ASSERT_LE(std::fabs(dx16[m * K + k] - dx32[m * K + k]), bf16_bound(dy, wt, m, k, N));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      ASSERT_LE(std::fabs(dw16[n * K + k] - dw32[n * K + k]), bf16_bound(dyt, xt, n, k, M));
  // With accumulate_dx the product is added to what dx holds.
  std::vector<float> acc(M * K, 1.0f);
  kernels::linear_backward(x.data(), weight, dy.data(), acc.data(), nullptr, nullptr, M, K, N,
                           /*accumulate_dx=*/true);
  for (int64_t i = 0; i < M * K; ++i) ASSERT_NEAR(acc[i], dx16[i] + 1.0f, 1e-5f);
  // A dy already in bf16 (the classifier's, from cross_entropy) gives the same bits as the
  // float dy that rounds to it.
  std::vector<bf16> dyb(M * N);
  to_bf16(dy.data(), dyb.data(), M * N);
  std::vector<float> dx_b(M * K, 7.0f), dw_b(N * K, 0.5f);
  kernels::linear_backward(x.data(), weight, dyb.data(), N, dx_b.data(), dw_b.data(), M, K, N);
  EXPECT_EQ(dx_b, dx16);
  EXPECT_EQ(dw_b, dw16);
  // And with dy's rows 2 N apart (the classifier's in-place bf16 gradient): the same bits.
  std::vector<bf16> strided(M * 2 * N, bf16{0x7fc0});  // NaN between the rows
  for (int64_t m = 0; m < M; ++m)
    std::copy(dyb.begin() + m * N, dyb.begin() + (m + 1) * N, strided.begin() + m * 2 * N);
  std::vector<float> dx_s(M * K, 7.0f), dw_s(N * K, 0.5f);
  kernels::linear_backward(x.data(), weight, strided.data(), 2 * N, dx_s.data(), dw_s.data(), M, K,
                           N);
  EXPECT_EQ(dx_s, dx16);
  EXPECT_EQ(dw_s, dw16);
}

TEST(GemmEngine, ReportsTheProcessorAndAPathThatFitsIt) {
  const CpuFeatures& f = cpu_features();
  if (f.avx512_bf16 || f.avx512bw) {
    EXPECT_TRUE(f.avx512f);
  }
  if (f.avx512f) {
    EXPECT_TRUE(f.avx2);
  }
  const kernels::cpu::GemmInfo& g = kernels::cpu::gemm_info();
  const std::string d = g.describe();
  std::printf("[gemm] %s\n", d.c_str());
  EXPECT_NE(d.find(f.isa()), std::string::npos);
  // bf16 products run natively exactly where AVX-512 exists (oneDNN's bf16 kernels need it).
  EXPECT_EQ(g.bf16_native, f.avx512_core());
  EXPECT_GT(kernels::measure_peak_gflops(DType::kF32), 0.0);
}

}  // namespace
}  // namespace qv
