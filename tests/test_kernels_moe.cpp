// Mixture-of-experts kernels: routing, bucketing and grouped expert GEMMs against naive loops
// (every expert computed densely per token), backward by finite differences, experts that
// receive no token, and ties resolved as torch.topk resolves them.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "kernel_test_utils.h"
#include "kernels/moe.h"

namespace qv {
namespace {

using kernels::MoeDims;
using testing::cast_vector;
using testing::numeric_grad;
using testing::pick;
using testing::random_vector;

MoeDims dims(int64_t N, int64_t H, int64_t I, int64_t E, int64_t K, bool norm = true) {
  MoeDims d;
  d.tokens = N;
  d.hidden = H;
  d.inter = I;
  d.experts = E;
  d.top_k = K;
  d.norm_topk_prob = norm;
  return d;
}

// The block's inputs: tokens x, router weight wr [E, H], gate_up [E, H, 2I], down [E, I, H].
struct Block {
  MoeDims d;
  std::vector<double> x, wr, gate_up, down;
};

Block make_block(const MoeDims& d, uint64_t seed) {
  return {d, random_vector(d.tokens * d.hidden, seed),
          random_vector(d.experts * d.hidden, seed + 1),
          random_vector(d.experts * d.hidden * 2 * d.inter, seed + 2, -0.5, 0.5),
          random_vector(d.experts * d.inter * d.hidden, seed + 3, -0.5, 0.5)};
}

std::vector<double> router_logits(const Block& b) {
  const MoeDims& d = b.d;
  std::vector<double> z(d.tokens * d.experts, 0.0);
  for (int64_t t = 0; t < d.tokens; ++t)
    for (int64_t e = 0; e < d.experts; ++e)
      for (int64_t c = 0; c < d.hidden; ++c)
        z[t * d.experts + e] += b.x[t * d.hidden + c] * b.wr[e * d.hidden + c];
  return z;
}

// Every expert on every token (what the kernels must not do), weighted by the naive top-k
// (distinct probabilities: the k largest in descending order).
std::vector<double> naive_block(const Block& b) {
  const MoeDims& d = b.d;
  const int64_t H = d.hidden, I = d.inter, E = d.experts;
  const std::vector<double> z = router_logits(b);
  std::vector<double> y(d.tokens * H, 0.0);
  for (int64_t t = 0; t < d.tokens; ++t) {
    std::vector<double> p(E);
    const double m = *std::max_element(z.begin() + t * E, z.begin() + (t + 1) * E);
    for (int64_t e = 0; e < E; ++e) p[e] = std::exp(z[t * E + e] - m);
    const double zsum = std::accumulate(p.begin(), p.end(), 0.0);
    for (double& v : p) v /= zsum;
    std::vector<int64_t> idx(E);
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](int64_t a, int64_t c) { return p[a] > p[c]; });
    double sum = 0;
    for (int64_t j = 0; j < d.top_k; ++j) sum += p[idx[j]];
    for (int64_t j = 0; j < d.top_k; ++j) {
      const int64_t e = idx[j];
      const double w = d.norm_topk_prob ? p[e] / sum : p[e];
      std::vector<double> act(I);
      for (int64_t i = 0; i < I; ++i) {
        double g = 0, u = 0;
        for (int64_t c = 0; c < H; ++c) {
          g += b.x[t * H + c] * b.gate_up[(e * H + c) * 2 * I + i];
          u += b.x[t * H + c] * b.gate_up[(e * H + c) * 2 * I + I + i];
        }
        act[i] = g / (1 + std::exp(-g)) * u;
      }
      for (int64_t c = 0; c < H; ++c) {
        double o = 0;
        for (int64_t i = 0; i < I; ++i) o += act[i] * b.down[(e * I + i) * H + c];
        y[t * H + c] += w * o;
      }
    }
  }
  return y;
}

// The kernels' block in T: router (test-side product), softmax, top-k, bucket, experts; with
// dy, also the backward (router included).
template <typename T>
struct BlockRun {
  std::vector<T> y, dx, dwr, dgu, ddown, probs;
  std::vector<int32_t> expert;
  std::vector<int64_t> offsets;
};

