// Micro-benchmarks of the CPU kernels (float). Built with -DQWEN3VL_BUILD_BENCH=ON; run e.g.
//   OMP_NUM_THREADS=2 build/bench_kernels --benchmark_filter=Attention
// FLOP rates count 2 flops per multiply-add of the matrix products only.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/activations.h"
#include "kernels/attention.h"
#include "kernels/cpu/attention_tuning.h"
#include "kernels/cross_entropy.h"
#include "kernels/linear.h"
#include "kernels/norms.h"

namespace {

using namespace qv::kernels;

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void set_gflops(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Args: M, K, N.
void BM_LinearForward(benchmark::State& state) {
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  const auto x = random_floats(M * K, 1), w = random_floats(N * K, 2), b = random_floats(N, 3);
  std::vector<float> y(M * N);
  for (auto _ : state) {
    linear_forward<float>(x.data(), w.data(), b.data(), y.data(), M, K, N);
    benchmark::DoNotOptimize(y.data());
  }
  set_gflops(state, 2.0 * M * K * N);
}
BENCHMARK(BM_LinearForward)->Args({2048, 256, 512})->Args({2048, 2048, 2048})->UseRealTime();

void BM_LinearBackward(benchmark::State& state) {
  const int64_t M = state.range(0), K = state.range(1), N = state.range(2);
  const auto x = random_floats(M * K, 1), w = random_floats(N * K, 2), dy = random_floats(M * N, 3);
  std::vector<float> dx(M * K), dw(N * K), db(N);
  for (auto _ : state) {
    linear_backward<float>(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), M, K, N);
    benchmark::DoNotOptimize(dw.data());
  }
  set_gflops(state, 4.0 * M * K * N);
}
BENCHMARK(BM_LinearBackward)->Args({2048, 256, 512})->Args({2048, 2048, 2048})->UseRealTime();

struct AttentionData {
  AttentionDims dims;
  std::vector<int64_t> cu;
  std::vector<float> q, k, v, out, lse, dout, dq, dk, dv;
  // Args: tokens per sequence, number of sequences, heads, kv heads, head_dim, causal.
  explicit AttentionData(const benchmark::State& state) {
    const int64_t L = state.range(0), seqs = state.range(1);
    dims.tokens = L * seqs;
    dims.heads = state.range(2);
    dims.kv_heads = state.range(3);
    dims.head_dim = state.range(4);
    dims.causal = state.range(5) != 0;
    dims.scale = 1 / std::sqrt(static_cast<double>(dims.head_dim));
    for (int64_t s = 0; s <= seqs; ++s) cu.push_back(s * L);
    const int64_t N = dims.tokens, qn = N * dims.heads * dims.head_dim,
                  kn = N * dims.kv_heads * dims.head_dim;
    q = random_floats(qn, 1, -2, 2);
    k = random_floats(kn, 2, -2, 2);
    v = random_floats(kn, 3);
    dout = random_floats(qn, 4);
    out.resize(qn);
    lse.resize(N * dims.heads);
    dq.resize(qn);
    dk.resize(kn);
    dv.resize(kn);
  }
  void forward() {
    attention_forward<float>(q.data(), k.data(), v.data(), out.data(), lse.data(), cu.data(),
                             static_cast<int64_t>(cu.size()) - 1, dims);
  }
  // Products per (query, key) pair: 2 in the forward, 5 in the backward, each 2 * hd flops.
  double pair_flops(int64_t products) const {
    const double L = static_cast<double>(cu[1]), seqs = static_cast<double>(cu.size() - 1);
    const double pairs = seqs * (dims.causal ? L * (L + 1) / 2 : L * L) * dims.heads;
    return pairs * 2.0 * dims.head_dim * products;
  }
};

void BM_AttentionForward(benchmark::State& state) {
  AttentionData a(state);
  for (auto _ : state) {
    a.forward();
    benchmark::DoNotOptimize(a.out.data());
  }
  set_gflops(state, a.pair_flops(2));
}

// Extra arg 6: plan (0 auto, 1 one task per (sequence, kv head), 2 split dk/dv and dq passes).
void BM_AttentionBackward(benchmark::State& state) {
  AttentionData a(state);
  a.forward();
  AttentionTuning tuning;
  tuning.plan = static_cast<AttentionBackwardPlan>(state.range(6));
  for (auto _ : state) {
    attention_backward_tuned<float>(a.q.data(), a.k.data(), a.v.data(), a.out.data(), a.lse.data(),
                                    a.dout.data(), a.dq.data(), a.dk.data(), a.dv.data(),
                                    a.cu.data(), static_cast<int64_t>(a.cu.size()) - 1, a.dims,
                                    nullptr, tuning);
    benchmark::DoNotOptimize(a.dq.data());
  }
  set_gflops(state, a.pair_flops(5));
}

// L, seqs, heads, kv_heads, hd, causal
BENCHMARK(BM_AttentionForward)
    ->Args({2048, 1, 4, 2, 64, 1})
    ->Args({2048, 1, 4, 2, 64, 0})
    ->Args({8192, 1, 4, 2, 64, 1})
    ->Args({1024, 4, 16, 16, 72, 0})  // vision: 4 images of 1024 patches, head_dim 72
    ->Args({2048, 1, 16, 8, 128, 1})  // 2B decoder layer shape
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_AttentionBackward)
    ->Args({2048, 1, 4, 2, 64, 1, 0})
    ->Args({2048, 1, 4, 2, 64, 1, 1})
    ->Args({2048, 1, 4, 2, 64, 1, 2})
    ->Args({2048, 1, 4, 2, 64, 0, 0})
    ->Args({8192, 1, 4, 2, 64, 1, 0})
    ->Args({1024, 4, 16, 16, 72, 0, 0})
    ->Args({2048, 1, 16, 8, 128, 1, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Args: rows, D.
void BM_RmsNormForward(benchmark::State& state) {
  const int64_t rows = state.range(0), D = state.range(1);
  const auto x = random_floats(rows * D, 1), w = random_floats(D, 2);
  std::vector<float> y(rows * D), rstd(rows);
  for (auto _ : state) {
    rmsnorm_forward<float>(x.data(), w.data(), y.data(), rstd.data(), rows, D, 1e-6f);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * rows * D * 2 * sizeof(float));
}
BENCHMARK(BM_RmsNormForward)->Args({2048, 2048})->UseRealTime();

void BM_RmsNormBackward(benchmark::State& state) {
  const int64_t rows = state.range(0), D = state.range(1);
  const auto x = random_floats(rows * D, 1), w = random_floats(D, 2),
             dy = random_floats(rows * D, 3);
  std::vector<float> y(rows * D), rstd(rows), dx(rows * D), dw(D);
  rmsnorm_forward<float>(x.data(), w.data(), y.data(), rstd.data(), rows, D, 1e-6f);
  for (auto _ : state) {
    rmsnorm_backward<float>(x.data(), w.data(), rstd.data(), dy.data(), dx.data(), dw.data(), rows,
                            D);
    benchmark::DoNotOptimize(dx.data());
  }
  state.SetBytesProcessed(state.iterations() * rows * D * 3 * sizeof(float));
}
BENCHMARK(BM_RmsNormBackward)->Args({2048, 2048})->UseRealTime();

void BM_SwiGluForward(benchmark::State& state) {
  const int64_t n = state.range(0);
  const auto g = random_floats(n, 1, -4, 4), u = random_floats(n, 2);
  std::vector<float> out(n);
  for (auto _ : state) {
    swiglu_forward<float>(g.data(), u.data(), out.data(), n);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_SwiGluForward)->Arg(2048 * 6144)->UseRealTime();

// Args: rows, V. dlogits written in place over the logits, as the model does.
void BM_CrossEntropy(benchmark::State& state) {
  const int64_t rows = state.range(0), V = state.range(1);
  const auto logits0 = random_floats(rows * V, 1, -8, 8);
  std::vector<float> logits(logits0);
  std::vector<int64_t> targets(rows);
  for (int64_t r = 0; r < rows; ++r) targets[r] = (r * 7919) % V;
  for (auto _ : state) {
    state.PauseTiming();
    std::copy(logits0.begin(), logits0.end(), logits.begin());
    state.ResumeTiming();
    const auto res = cross_entropy<float>(logits.data(), targets.data(), logits.data(), rows, V,
                                          1.0f / static_cast<float>(rows));
    benchmark::DoNotOptimize(res);
  }
  state.SetItemsProcessed(state.iterations() * rows * V);
}
BENCHMARK(BM_CrossEntropy)->Args({512, 151936})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
