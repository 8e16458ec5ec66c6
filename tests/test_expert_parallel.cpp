// Expert parallelism of the sparse MoE block: the dispatch / combine kernels against naive loops
// (an expert without slots included); the block run by 2 and 4 ranks (threads joined by an
// in-memory all-to-all) against one process with the combined tokens, including a rank that
// sends nothing to the others and an expert that receives no token; the config errors. The
// same under mpirun through the binary is tests/test_train_dist.cpp (ep cases).
#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <numeric>
#include <thread>

#include "dist/expert_parallel.h"
#include "kernel_test_utils.h"
#include "kernels/moe.h"
#include "model/moe_block.h"

namespace qv {
namespace {

using kernels::MoeDims;
using testing::random_vector;

MoeDims dims(int64_t N, int64_t H, int64_t E, int64_t K) {
  MoeDims d;
  d.tokens = N;
  d.hidden = H;
  d.inter = 3;
  d.experts = E;
  d.top_k = K;
  return d;
}

// Slots sorted by expert, ties by slot index: the bucket order, built without moe_bucket.
std::vector<int64_t> naive_bucket_order(const std::vector<int32_t>& expert) {
  std::vector<int64_t> order(expert.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return expert[a] < expert[b]; });
  return order;
}

// Expert 2 of 4 gets no slot; ranks of the results are checked exactly (copies, and sums whose
// order the kernels fix: choice j = 0 first, as the naive loops).
TEST(ExpertParallelKernels, DispatchAndCombineMatchNaiveLoops) {
  const int64_t N = 5, H = 7, E = 4, K = 2, S = N * K;
  const MoeDims d = dims(N, H, E, K);
  const std::vector<int32_t> expert = {3, 0, 1, 3, 0, 1, 3, 1, 0, 3};
  std::vector<int64_t> offsets(E + 1), order(S), position(S);
  kernels::moe_bucket(expert.data(), d, offsets.data(), order.data(), position.data());
  EXPECT_EQ(offsets[3] - offsets[2], 0);
  const kernels::MoeRouting r{offsets.data(), order.data(), position.data()};
  const auto x = random_vector(N * H, 1), ys = random_vector(S * H, 2), w = random_vector(S, 3),
             dy = random_vector(N * H, 4), d_xs = random_vector(S * H, 5);
  const std::vector<int64_t> naive = naive_bucket_order(expert);

  std::vector<double> xs(S * H, 7.0);
  kernels::moe_dispatch(x.data(), r, d, xs.data());
  for (int64_t p = 0; p < S; ++p)
    for (int64_t c = 0; c < H; ++c)
      ASSERT_EQ(xs[p * H + c], x[(naive[p] / K) * H + c]) << "bucket row " << p;

  // Where each slot sits in bucket order, from the naive order.
  std::vector<int64_t> place(S);
  for (int64_t p = 0; p < S; ++p) place[naive[p]] = p;
  std::vector<double> y(N * H, 7.0), dx(N * H, 7.0), d_ys(S * H, 7.0), d_w(S, 7.0);
  kernels::moe_combine(ys.data(), r, w.data(), d, y.data());
  kernels::moe_dispatch_backward(d_xs.data(), r, d, dx.data());
  kernels::moe_combine_backward(dy.data(), ys.data(), r, w.data(), d, d_ys.data(), d_w.data());
  for (int64_t t = 0; t < N; ++t)
    for (int64_t c = 0; c < H; ++c) {
      double want = 0, want_dx = 0;
      for (int64_t j = 0; j < K; ++j) {
        want += ys[place[t * K + j] * H + c] * w[t * K + j];
        want_dx += d_xs[place[t * K + j] * H + c];
      }
      EXPECT_EQ(y[t * H + c], want) << t << "," << c;
      EXPECT_EQ(dx[t * H + c], want_dx) << t << "," << c;
    }
  for (int64_t s = 0; s < S; ++s) {
    double dot = 0;
    for (int64_t c = 0; c < H; ++c) {
      EXPECT_EQ(d_ys[place[s] * H + c], dy[(s / K) * H + c] * w[s]);
      dot += dy[(s / K) * H + c] * ys[place[s] * H + c];
    }
    EXPECT_EQ(d_w[s], dot) << "slot " << s;
  }
}

// Ranks as threads: an all-to-all through shared pointers and a barrier.
class ThreadGroup {
 public:
  explicit ThreadGroup(int n) : n_(n), sync_(n), ptr_(n), counts_(n) {}

