// Varlen GQA attention against a plain full-score-matrix reference; backward by finite
// differences, by a plain full-matrix backward, and across both work splits.
#include <gtest/gtest.h>
#include <omp.h>

#include <limits>

#include "core/error.h"
#include "kernel_test_utils.h"
#include "kernels/attention.h"
#include "kernels/cpu/attention_tuning.h"

namespace qv {
namespace {

using kernels::AttentionDims;
using kernels::cpu::AttentionBackwardPlan;
using kernels::cpu::AttentionTuning;
using testing::cast_vector;
using testing::numeric_grad;
using testing::pick;
using testing::random_vector;
using testing::sample_indices;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

struct AttnCase {
  std::vector<int64_t> cu;
  AttentionDims dims;
  std::vector<uint8_t> valid;  // empty: all keys valid
  std::vector<double> q, k, v, dout;

  AttnCase(std::vector<int64_t> lengths, int64_t heads, int64_t kv_heads, int64_t hd, bool causal,
           uint64_t seed) {
    cu = {0};
    for (int64_t L : lengths) cu.push_back(cu.back() + L);
    dims.tokens = cu.back();
    dims.heads = heads;
    dims.kv_heads = kv_heads;
    dims.head_dim = hd;
    dims.causal = causal;
    dims.scale = 1 / std::sqrt(static_cast<double>(hd));
    const int64_t N = dims.tokens;
    // Spread of 2 makes softmax rows far from uniform, so mistakes show.
    q = random_vector(N * heads * hd, seed, -2, 2);
    k = random_vector(N * kv_heads * hd, seed + 1, -2, 2);
    v = random_vector(N * kv_heads * hd, seed + 2);
    dout = random_vector(N * heads * hd, seed + 3);
  }
  int64_t n_seqs() const { return static_cast<int64_t>(cu.size()) - 1; }
  const uint8_t* valid_ptr() const { return valid.empty() ? nullptr : valid.data(); }
};

struct AttnOut {
  std::vector<double> out, lse;
};
struct AttnGrads {
  std::vector<double> dq, dk, dv;
};

// Full [L x L] score matrix per (sequence, head) with explicit masks, softmax, P . V.
AttnOut naive_forward(const AttnCase& c, std::vector<std::vector<double>>* probs = nullptr) {
  const auto& d = c.dims;
  const int64_t H = d.heads, KVH = d.kv_heads, hd = d.head_dim, group = H / KVH;
  AttnOut r{std::vector<double>(d.tokens * H * hd, 0.0), std::vector<double>(d.tokens * H)};
  for (int64_t s = 0; s < c.n_seqs(); ++s) {
    const int64_t b = c.cu[s], L = c.cu[s + 1] - b;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h / group;
      std::vector<double> P(L * L, 0.0);
      for (int64_t i = 0; i < L; ++i) {
        std::vector<double> S(L, kNegInf);
        for (int64_t j = 0; j < L; ++j) {
          const bool allowed = (!d.causal || j <= i) && (c.valid.empty() || c.valid[b + j] != 0);
          if (!allowed) continue;
          double dot = 0;
          for (int64_t x = 0; x < hd; ++x)
            dot += c.q[((b + i) * H + h) * hd + x] * c.k[((b + j) * KVH + g) * hd + x];
          S[j] = dot * d.scale;
        }
        double mx = kNegInf;
        for (double e : S) mx = std::max(mx, e);
        double& lse = r.lse[(b + i) * H + h];
        if (mx == kNegInf) {
          lse = kNegInf;
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < L; ++j) sum += std::exp(S[j] - mx);
        lse = mx + std::log(sum);
        for (int64_t j = 0; j < L; ++j) P[i * L + j] = std::exp(S[j] - lse);
        for (int64_t x = 0; x < hd; ++x) {
          double o = 0;
          for (int64_t j = 0; j < L; ++j) o += P[i * L + j] * c.v[((b + j) * KVH + g) * hd + x];
          r.out[((b + i) * H + h) * hd + x] = o;
        }
      }
      if (probs) probs->push_back(std::move(P));
    }
  }
  return r;
}

// Plain full-matrix backward: dP = dO V^T, dS = P * (dP - rowsum(P * dP)), dQ = scale dS K,
// dK = scale dS^T Q, dV = P^T dO.
AttnGrads naive_backward(const AttnCase& c) {
  std::vector<std::vector<double>> probs;
  naive_forward(c, &probs);
  const auto& d = c.dims;
  const int64_t H = d.heads, KVH = d.kv_heads, hd = d.head_dim, group = H / KVH;
  AttnGrads gr{std::vector<double>(c.q.size(), 0.0), std::vector<double>(c.k.size(), 0.0),
               std::vector<double>(c.v.size(), 0.0)};
  size_t p = 0;
  for (int64_t s = 0; s < c.n_seqs(); ++s) {
    const int64_t b = c.cu[s], L = c.cu[s + 1] - b;
    for (int64_t h = 0; h < H; ++h) {
      const std::vector<double>& P = probs[p++];
      const int64_t g = h / group;
      auto qr = [&](int64_t i) { return &c.q[((b + i) * H + h) * hd]; };
      auto kr = [&](int64_t j) { return &c.k[((b + j) * KVH + g) * hd]; };
      auto vr = [&](int64_t j) { return &c.v[((b + j) * KVH + g) * hd]; };
      auto dor = [&](int64_t i) { return &c.dout[((b + i) * H + h) * hd]; };
      for (int64_t i = 0; i < L; ++i) {
        std::vector<double> dP(L);
        double rowsum = 0;
        for (int64_t j = 0; j < L; ++j) {
          double e = 0;
          for (int64_t x = 0; x < hd; ++x) e += dor(i)[x] * vr(j)[x];
          dP[j] = e;
          rowsum += P[i * L + j] * e;
        }
        for (int64_t j = 0; j < L; ++j) {
          const double dS = P[i * L + j] * (dP[j] - rowsum) * d.scale;
          for (int64_t x = 0; x < hd; ++x) {
            gr.dq[((b + i) * H + h) * hd + x] += dS * kr(j)[x];
            gr.dk[((b + j) * KVH + g) * hd + x] += dS * qr(i)[x];
            gr.dv[((b + j) * KVH + g) * hd + x] += P[i * L + j] * dor(i)[x];
          }
        }
      }
    }
  }
  return gr;
}

// Small tiles whose sizes divide nothing: even short sequences then span several query and key
// blocks, so the online softmax across key blocks and partial tiles are exercised.
constexpr AttentionTuning kSmallTiles{kernels::cpu::AttentionBackwardPlan::kAuto, 16, 24};

template <typename T>
AttnOut run_forward(const AttnCase& c, const AttentionTuning& tuning = {}) {
  const auto q = cast_vector<T>(c.q), k = cast_vector<T>(c.k), v = cast_vector<T>(c.v);
  std::vector<T> out(q.size(), T(7)), lse(c.dims.tokens * c.dims.heads, T(7));
  kernels::cpu::attention_forward_tuned<T>(q.data(), k.data(), v.data(), out.data(), lse.data(),
                                           c.cu.data(), c.n_seqs(), c.dims, c.valid_ptr(), tuning);
  return {cast_vector<double>(out), cast_vector<double>(lse)};
}

template <typename T>
AttnGrads run_backward(const AttnCase& c, AttentionBackwardPlan plan, AttentionTuning tuning = {}) {
  const auto q = cast_vector<T>(c.q), k = cast_vector<T>(c.k), v = cast_vector<T>(c.v),
             dout = cast_vector<T>(c.dout);
  std::vector<T> out(q.size()), lse(c.dims.tokens * c.dims.heads);
  kernels::attention_forward<T>(q.data(), k.data(), v.data(), out.data(), lse.data(), c.cu.data(),
                                c.n_seqs(), c.dims, c.valid_ptr());
  // Garbage in the outputs: they must be overwritten.
  std::vector<T> dq(q.size(), T(3)), dk(k.size(), T(3)), dv(v.size(), T(3));
  tuning.plan = plan;
  kernels::cpu::attention_backward_tuned<T>(q.data(), k.data(), v.data(), out.data(), lse.data(),
                                            dout.data(), dq.data(), dk.data(), dv.data(),
                                            c.cu.data(), c.n_seqs(), c.dims, c.valid_ptr(), tuning);
  return {cast_vector<double>(dq), cast_vector<double>(dk), cast_vector<double>(dv)};
}

// lse values compared where finite; -inf must match exactly.
void expect_lse(const std::vector<double>& got, const std::vector<double>& ref, double tol) {
  std::vector<double> g, r;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (ref[i] == kNegInf) {
      EXPECT_EQ(got[i], kNegInf) << "row " << i;
      continue;
    }
    g.push_back(got[i]);
    r.push_back(ref[i]);
  }
  QV_EXPECT_REL(g, r, tol);
}

