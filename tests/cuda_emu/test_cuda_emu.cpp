// The CUDA emulator's own tests (built only with -DQWEN3VL_CUDA=EMU): the execution model the
// backend's kernels rely on, each checked against a host loop. A block reduction through shared
// memory and __syncthreads (wrong without a real barrier: the fibers run until they block), warp
// shuffles (xor, down, indexed), an atomic from every thread, dynamic shared memory, the launch
// errors a GPU reports (too many threads, too much shared memory), and the runtime's checks of
// the ranges it copies; WMMA products against a naive loop.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <mma.h>

#include <numeric>
#include <vector>

#include "kernels/cuda/common.cuh"

namespace {

namespace gpu = qv::kernels::cuda;

template <typename T>
std::vector<T> download(const gpu::DeviceArray<T>& d) {
  std::vector<T> h(static_cast<size_t>(d.size()));
  d.download(h.data());
  return h;
}

// Block sum of x (256 per block) through a shared array halved at each barrier.
__global__ void tree_sum_k(const float* x, float* out) {
  __shared__ float s[256];
  const unsigned t = threadIdx.x;
  s[t] = x[blockIdx.x * 256 + t];
  __syncthreads();
  for (unsigned half = 128; half > 0; half /= 2) {
    if (t < half) s[t] += s[t + half];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = s[0];
}

TEST(CudaEmu, BlockReductionWithSyncthreads) {
  std::vector<float> x(4 * 256);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 97) - 40.f;
  gpu::DeviceArray<float> dx(x.data(), static_cast<int64_t>(x.size())), out(4);
  QV_LAUNCH(4, 256, 0, nullptr, tree_sum_k)(dx.data(), out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<float> got = download(out);
  for (int b = 0; b < 4; ++b) {
    // The same pairwise tree on the host: bit-identical.
    std::vector<float> s(x.begin() + b * 256, x.begin() + (b + 1) * 256);
    for (size_t half = 128; half > 0; half /= 2)
      for (size_t t = 0; t < half; ++t) s[t] += s[t + half];
    EXPECT_EQ(got[static_cast<size_t>(b)], s[0]) << "block " << b;
  }
}

// Warp shuffles: xor butterfly (common.cuh's warp_sum), down reduction, indexed broadcast.
__global__ void shuffles_k(const int* x, int* xor_sum, int* down_sum, int* bcast) {
  const unsigned lane = threadIdx.x & 31;
  const int v = x[threadIdx.x];
  xor_sum[threadIdx.x] = gpu::warp_sum(v);
  int d = v;
  for (int o = 16; o > 0; o >>= 1) d += __shfl_down_sync(0xffffffffu, d, o);
  if (lane == 0) down_sum[threadIdx.x / 32] = d;
  bcast[threadIdx.x] = __shfl_sync(0xffffffffu, v, 31 - static_cast<int>(lane));
}

TEST(CudaEmu, WarpShuffles) {
  std::vector<int> x(64);
  for (int i = 0; i < 64; ++i) x[static_cast<size_t>(i)] = i * i - 7 * i;
  gpu::DeviceArray<int> dx(x.data(), 64), xs(64), ds(2), bc(64);
  QV_LAUNCH(1, 64, 0, nullptr, shuffles_k)(dx.data(), xs.data(), ds.data(), bc.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const auto hx = download(xs), hd = download(ds), hb = download(bc);
  for (int w = 0; w < 2; ++w) {
    const int sum = std::accumulate(x.begin() + w * 32, x.begin() + (w + 1) * 32, 0);
    EXPECT_EQ(hd[static_cast<size_t>(w)], sum);
    for (int l = 0; l < 32; ++l) {
      EXPECT_EQ(hx[static_cast<size_t>(w * 32 + l)], sum);
      EXPECT_EQ(hb[static_cast<size_t>(w * 32 + l)], x[static_cast<size_t>(w * 32 + 31 - l)]);
    }
  }
}

// Every thread of 3 blocks: atomicAdd of its index, atomicMin of a value with one minimum.
__global__ void atomics_k(unsigned long long* sum, int* mn) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(sum, static_cast<unsigned long long>(i));
  atomicMin(mn, static_cast<int>((i * 37) % 101) - 50);
}

TEST(CudaEmu, Atomics) {
  const unsigned long long zero = 0;
  const int big = 1 << 30;
  gpu::DeviceArray<unsigned long long> sum(&zero, 1);
  gpu::DeviceArray<int> mn(&big, 1);
  QV_LAUNCH(3, 128, 0, nullptr, atomics_k)(sum.data(), mn.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(download(sum)[0], 383ull * 384 / 2);
  EXPECT_EQ(download(mn)[0], -50);  // i = 0 gives 0 % 101 = 0
}

// Dynamic shared memory: each block reverses its slice through it.
__global__ void reverse_k(const float* x, float* y, int n) {
  QV_DYNAMIC_SHARED(float, buf);
  for (int i = static_cast<int>(threadIdx.x); i < n; i += static_cast<int>(blockDim.x))
    buf[i] = x[blockIdx.x * n + i];
  __syncthreads();
  for (int i = static_cast<int>(threadIdx.x); i < n; i += static_cast<int>(blockDim.x))
    y[blockIdx.x * n + i] = buf[n - 1 - i];
}

TEST(CudaEmu, DynamicSharedMemoryAndItsLimit) {
  // 200 KiB: needs the opt-in. (The emulator matches opt-ins by size, not by kernel: this size
  // is above every opt-in our kernels make, the largest being the tensor-core attention's dk / dv
  // kernel, 186 KiB at head_dim 128, attention_tc.cu.)
  const int n = 50 * 1024;
  std::vector<float> x(2 * static_cast<size_t>(n));
  std::iota(x.begin(), x.end(), 0.f);
  gpu::DeviceArray<float> dx(x.data(), 2 * n), dy(2 * n);
  const size_t bytes = sizeof(float) * n;
  QV_LAUNCH(2, 128, bytes, nullptr, reverse_k)(dx.data(), dy.data(), n);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue) << "200 KiB without the opt-in";
  ASSERT_EQ(cudaFuncSetAttribute(reverse_k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(bytes)),
            cudaSuccess);
  QV_LAUNCH(2, 128, bytes, nullptr, reverse_k)(dx.data(), dy.data(), n);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const auto y = download(dy);
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < n; i += 997)
      EXPECT_EQ(y[static_cast<size_t>(b * n + i)], x[static_cast<size_t>(b * n + n - 1 - i)]);
  QV_LAUNCH(1, 128, 228 * 1024, nullptr, reverse_k)(dx.data(), dy.data(), n);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue) << "over the 227 KiB of an H200";
}