template <typename T>
BlockRun<T> run_block(const Block& b, const std::vector<double>* dy, bool use_bf16 = false) {
  const MoeDims& d = b.d;
  const int64_t N = d.tokens, H = d.hidden, I = d.inter, E = d.experts, S = d.slots();
  const auto x = cast_vector<T>(b.x), gu = cast_vector<T>(b.gate_up), dn = cast_vector<T>(b.down);
  BlockRun<T> r;
  r.probs = cast_vector<T>(router_logits(b));
  kernels::moe_softmax<T>(r.probs.data(), r.probs.data(), N, E);
  r.expert.resize(S);
  std::vector<T> weight(S);
  kernels::moe_topk<T>(r.probs.data(), d, r.expert.data(), weight.data());
  r.offsets.resize(E + 1);
  std::vector<int64_t> order(S), position(S);
  kernels::moe_bucket(r.expert.data(), d, r.offsets.data(), order.data(), position.data());
  const kernels::MoeRouting routing{r.offsets.data(), order.data(), position.data()};
  std::vector<T> xs(S * H), gate_up(S * 2 * I), act(S * I), ys(S * H);
  const kernels::MoeActs<T> acts{xs.data(), gate_up.data(), act.data(), ys.data()};
  kernels::MoeExperts<T> w{gu.data(), dn.data()};
  std::vector<bf16> gu_b(gu.size()), dn_b(dn.size());
  if constexpr (std::is_same_v<T, float>) {
    if (use_bf16) {
      to_bf16(gu.data(), gu_b.data(), static_cast<int64_t>(gu.size()));
      to_bf16(dn.data(), dn_b.data(), static_cast<int64_t>(dn.size()));
      w.gate_up_b16 = gu_b.data();
      w.down_b16 = dn_b.data();
    }
  }
  r.y.assign(N * H, T(7));  // garbage: must be overwritten
  kernels::moe_experts_forward<T>(x.data(), w, routing, weight.data(), d, acts, r.y.data());
  if (!dy) return r;
  const auto dyt = cast_vector<T>(*dy);
  r.dx.assign(N * H, T(7));
  r.dgu.assign(gu.size(), T(0));
  r.ddown.assign(dn.size(), T(0));
  std::vector<T> dweight(S), dprobs(N * E);
  const kernels::MoeSaved<T> saved{xs.data(), gate_up.data(), act.data(), ys.data()};
  kernels::moe_experts_backward<T>(dyt.data(), w, routing, weight.data(), d, saved, r.dx.data(),
                                   r.dgu.data(), r.ddown.data(), dweight.data());
  kernels::moe_topk_backward<T>(r.probs.data(), r.expert.data(), weight.data(), dweight.data(), d,
                                dprobs.data());
  kernels::moe_softmax_backward<T>(r.probs.data(), dprobs.data(), dprobs.data(), N, E);
  r.dwr.assign(E * H, T(0));
  for (int64_t t = 0; t < N; ++t)
    for (int64_t e = 0; e < E; ++e)
      for (int64_t c = 0; c < H; ++c) {
        r.dx[t * H + c] += dprobs[t * E + e] * static_cast<T>(b.wr[e * H + c]);
        r.dwr[e * H + c] += dprobs[t * E + e] * x[t * H + c];
      }
  return r;
}

TEST(KernelsMoe, ForwardMatchesDenseNaive) {
  for (const MoeDims& d : {dims(1, 8, 4, 4, 2), dims(17, 24, 12, 6, 2), dims(40, 32, 16, 8, 3),
                           dims(9, 16, 8, 5, 1), dims(12, 16, 8, 4, 2, false)}) {
    const Block b = make_block(d, 11 + d.tokens);
    const auto ref = naive_block(b);
    QV_EXPECT_REL(cast_vector<double>(run_block<double>(b, nullptr).y), ref, 1e-13);
    // float: router, softmax and products in single precision.
    QV_EXPECT_REL(cast_vector<double>(run_block<float>(b, nullptr).y), ref, 2e-6);
  }
}