// Lengths 5, 1, 9, 3 with masked keys: the length-1 sequence's only key is padding (its query
// sees nothing at all) and the first key of the last sequence is padding (in causal mode its
// first query sees nothing).
AttnCase small_case(bool causal) {
  AttnCase c({5, 1, 9, 3}, /*heads=*/4, /*kv_heads=*/2, /*hd=*/6, causal, 100 + causal);
  c.valid.assign(c.dims.tokens, 1);
  for (int64_t t : {2, 5, 9, 15}) c.valid[t] = 0;
  return c;
}

// Forward and both backward plans, with the default tiles and with kSmallTiles.
void check_case_against_naive(const AttnCase& c, double fwd_tol_f, double bwd_tol_f) {
  const AttnOut ref = naive_forward(c);
  const AttnGrads nb = naive_backward(c);
  for (const AttentionTuning& tiles : {AttentionTuning{}, kSmallTiles}) {
    SCOPED_TRACE(tiles.query_block ? "small tiles" : "default tiles");
    const AttnOut got = run_forward<double>(c, tiles);
    QV_EXPECT_REL(got.out, ref.out, 1e-13);
    expect_lse(got.lse, ref.lse, 1e-14);
    const AttnOut gotf = run_forward<float>(c, tiles);
    QV_EXPECT_REL(gotf.out, ref.out, fwd_tol_f);
    expect_lse(gotf.lse, ref.lse, fwd_tol_f);
    for (auto plan : {AttentionBackwardPlan::kPerKvHead, AttentionBackwardPlan::kSplit}) {
      SCOPED_TRACE(plan == AttentionBackwardPlan::kSplit ? "split plan" : "per-kv-head plan");
      const AttnGrads g = run_backward<double>(c, plan, tiles);
      QV_EXPECT_REL(g.dq, nb.dq, 1e-12);
      QV_EXPECT_REL(g.dk, nb.dk, 1e-12);
      QV_EXPECT_REL(g.dv, nb.dv, 1e-12);
      const AttnGrads gf = run_backward<float>(c, plan, tiles);
      QV_EXPECT_REL(gf.dq, g.dq, bwd_tol_f);
      QV_EXPECT_REL(gf.dk, g.dk, bwd_tol_f);
      QV_EXPECT_REL(gf.dv, g.dv, bwd_tol_f);
    }
  }
}