TEST(CudaEmu, BadConfigurationsAndRangesAreErrors) {
  gpu::DeviceArray<float> dx(8), dy(8);
  QV_LAUNCH(1, 1025, 0, nullptr, reverse_k)(dx.data(), dy.data(), 8);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  QV_LAUNCH(0, 32, 0, nullptr, reverse_k)(dx.data(), dy.data(), 8);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  float host[16] = {};
  void* raw = nullptr;  // straight from cudaMalloc (the caching allocator rounds sizes up)
  ASSERT_EQ(cudaMalloc(&raw, 8 * sizeof(float)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(raw, host, 16 * sizeof(float), cudaMemcpyHostToDevice),
            cudaErrorInvalidValue)
      << "past the end of an 8-float allocation";
  EXPECT_EQ(cudaMemcpy(raw, host, 8 * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(cudaFree(raw), cudaSuccess);
  EXPECT_EQ(cudaFree(raw), cudaErrorInvalidDevicePointer) << "freed twice";
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevicePointer);
  EXPECT_EQ(cudaMemcpy(host, dx.data(), 8 * sizeof(float), cudaMemcpyHostToDevice),
            cudaErrorInvalidValue)
      << "a host pointer as the destination of a host-to-device copy";
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the error is cleared once read";
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, size_t{1} << 62), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);
}

// Two block sums through one scratch array, the second barrier of each left out: the warp that
// finishes the first sum first overwrites scratch before the other warps have read it. On a GPU
// this races; the emulator's warp-by-warp schedule makes the race show, in both orders.
__device__ float racy_block_sum(float v, float* scratch) {
  const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = gpu::warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < (blockDim.x >> 5) ? scratch[lane] : 0.f;
  return gpu::warp_sum(t);  // missing: __syncthreads() before scratch is written again
}
__global__ void two_sums_k(float* out) {
  __shared__ float scratch[32];
  const float a = racy_block_sum(1.f, scratch);
  const float b = racy_block_sum(2.f, scratch);
  out[threadIdx.x] = a + b;
}