  class Member final : public model::ExpertExchange {
   public:
    Member(ThreadGroup& g, int rank) : g_(g), rank_(rank) {}
    int rank() const override { return rank_; }
    int size() const override { return g_.n_; }
    void exchange_counts(const int64_t* send, int64_t* recv, int64_t n) override {
      g_.ptr_[rank_] = send;
      g_.sync_.arrive_and_wait();
      for (int r = 0; r < g_.n_; ++r)
        std::memcpy(recv + r * n, static_cast<const int64_t*>(g_.ptr_[r]) + rank_ * n,
                    n * sizeof(int64_t));
      g_.sync_.arrive_and_wait();
    }
    void exchange_rows(const float* in, const int64_t* send_counts, float* out,
                       const int64_t* recv_counts) override {
      g_.ptr_[rank_] = in;
      g_.counts_[rank_] = send_counts;
      g_.sync_.arrive_and_wait();
      int64_t at = 0;
      for (int r = 0; r < g_.n_; ++r) {
        const int64_t* theirs = g_.counts_[r];
        const int64_t from = std::accumulate(theirs, theirs + rank_, int64_t{0});
        EXPECT_EQ(theirs[rank_], recv_counts[r]);
        std::memcpy(out + at, static_cast<const float*>(g_.ptr_[r]) + from,
                    theirs[rank_] * sizeof(float));
        at += recv_counts[r];
      }
      g_.sync_.arrive_and_wait();
    }

   private:
    ThreadGroup& g_;
    int rank_;
  };