TEST(KernelsAttention, SmallCasesMatchNaive) {
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "full");
    const AttnCase c = small_case(causal);
    check_case_against_naive(c, 1e-6, 1e-5);
    const AttnOut got = run_forward<double>(c);
    // The fully masked query rows: zero output and lse = -inf.
    std::vector<int64_t> empty_rows = {5};
    if (causal) empty_rows.push_back(15);
    for (int64_t t : empty_rows)
      for (int64_t h = 0; h < c.dims.heads; ++h) {
        EXPECT_EQ(got.lse[t * c.dims.heads + h], kNegInf);
        for (int64_t x = 0; x < c.dims.head_dim; ++x)
          EXPECT_EQ(got.out[(t * c.dims.heads + h) * c.dims.head_dim + x], 0.0);
      }
  }
}

TEST(KernelsAttention, WithoutKeyMaskMatchesNaive) {
  for (bool causal : {false, true}) {
    AttnCase c({4, 7, 1}, 4, 2, 6, causal, 200);
    check_case_against_naive(c, 1e-6, 1e-5);
  }
}

TEST(KernelsAttention, BackwardMatchesFiniteDifferences) {
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "full");
    AttnCase c = small_case(causal);
    // phi = sum(dout * out), differentiated through the plain reference.
    auto phi = [&] { return testing::dot(c.dout, naive_forward(c).out); };
    const auto nq = numeric_grad(c.q, sample_indices(c.q.size(), c.q.size(), 0), phi);
    const auto nk = numeric_grad(c.k, sample_indices(c.k.size(), c.k.size(), 0), phi);
    const auto nv = numeric_grad(c.v, sample_indices(c.v.size(), c.v.size(), 0), phi);
    for (auto plan : {AttentionBackwardPlan::kPerKvHead, AttentionBackwardPlan::kSplit}) {
      const AttnGrads g = run_backward<double>(c, plan, kSmallTiles);
      QV_EXPECT_REL(g.dq, nq, 1e-8);
      QV_EXPECT_REL(g.dk, nk, 1e-8);
      QV_EXPECT_REL(g.dv, nv, 1e-8);
    }
  }
}