TEST(CudaEmu, MissingBarrierShowsAsAWrongResult) {
  gpu::DeviceArray<float> out(256);
  QV_LAUNCH(1, 256, 0, nullptr, two_sums_k)(out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const auto h = download(out);
  int wrong = 0;
  for (float v : h) wrong += v != 256.f + 512.f;
  EXPECT_GT(wrong, 0) << "every thread got the race-free sum: the schedule hid the race";
}

// A kernel that returns early on some warps while the others use __syncthreads: exited threads
// no longer count, as on a GPU.
__global__ void early_exit_k(int* out) {
  __shared__ int s[64];
  if (threadIdx.x >= 64) return;
  s[threadIdx.x] = static_cast<int>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = s[63 - threadIdx.x];
}

TEST(CudaEmu, ExitedThreadsLeaveTheBarrier) {
  gpu::DeviceArray<int> out(64);
  QV_LAUNCH(1, 128, 0, nullptr, early_exit_k)(out.data());
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const auto h = download(out);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(h[static_cast<size_t>(i)], 63 - i);
}

// Mistakes a GPU would hang on or compute garbage from abort the emulated run with a message.
__global__ void divergent_barrier_k(int* out) {
  // Warp 0 and lane 32 wait at __syncthreads, lanes 33-63 at a __syncwarp that needs lane 32.
  if (threadIdx.x <= 32)
    __syncthreads();
  else
    __syncwarp();
  out[threadIdx.x] = 1;
}
__global__ void shuffle_from_exited_lane_k(int* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_sync(0xffffffffu, static_cast<int>(threadIdx.x), 5);
}

TEST(CudaEmuDeathTest, MistakesAbortWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  gpu::DeviceArray<int> out(64);
  // (Lambdas: the launch macro's commas would split EXPECT_DEATH's arguments.)
  auto diverge = [&] { QV_LAUNCH(1, 64, 0, nullptr, divergent_barrier_k)(out.data()); };
  EXPECT_DEATH(diverge(), "deadlock");
  auto exited = [&] { QV_LAUNCH(1, 32, 0, nullptr, shuffle_from_exited_lane_k)(out.data()); };
  EXPECT_DEATH(exited(), "did not take part");
  int host[4] = {};
  auto host_arg = [&] { QV_LAUNCH(1, 32, 0, nullptr, shuffle_from_exited_lane_k)(host); };
  EXPECT_DEATH(host_arg(), "is not device memory");
}

// ---- WMMA ----
// The emulated mma_sync adds the products in float in increasing k, the order of the host loops
// below, so the results are compared exactly (a GPU's tensor cores would need a tolerance).

std::vector<qv::bf16> random_bf16(size_t n, uint32_t seed) {
  std::vector<qv::bf16> v(n);
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    v[i] = qv::to_bf16(static_cast<float>(seed >> 8) / 16777216.f * 4.f - 2.f);
  }
  return v;
}

// A [M x K] and B [K x N] in the given storage orders; C = A B (+ C0 when given), row-major.
std::vector<float> reference_product(const std::vector<qv::bf16>& A, bool a_row,
                                     const std::vector<qv::bf16>& B, bool b_row, int M, int N,
                                     int K, const std::vector<float>* C0) {
  std::vector<float> C(static_cast<size_t>(M) * N);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float acc = C0 ? (*C0)[static_cast<size_t>(i) * N + j] : 0.f;
      for (int k = 0; k < K; ++k) {
        const float a = qv::to_float(A[static_cast<size_t>(a_row ? i * K + k : i + k * M)]);
        const float b = qv::to_float(B[static_cast<size_t>(b_row ? k * N + j : k + j * K)]);
        acc += a * b;
      }
      C[static_cast<size_t>(i) * N + j] = acc;
    }
  return C;
}

template <typename L>
constexpr bool kRowMajor = std::is_same_v<L, nvcuda::wmma::row_major>;