 private:
  int n_;
  std::barrier<> sync_;
  std::vector<const void*> ptr_;
  std::vector<const int64_t*> counts_;
};

model::TextConfig moe_text_config() {
  model::TextConfig t;
  t.hidden_size = 8;
  t.moe_intermediate_size = 6;
  t.num_experts = 4;
  t.num_experts_per_tok = 2;
  t.norm_topk_prob = true;
  return t;
}

// One sparse layer's parameters, the same values for every seed-sharing store.
struct Layer {
  model::ParamStore store;
  model::TextLayerParams p;
};

std::unique_ptr<Layer> make_layer(const model::TextConfig& t, bool crafted_router) {
  auto l = std::make_unique<Layer>();
  const int64_t E = t.num_experts, H = t.hidden_size, I = t.moe_intermediate_size;
  l->store.begin_unit("layer");
  l->p.router = l->store.add("mlp.gate.weight", {E, H});
  l->p.experts_gate_up = l->store.add("mlp.experts.gate_up_proj", {E, H, 2 * I});
  l->p.experts_down = l->store.add("mlp.experts.down_proj", {E, I, H});
  l->store.allocate();
  for (const auto& e : l->store.entries()) {
    const auto v = random_vector(e.ref.numel, 11 + e.ref.offset, -0.5, 0.5);
    std::copy(v.begin(), v.end(), l->store.value(e.ref));
  }
  if (crafted_router) {  // logit e = 4 x h[e]: the inputs' first E columns choose the experts
    float* w = l->store.value(l->p.router);
    std::fill(w, w + E * H, 0.0f);
    for (int64_t e = 0; e < E; ++e) w[e * H + e] = 4.0f;
  }
  return l;
}

struct RankResult {
  std::vector<float> out, d_h, grads;
  std::vector<int64_t> send_floats, local_offsets;
};

// Every rank's output, input gradient and parameter gradients (rank r's tokens are rows
// [begin[r], begin[r + 1]) of x and dy).
std::vector<RankResult> run_ranks(const model::TextConfig& t, bool crafted,
                                  const std::vector<int64_t>& begin, const std::vector<float>& x,
                                  const std::vector<float>& dy) {
  const int R = static_cast<int>(begin.size()) - 1;
  const int64_t H = t.hidden_size;
  ThreadGroup group(R);
  std::vector<RankResult> res(R);
  std::vector<std::thread> threads;
  for (int r = 0; r < R; ++r)
    threads.emplace_back([&, r] {
      ThreadGroup::Member member(group, r);
      const model::ExpertParallelScope scope(&member);
      auto layer = make_layer(t, crafted);
      const model::MoeBlock block(t, layer->p);
      const int64_t N = begin[r + 1] - begin[r];
      model::MoeActs acts;
      RankResult& o = res[r];
      o.out.assign(N * H, 7.0f);
      o.d_h.assign(N * H, 7.0f);
      block.forward(layer->store, x.data() + begin[r] * H, N, acts, o.out.data());
      block.backward(layer->store, x.data() + begin[r] * H, N, acts, dy.data() + begin[r] * H,
                     nullptr, o.d_h.data());
      o.grads = layer->store.grads().to_vector();
      o.send_floats.assign(acts.ep.send_floats.begin(), acts.ep.send_floats.end());
      o.local_offsets.assign(acts.ep.offsets.begin(), acts.ep.offsets.end());
    });
  for (auto& th : threads) th.join();
  return res;
}

void expect_matches_one_process(const model::TextConfig& t, bool crafted,
                                const std::vector<int64_t>& begin, const std::vector<float>& x,
                                const std::vector<float>& dy,
                                std::vector<RankResult>* results = nullptr) {
  const int R = static_cast<int>(begin.size()) - 1;
  const int64_t H = t.hidden_size, N = begin.back(), E = t.num_experts, L = E / R;
  const int64_t I = t.moe_intermediate_size;
  auto layer = make_layer(t, crafted);
  const model::MoeBlock block(t, layer->p);
  model::MoeActs acts;
  std::vector<float> out(N * H), d_h(N * H);
  block.forward(layer->store, x.data(), N, acts, out.data());
  block.backward(layer->store, x.data(), N, acts, dy.data(), nullptr, d_h.data());
  const std::vector<float> grads = layer->store.grads().to_vector();

  const std::vector<RankResult> ranks = run_ranks(t, crafted, begin, x, dy);
  // Tolerances: each expert multiplies the same rows in the same order as one process, and the
  // combine sums a token's choices in the same order, so outputs and input gradients differ
  // only if the GEMM engine blocks a product of M rows differently from one of fewer rows
  // (float rounding of sums over H = 8 or I = 6 terms of size ~1: < 1e-6). The router's
  // gradient is a sum over each rank's tokens, then over ranks (one sum over N tokens in one
  // process): float reassociation of N ~ 12 terms of size ~0.1, < 1e-6.
  const float tol = 1e-6f;
  for (int r = 0; r < R; ++r)
    for (int64_t i = 0; i < (begin[r + 1] - begin[r]) * H; ++i) {
      ASSERT_NEAR(ranks[r].out[i], out[begin[r] * H + i], tol) << "rank " << r << " out " << i;
      ASSERT_NEAR(ranks[r].d_h[i], d_h[begin[r] * H + i], tol) << "rank " << r << " d_h " << i;
    }
  // Expert gradients are owned: a rank's gradient is zero outside its experts, and the sum over
  // ranks is one process's gradient.
  const model::ParamRef gu = layer->p.experts_gate_up, dn = layer->p.experts_down;
  for (int r = 0; r < R; ++r)
    for (int64_t e = 0; e < E; ++e) {
      if (e / L == r) continue;
      for (int64_t i = 0; i < H * 2 * I; ++i)
        ASSERT_EQ(ranks[r].grads[gu.offset + e * H * 2 * I + i], 0.0f) << r << " expert " << e;
      for (int64_t i = 0; i < I * H; ++i)
        ASSERT_EQ(ranks[r].grads[dn.offset + e * I * H + i], 0.0f) << r << " expert " << e;
    }
  double largest = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    double sum = 0;
    for (int r = 0; r < R; ++r) sum += ranks[r].grads[i];
    ASSERT_NEAR(sum, grads[i], tol) << "gradient element " << i;
    largest = std::max(largest, std::fabs(static_cast<double>(grads[i])));
  }
  EXPECT_GT(largest, 1e-3) << "the gradients are not all zero";
  if (results) *results = ranks;
}