TEST(KernelsMoe, Bf16ExpertsFollowTheFloatBlock) {
  const Block b = make_block(dims(33, 64, 32, 4, 2), 5);
  const auto ref = naive_block(b);
  // bf16 inputs (8 significant bits, relative rounding 2^-9 per operand) accumulated in float.
  const auto got = cast_vector<double>(run_block<float>(b, nullptr, true).y);
  QV_EXPECT_REL(got, ref, 2e-2);
  EXPECT_GT(testing::rel_err(got, ref), 1e-5);  // the bf16 path ran
}

TEST(KernelsMoe, BucketIsAStableCountingSort) {
  const MoeDims d = dims(5, 1, 1, 4, 2);
  const std::vector<int32_t> expert = {2, 0, 0, 3, 2, 3, 0, 2, 3, 0};
  std::vector<int64_t> offsets(5), order(10), position(10);
  kernels::moe_bucket(expert.data(), d, offsets.data(), order.data(), position.data());
  EXPECT_EQ(offsets, (std::vector<int64_t>{0, 4, 4, 7, 10}));  // expert 1 gets nothing
  EXPECT_EQ(order, (std::vector<int64_t>{1, 2, 6, 9, 0, 4, 7, 3, 5, 8}));
  for (int64_t s = 0; s < 10; ++s) EXPECT_EQ(order[position[s]], s);
}

// Backward of phi = sum(y * dy) through experts, weights, top-k renormalisation, softmax and
// the router, against fourth-order finite differences (routing fixed: the seeds' smallest
// top-k margin is far above the 2e-3 perturbation's effect).
TEST(KernelsMoe, BackwardMatchesFiniteDifferences) {
  for (const MoeDims& d : {dims(7, 6, 5, 4, 2), dims(6, 5, 3, 5, 3, false)}) {
    Block b = make_block(d, 3 + d.experts);
    const auto dy = random_vector(d.tokens * d.hidden, 99);
    const BlockRun<double> r = run_block<double>(b, &dy);
    auto phi = [&] { return testing::dot(naive_block(b), dy); };
    const auto check = [&](std::vector<double>& param, const std::vector<double>& grad) {
      const auto idx = testing::sample_indices(param.size(), 60, 7);
      QV_EXPECT_REL(pick(grad, idx), numeric_grad(param, idx, phi), 1e-7);
    };
    check(b.x, r.dx);
    check(b.wr, r.dwr);
    check(b.gate_up, r.dgu);
    check(b.down, r.ddown);
    // float backward against the double one
    const BlockRun<float> rf = run_block<float>(b, &dy);
    QV_EXPECT_REL(cast_vector<double>(rf.dx), r.dx, 1e-5);
    QV_EXPECT_REL(cast_vector<double>(rf.dgu), r.dgu, 1e-5);
    QV_EXPECT_REL(cast_vector<double>(rf.dwr), r.dwr, 1e-5);
  }
}