// Sequences longer than one query block (128 rows for small head_dim) and one key block (64),
// so tiles, partial tiles and the online softmax across blocks are all exercised.
TEST(KernelsAttention, MultiBlockSequencesMatchNaive) {
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "full");
    AttnCase c({140, 1, 75}, 4, 2, 10, causal, 300 + causal);
    c.valid.assign(c.dims.tokens, 1);
    for (int64_t t = 0; t < c.dims.tokens; t += 7) c.valid[t] = 0;
    check_case_against_naive(c, 1e-5, 1e-5);

    // Finite differences of the kernel's own forward on a sample of elements.
    auto phi = [&] { return testing::dot(c.dout, run_forward<double>(c).out); };
    const AttnGrads g = run_backward<double>(c, AttentionBackwardPlan::kAuto);
    for (auto [x, grad] : {std::pair{&c.q, &g.dq}, {&c.k, &g.dk}, {&c.v, &g.dv}}) {
      const auto idx = sample_indices(x->size(), 6, 7);
      QV_EXPECT_REL(pick(*grad, idx), numeric_grad(*x, idx, phi), 1e-8);
    }
  }
}

// Head dims of the real models (72 for 1152/16 vision, 128 for the decoder) give query blocks
// that are not multiples of the sequence lengths; MHA (kv_heads == heads) too.
TEST(KernelsAttention, RealHeadDimsMatchNaive) {
  AttnCase vision({130, 61}, 2, 2, 72, false, 400);
  check_case_against_naive(vision, 1e-5, 1e-5);
  AttnCase text({97}, 4, 1, 128, true, 500);
  check_case_against_naive(text, 1e-5, 1e-5);
}

TEST(KernelsAttention, ResultsDoNotDependOnThreadCount) {
  // Large enough (2e6 multiply-adds per score product) for the kernels to start threads.
  AttnCase c({200, 33, 150}, 4, 2, 16, true, 600);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const AttnOut f1 = run_forward<float>(c, kSmallTiles);
  const AttnGrads b1 = run_backward<float>(c, AttentionBackwardPlan::kSplit, kSmallTiles);
  const AttnGrads p1 = run_backward<float>(c, AttentionBackwardPlan::kPerKvHead, kSmallTiles);
  omp_set_num_threads(3);
  const AttnOut f3 = run_forward<float>(c, kSmallTiles);
  const AttnGrads b3 = run_backward<float>(c, AttentionBackwardPlan::kSplit, kSmallTiles);
  const AttnGrads p3 = run_backward<float>(c, AttentionBackwardPlan::kPerKvHead, kSmallTiles);
  omp_set_num_threads(saved);
  EXPECT_EQ(f1.out, f3.out);
  EXPECT_EQ(f1.lse, f3.lse);
  EXPECT_EQ(b1.dq, b3.dq);
  EXPECT_EQ(b1.dk, b3.dk);
  EXPECT_EQ(b1.dv, b3.dv);
  EXPECT_EQ(p1.dq, p3.dq);
  EXPECT_EQ(p1.dk, p3.dk);
  EXPECT_EQ(p1.dv, p3.dv);
}