// One warp per 16 x 16 tile of C; A stored [M][K] (row_major, ld K) or column-major (ld M), B
// [K][N] (ld N) or column-major (ld K). C0, when given, is loaded as the starting accumulator
// (row-major); C is stored row-major or column-major (ld M); every element is then halved and
// doubled back on the fragment (position-independent element code).
template <typename LA, typename LB>
__global__ void wmma_gemm_k(const __nv_bfloat16* A, const __nv_bfloat16* B, const float* C0,
                            float* C, int M, int N, int K, bool c_col_major) {
  namespace wmma = nvcuda::wmma;
  const int tile = static_cast<int>(blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32);
  const int tm = tile / (N / 16), tn = tile % (N / 16);
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, LA> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, LB> b;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  if (C0)
    wmma::load_matrix_sync(acc, C0 + tm * 16 * N + tn * 16, N, wmma::mem_row_major);
  else
    wmma::fill_fragment(acc, 0.f);
  for (int k0 = 0; k0 < K; k0 += 16) {
    if constexpr (kRowMajor<LA>)
      wmma::load_matrix_sync(a, A + tm * 16 * K + k0, K);
    else
      wmma::load_matrix_sync(a, A + tm * 16 + k0 * M, M);
    if constexpr (kRowMajor<LB>)
      wmma::load_matrix_sync(b, B + k0 * N + tn * 16, N);
    else
      wmma::load_matrix_sync(b, B + k0 + tn * 16 * K, K);
    wmma::mma_sync(acc, a, b, acc);
  }
  for (int i = 0; i < acc.num_elements; ++i) acc.x[i] *= 0.5f;
  for (int i = 0; i < acc.num_elements; ++i) acc.x[i] *= 2.f;  // exact: powers of two
  if (c_col_major)
    wmma::store_matrix_sync(C + tm * 16 + tn * 16 * M, acc, M, wmma::mem_col_major);
  else
    wmma::store_matrix_sync(C + tm * 16 * N + tn * 16, acc, N, wmma::mem_row_major);
}

template <typename LA, typename LB>
void check_wmma_product(int M, int N, int K, int warps_per_block, bool with_c0, bool c_col_major) {
  const auto A = random_bf16(static_cast<size_t>(M) * K, 11u + static_cast<uint32_t>(M));
  const auto B = random_bf16(static_cast<size_t>(K) * N, 29u + static_cast<uint32_t>(N));
  std::vector<float> C0(static_cast<size_t>(M) * N);
  for (size_t i = 0; i < C0.size(); ++i) C0[i] = static_cast<float>(i % 13) * 0.25f - 1.f;
  gpu::DeviceArray<qv::bf16> dA(A.data(), static_cast<int64_t>(A.size()));
  gpu::DeviceArray<qv::bf16> dB(B.data(), static_cast<int64_t>(B.size()));
  gpu::DeviceArray<float> dC0(C0.data(), static_cast<int64_t>(C0.size()));
  gpu::DeviceArray<float> dC(static_cast<int64_t>(M) * N);
  const int tiles = (M / 16) * (N / 16);
  QV_LAUNCH(tiles / warps_per_block, 32 * warps_per_block, 0, nullptr, wmma_gemm_k<LA, LB>)
  (gpu::dev(dA.data()), gpu::dev(dB.data()), with_c0 ? dC0.data() : nullptr, dC.data(), M, N, K,
   c_col_major);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const auto want =
      reference_product(A, kRowMajor<LA>, B, kRowMajor<LB>, M, N, K, with_c0 ? &C0 : nullptr);
  const auto got = download(dC);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      const float g = got[static_cast<size_t>(c_col_major ? i + j * M : i * N + j)];
      ASSERT_EQ(g, want[static_cast<size_t>(i) * N + j]) << "C(" << i << ", " << j << ")";
    }
}

TEST(CudaEmuWmma, Single16x16x16Tile) {
  namespace wmma = nvcuda::wmma;
  check_wmma_product<wmma::row_major, wmma::row_major>(16, 16, 16, 1, false, false);
  check_wmma_product<wmma::col_major, wmma::col_major>(16, 16, 16, 1, true, false);
  check_wmma_product<wmma::row_major, wmma::col_major>(16, 16, 16, 1, true, true);
}

TEST(CudaEmuWmma, Tiled64x64x32AllLayouts) {
  namespace wmma = nvcuda::wmma;
  check_wmma_product<wmma::row_major, wmma::row_major>(64, 64, 32, 4, false, false);
  check_wmma_product<wmma::row_major, wmma::col_major>(64, 64, 32, 4, true, true);
  check_wmma_product<wmma::col_major, wmma::row_major>(64, 64, 32, 2, false, true);
  check_wmma_product<wmma::col_major, wmma::col_major>(64, 64, 32, 8, true, false);
}

}  // namespace