// An expert that no token chooses: no work, and its gradient slice stays exactly zero.
TEST(KernelsMoe, ExpertWithoutTokensGetsZeroGradient) {
  const MoeDims d = dims(10, 8, 4, 4, 2);
  Block b = make_block(d, 21);
  for (int64_t c = 0; c < d.hidden; ++c) b.wr[3 * d.hidden + c] = 0;  // logit 0 for expert 3
  for (int64_t t = 0; t < d.tokens; ++t) b.x[t * d.hidden] = 0;
  // Experts 0..2 get large logits through x[.,1] > 0.
  for (int64_t t = 0; t < d.tokens; ++t) b.x[t * d.hidden + 1] = 2.0 + 0.1 * t;
  for (int64_t e = 0; e < 3; ++e) b.wr[e * d.hidden + 1] = 5.0 + e;
  const auto dy = random_vector(d.tokens * d.hidden, 4);
  const BlockRun<double> r = run_block<double>(b, &dy);
  ASSERT_EQ(r.offsets[4] - r.offsets[3], 0) << "expert 3 must receive no token";
  const int64_t gu_block = d.hidden * 2 * d.inter, dn_block = d.inter * d.hidden;
  int routed = 0;
  for (int64_t e = 0; e < d.experts; ++e) {
    double gu_mass = 0, dn_mass = 0;
    for (int64_t i = 0; i < gu_block; ++i) gu_mass += std::fabs(r.dgu[e * gu_block + i]);
    for (int64_t i = 0; i < dn_block; ++i) dn_mass += std::fabs(r.ddown[e * dn_block + i]);
    const bool has_tokens = r.offsets[e + 1] > r.offsets[e];
    routed += has_tokens;
    EXPECT_EQ(gu_mass > 0, has_tokens) << "expert " << e;  // zero exactly when unrouted
    EXPECT_EQ(dn_mass > 0, has_tokens) << "expert " << e;
  }
  EXPECT_GE(routed, 2);
  QV_EXPECT_REL(cast_vector<double>(r.y), naive_block(b), 1e-13);
}

// Exact ties: the order torch.topk (CPU, largest, sorted; torch 1.13.1, Debian) returned for
// these rows, recorded with torch.topk(torch.tensor(row), k).indices.
TEST(KernelsMoe, TiesResolveAsTorchTopk) {
  struct Case {
    std::vector<float> row;
    int64_t k;
    std::vector<int32_t> torch_indices;
  };
  std::vector<float> uniform128(128, 1.0f / 128);
  const std::vector<Case> cases = {
      {{0.25f, 0.25f, 0.25f, 0.25f}, 2, {2, 3}},
      {uniform128, 8, {84, 87, 86, 85, 82, 81, 88, 83}},
      {{0.125f, 0.25f, 0.f, 0.25f}, 2, {1, 3}},
      {{0.f, 0.f, 0.25f, 0.f}, 2, {2, 3}},
      {{0.125f, 0.25f, 0.125f, 0.f, 0.125f, 0.f, 0.f, 0.25f}, 2, {1, 7}},
      {{0.125f, 0.f, 0.125f, 0.25f, 0.f, 0.25f, 0.25f, 0.125f}, 3, {3, 6, 5}},
      {{0.25f,  0.f,   0.125f, 0.f,   0.25f,  0.125f, 0.125f, 0.25f, 0.f,    0.125f,
        0.125f, 0.f,   0.25f,  0.25f, 0.f,    0.f,    0.f,    0.f,   0.25f,  0.125f,
        0.f,    0.f,   0.f,    0.f,   0.25f,  0.125f, 0.125f, 0.f,   0.25f,  0.f,
        0.f,    0.25f, 0.25f,  0.f,   0.125f, 0.f,    0.125f, 0.25f, 0.25f,  0.125f,
        0.125f, 0.25f, 0.f,    0.25f, 0.25f,  0.125f, 0.25f,  0.25f, 0.125f, 0.125f,
        0.f,    0.25f, 0.25f,  0.25f, 0.25f,  0.25f,  0.125f, 0.25f, 0.25f,  0.125f},
       4,
       {44, 18, 52, 51}},
      {{0.25f, 0.f, 0.f, 0.25f}, 1, {3}},
  };
  for (const Case& c : cases) {
    const MoeDims d = dims(1, 1, 1, static_cast<int64_t>(c.row.size()), c.k);
    std::vector<int32_t> expert(c.k);
    std::vector<float> weight(c.k);
    kernels::moe_topk<float>(c.row.data(), d, expert.data(), weight.data());
    EXPECT_EQ(expert, c.torch_indices);
    float sum = 0;
    for (int32_t e : c.torch_indices) sum += c.row[e];
    for (int64_t j = 0; j < c.k; ++j) EXPECT_FLOAT_EQ(weight[j], c.row[expert[j]] / sum);
  }
}

}  // namespace
}  // namespace qv