// One causal sequence of 8192 tokens: memory stays linear (no [N x N] buffer), and sampled rows
// of out, dq, dk, dv match a per-row plain computation.
TEST(KernelsAttention, LongCausalSequence) {
  const int64_t L = 8192, hd = 8;
  AttnCase c({L}, 2, 1, hd, true, 700);
  const auto q = cast_vector<float>(c.q), k = cast_vector<float>(c.k), v = cast_vector<float>(c.v),
             dout = cast_vector<float>(c.dout);
  std::vector<float> out(q.size()), lse(L * 2), dq(q.size()), dk(k.size()), dv(v.size());
  kernels::attention_forward<float>(q.data(), k.data(), v.data(), out.data(), lse.data(),
                                    c.cu.data(), 1, c.dims);
  kernels::attention_backward<float>(q.data(), k.data(), v.data(), out.data(), lse.data(),
                                     dout.data(), dq.data(), dk.data(), dv.data(), c.cu.data(), 1,
                                     c.dims);
  const double scale = c.dims.scale;
  auto score = [&](int64_t i, int64_t h, int64_t j) {
    double s = 0;
    for (int64_t x = 0; x < hd; ++x) s += c.q[(i * 2 + h) * hd + x] * c.k[j * hd + x];
    return s * scale;
  };
  // Per query row (head 0): probabilities over keys 0..i in double.
  auto probs = [&](int64_t i, int64_t h) {
    std::vector<double> p(i + 1);
    double mx = kNegInf, sum = 0;
    for (int64_t j = 0; j <= i; ++j) mx = std::max(mx, p[j] = score(i, h, j));
    for (double& e : p) sum += (e = std::exp(e - mx));
    for (double& e : p) e /= sum;
    return p;
  };
  std::vector<double> got, ref;
  for (int64_t i : {int64_t{0}, int64_t{1}, int64_t{63}, int64_t{64}, int64_t{4000}, L - 1}) {
    const auto p = probs(i, 0);
    std::vector<double> o(hd, 0.0), dP(i + 1, 0.0), dqr(hd, 0.0);
    for (int64_t j = 0; j <= i; ++j)
      for (int64_t x = 0; x < hd; ++x) o[x] += p[j] * c.v[j * hd + x];
    double D = 0;
    for (int64_t x = 0; x < hd; ++x) D += o[x] * c.dout[i * 2 * hd + x];
    for (int64_t j = 0; j <= i; ++j) {
      for (int64_t x = 0; x < hd; ++x) dP[j] += c.dout[i * 2 * hd + x] * c.v[j * hd + x];
      for (int64_t x = 0; x < hd; ++x) dqr[x] += p[j] * (dP[j] - D) * scale * c.k[j * hd + x];
    }
    for (int64_t x = 0; x < hd; ++x) {
      got.push_back(out[i * 2 * hd + x]);
      ref.push_back(o[x]);
    }
    for (int64_t x = 0; x < hd; ++x) {
      got.push_back(dq[i * 2 * hd + x]);
      ref.push_back(dqr[x]);
    }
  }
  QV_EXPECT_REL(got, ref, 2e-6);
  // dv of the last key: only the last query of each head sees it.
  std::vector<double> dv_ref(hd, 0.0);
  for (int64_t h = 0; h < 2; ++h) {
    const double p_last = probs(L - 1, h).back();
    for (int64_t x = 0; x < hd; ++x) dv_ref[x] += p_last * c.dout[((L - 1) * 2 + h) * hd + x];
  }
  QV_EXPECT_REL(std::vector<double>(dv.end() - hd, dv.end()), dv_ref, 2e-6);
  for (float e : dk) ASSERT_TRUE(std::isfinite(e));
}