std::vector<float> floats(const std::vector<double>& v) {
  return {v.begin(), v.end()};
}

TEST(ExpertParallelBlock, TwoAndFourRanksMatchOneProcessWithTheCombinedTokens) {
  const model::TextConfig t = moe_text_config();
  const int64_t H = t.hidden_size;
  for (const std::vector<int64_t>& begin :
       {std::vector<int64_t>{0, 7, 12}, std::vector<int64_t>{0, 3, 9, 10, 16}}) {
    const int64_t N = begin.back();
    SCOPED_TRACE(cat(begin.size() - 1, " ranks"));
    expect_matches_one_process(t, false, begin, floats(random_vector(N * H, 21)),
                               floats(random_vector(N * H, 22)));
  }
}

// Rank 1's tokens choose only its own experts 2 and 3 (it sends no row to rank 0); rank 0's
// choose expert 0 and one of 2 / 3, so expert 1 receives no token at all.
TEST(ExpertParallelBlock, RankThatSendsNothingAndExpertWithoutTokens) {
  const model::TextConfig t = moe_text_config();
  const int64_t H = t.hidden_size, N = 9;
  const std::vector<int64_t> begin = {0, 5, 9};
  std::vector<float> x = floats(random_vector(N * H, 31, -0.2, 0.2));
  for (int64_t i = 0; i < N; ++i) {
    float* row = x.data() + i * H;
    const bool rank0 = i < begin[1];
    row[0] = rank0 ? 1.0f : -1.0f;
    row[1] = -1.0f;
    row[2] = rank0 ? (i % 2 ? 0.6f : 0.2f) : 0.9f;
    row[3] = rank0 ? (i % 2 ? 0.2f : 0.6f) : 0.7f;
  }
  std::vector<RankResult> ranks;
  expect_matches_one_process(t, true, begin, x, floats(random_vector(N * H, 32)), &ranks);
  ASSERT_EQ(ranks.size(), 2u);
  EXPECT_EQ(ranks[1].send_floats[0], 0) << "rank 1 sends nothing to rank 0";
  EXPECT_EQ(ranks[1].send_floats[1], 4 * 2 * H) << "rank 1's 4 tokens x 2 choices stay home";
  EXPECT_EQ(ranks[0].send_floats[0], 5 * H) << "rank 0's tokens' expert-0 choices";
  EXPECT_EQ(ranks[0].local_offsets[2] - ranks[0].local_offsets[1], 0) << "expert 1 gets none";
}

TEST(ExpertParallelConfig, DegreeMustFitExpertsAndShardGroup) {
  const dist::ParallelDims shard4{1, 4}, hybrid{2, 2}, replicated{2, 1};
  EXPECT_NO_THROW(dist::check_expert_parallel(1, replicated, 0));
  EXPECT_NO_THROW(dist::check_expert_parallel(2, shard4, 4));
  EXPECT_NO_THROW(dist::check_expert_parallel(4, shard4, 8));
  EXPECT_NO_THROW(dist::check_expert_parallel(2, hybrid, 4));
  auto message = [](int64_t degree, const dist::ParallelDims& dims, int64_t experts) {
    try {
      dist::check_expert_parallel(degree, dims, experts);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(4, shard4, 6).find("must divide the model's num_experts (6)"),
            std::string::npos);
  EXPECT_NE(message(4, hybrid, 8).find("must divide data_parallel_shard_degree (2 of 4 ranks)"),
            std::string::npos);
  EXPECT_NE(message(2, replicated, 4).find("data_parallel_shard_degree (1 of 2"),
            std::string::npos);
  EXPECT_NE(message(2, shard4, 0).find("needs a mixture-of-experts model"), std::string::npos);
  EXPECT_NE(message(0, shard4, 4).find("must be >= 1"), std::string::npos);
}

}  // namespace
}  // namespace qv
