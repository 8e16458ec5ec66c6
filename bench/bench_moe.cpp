// Grouped expert GEMMs (kernels/cpu/moe.h) against plain GEMMs of the same total size. Built
// with -DQWEN3VL_BUILD_BENCH=ON; run e.g. OMP_NUM_THREADS=2 build/bench_moe
// FLOP rates count the experts' matrix products only: 2 x slots x 3 x hidden x inter.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/moe.h"

namespace {

using namespace qv::kernels;

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1, float hi = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

MoeDims dims_of(const benchmark::State& state) {
  MoeDims d;
  d.tokens = state.range(0);
  d.hidden = state.range(1);
  d.inter = state.range(2);
  d.experts = state.range(3);
  d.top_k = state.range(4);
  return d;
}

void set_gflops(benchmark::State& state, const MoeDims& d, int passes) {
  const double flops = passes * 2.0 * d.slots() * 3.0 * d.hidden * d.inter;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Random router logits (about uniform routing), then forward (and backward) of the experts.
// Args: tokens, hidden, inter, experts, top_k.
void run_experts(benchmark::State& state, bool backward) {
  const MoeDims d = dims_of(state);
  const int64_t N = d.tokens, H = d.hidden, I = d.inter, E = d.experts, S = d.slots();
  const auto x = random_floats(N * H, 1), dy = random_floats(N * H, 5);
  const auto gu = random_floats(E * H * 2 * I, 2, -0.05f, 0.05f);
  const auto dn = random_floats(E * I * H, 3, -0.05f, 0.05f);
  auto probs = random_floats(N * E, 4, -2, 2);
  moe_softmax(probs.data(), probs.data(), N, E);
  std::vector<int32_t> expert(S);
  std::vector<float> weight(S), dweight(S), y(N * H), dx(N * H), dgu(gu.size()), ddn(dn.size());
  std::vector<int64_t> offsets(E + 1), order(S), position(S);
  moe_topk(probs.data(), d, expert.data(), weight.data());
  moe_bucket(expert.data(), d, offsets.data(), order.data(), position.data());
  std::vector<float> xs(S * H), gate_up(S * 2 * I), act(S * I), ys(S * H);
  const MoeRouting r{offsets.data(), order.data(), position.data()};
  const MoeExperts<float> w{gu.data(), dn.data()};
  const MoeActs<float> a{xs.data(), gate_up.data(), act.data(), ys.data()};
  for (auto _ : state) {
    moe_experts_forward(x.data(), w, r, weight.data(), d, a, y.data());
    if (backward)
      moe_experts_backward(dy.data(), w, r, weight.data(), d,
                           {xs.data(), gate_up.data(), act.data(), ys.data()}, dx.data(),
                           dgu.data(), ddn.data(), dweight.data());
    benchmark::DoNotOptimize(y.data());
  }
  set_gflops(state, d, backward ? 3 : 1);
}

void BM_MoeExpertsForward(benchmark::State& state) {
  run_experts(state, false);
}
void BM_MoeExpertsForwardBackward(benchmark::State& state) {
  run_experts(state, true);
}

// The same products as one GEMM per matrix over all slots (what the experts would cost if they
// were a single dense MLP of width inter applied to slots rows).
void BM_PlainGemmSameShape(benchmark::State& state) {
  const MoeDims d = dims_of(state);
  const int64_t S = d.slots(), H = d.hidden, I = d.inter;
  const auto xs = random_floats(S * H, 1), gu = random_floats(H * 2 * I, 2);
  const auto dn = random_floats(I * H, 3);
  std::vector<float> gate_up(S * 2 * I), act(S * I, 0.5f), ys(S * H);
  for (auto _ : state) {
    gemm<float>(false, false, S, 2 * I, H, 1.0f, xs.data(), H, gu.data(), 2 * I, 0.0f,
                gate_up.data(), 2 * I);
    gemm<float>(false, false, S, H, I, 1.0f, act.data(), I, dn.data(), H, 0.0f, ys.data(), H);
    benchmark::DoNotOptimize(ys.data());
  }
  set_gflops(state, d, 1);
}

// debugmodel_moe (2048 tokens, hidden 256, 64 experts of 768, top-8: ~256 rows per expert) and
// a 30B-A3B layer on 512 tokens (hidden 2048, 128 experts of 768, top-8: ~32 rows per expert).
#define MOE_SHAPES ->Args({2048, 256, 768, 64, 8})->Args({512, 2048, 768, 128, 8})
BENCHMARK(BM_MoeExpertsForward) MOE_SHAPES->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MoeExpertsForwardBackward) MOE_SHAPES->Unit(benchmark::kMillisecond);
BENCHMARK(BM_PlainGemmSameShape) MOE_SHAPES->Unit(benchmark::kMillisecond);

}  // namespace