TEST(KernelsAttention, SingleTokenAndEmptySequences) {
  // One token attends only to itself: out = v, and since the softmax has a single entry, dq and
  // dk vanish while dv collects dout from every query head of its group.
  AttnCase one({1}, 2, 1, 4, true, 800);
  const AttnOut f = run_forward<double>(one);
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t x = 0; x < 4; ++x) EXPECT_DOUBLE_EQ(f.out[h * 4 + x], one.v[x]);
  for (auto plan : {AttentionBackwardPlan::kPerKvHead, AttentionBackwardPlan::kSplit}) {
    const AttnGrads g = run_backward<double>(one, plan);
    for (double e : g.dq) EXPECT_NEAR(e, 0.0, 1e-15);
    for (double e : g.dk) EXPECT_NEAR(e, 0.0, 1e-15);
    for (int64_t x = 0; x < 4; ++x) EXPECT_NEAR(g.dv[x], one.dout[x] + one.dout[4 + x], 1e-15);
  }
  AttnCase empty_seqs({0, 3, 0}, 2, 1, 4, false, 801);  // empty sequences are allowed
  check_case_against_naive(empty_seqs, 1e-6, 1e-5);
}

// A decode step is the last row of a causal forward over the same tokens.
TEST(KernelsAttention, DecodeMatchesLastRowOfCausalForward) {
  for (int64_t L : {int64_t{1}, int64_t{7}, int64_t{300}}) {
    SCOPED_TRACE(::testing::Message() << "cache length " << L);
    AttnCase c({L}, 4, 2, 6, true, 1000 + L);
    const AttnOut ref = naive_forward(c);
    const int64_t row = c.dims.heads * c.dims.head_dim;
    const std::vector<double> last(ref.out.end() - row, ref.out.end());
    const std::vector<double> q_last(c.q.end() - row, c.q.end());
    std::vector<double> out(row, 7.0);
    kernels::attention_decode<double>(q_last.data(), c.k.data(), c.v.data(), out.data(), L, c.dims);
    QV_EXPECT_REL(out, last, 1e-13);
    const auto qf = cast_vector<float>(q_last), kf = cast_vector<float>(c.k),
               vf = cast_vector<float>(c.v);
    std::vector<float> outf(row);
    kernels::attention_decode<float>(qf.data(), kf.data(), vf.data(), outf.data(), L, c.dims);
    QV_EXPECT_REL(outf, last, 2e-6);
  }
}

TEST(KernelsAttention, RejectsBadShapes) {
  AttnCase c({3, 2}, 4, 2, 4, false, 900);
  std::vector<float> q(c.q.size()), k(c.k.size()), v(c.v.size()), out(q.size()), lse(20);
  auto run = [&](const std::vector<int64_t>& cu, AttentionDims d) {
    kernels::attention_forward<float>(q.data(), k.data(), v.data(), out.data(), lse.data(),
                                      cu.data(), static_cast<int64_t>(cu.size()) - 1, d);
  };
  EXPECT_NO_THROW(run(c.cu, c.dims));
  EXPECT_THROW(run({0, 3, 4}, c.dims), Error);     // does not cover all tokens
  EXPECT_THROW(run({1, 3, 5}, c.dims), Error);     // does not start at 0
  EXPECT_THROW(run({0, 4, 3, 5}, c.dims), Error);  // decreasing
  AttentionDims bad = c.dims;
  bad.kv_heads = 3;
  EXPECT_THROW(run(c.cu, bad), Error);
}

}  // namespace
}  // namespace qv
