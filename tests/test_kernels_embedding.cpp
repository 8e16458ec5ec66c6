// Embedding lookup and weighted gathers against plain loops; backward by finite differences.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "kernel_test_utils.h"
#include "kernels/embedding.h"

namespace qv {
namespace {

using testing::cast_vector;
using testing::numeric_grad;
using testing::random_vector;
using testing::sample_indices;

std::vector<double> naive_gather(const std::vector<int64_t>& index,
                                 const std::vector<double>& weight,
                                 const std::vector<double>& table, int64_t n, int64_t taps,
                                 int64_t D) {
  std::vector<double> out(n * D, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < taps; ++c)
      for (int64_t j = 0; j < D; ++j)
        out[i * D + j] += weight[i * taps + c] * table[index[i * taps + c] * D + j];
  return out;
}

TEST(KernelsEmbedding, ForwardGathersRows) {
  const int64_t vocab = 7, D = 5;
  const std::vector<int64_t> ids = {3, 0, 6, 3, 1};
  const auto table = random_vector(vocab * D, 1);
  const std::vector<double> ones(ids.size(), 1.0);
  const auto ref = naive_gather(ids, ones, table, 5, 1, D);
  std::vector<double> got(ids.size() * D);
  kernels::embedding_forward<double>(ids.data(), table.data(), got.data(), 5, vocab, D);
  EXPECT_EQ(got, ref);  // a copy is exact
  const auto tf = cast_vector<float>(table);
  std::vector<float> outf(ids.size() * D);
  kernels::embedding_forward<float>(ids.data(), tf.data(), outf.data(), 5, vocab, D);
  QV_EXPECT_REL(outf, ref, 1e-7);
}

TEST(KernelsEmbedding, ForwardRejectsIdsOutsideTheVocabulary) {
  const int64_t vocab = 4, D = 2;
  std::vector<float> table(vocab * D), out(2 * D);
  for (int64_t bad : {int64_t{4}, int64_t{-1}, int64_t{151936}}) {
    const std::vector<int64_t> ids = {1, bad};
    try {
      kernels::embedding_forward<float>(ids.data(), table.data(), out.data(), 2, vocab, D);
      ADD_FAILURE() << "no error for id " << bad;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(std::to_string(bad)), std::string::npos) << msg;
      EXPECT_NE(msg.find("size 4"), std::string::npos) << msg;
    }
  }
}

TEST(KernelsEmbedding, BackwardScatterAddsRepeatedIdsAndHonoursSkip) {
  const int64_t vocab = 6, D = 300, n = 5;  // D above one column block, threads split it
  const std::vector<int64_t> ids = {2, 4, 2, 0, 2};
  const std::vector<uint8_t> skip = {0, 0, 1, 0, 0};
  const auto dout = random_vector(n * D, 2);
  auto dtable = random_vector(vocab * D, 3);  // existing gradient: accumulated into
  std::vector<double> ref = dtable;
  for (int64_t i = 0; i < n; ++i)
    if (!skip[i])
      for (int64_t j = 0; j < D; ++j) ref[ids[i] * D + j] += dout[i * D + j];
  kernels::embedding_backward<double>(ids.data(), dout.data(), dtable.data(), n, D, skip.data());
  QV_EXPECT_REL(dtable, ref, 1e-15);

  // Without skip every row counts; compare with finite differences of sum(dout * out).
  auto table = random_vector(vocab * D, 4);
  const std::vector<double> ones(n, 1.0);
  auto phi = [&] { return testing::dot(dout, naive_gather(ids, ones, table, n, 1, D)); };
  std::vector<double> grad(vocab * D, 0.0);
  kernels::embedding_backward<double>(ids.data(), dout.data(), grad.data(), n, D);
  const auto idx = sample_indices(table.size(), 200, 5);
  QV_EXPECT_REL(testing::pick(grad, idx), numeric_grad(table, idx, phi), 1e-10);

  std::vector<float> gradf(vocab * D, 0.0f);
  const auto doutf = cast_vector<float>(dout);
  kernels::embedding_backward<float>(ids.data(), doutf.data(), gradf.data(), n, D);
  QV_EXPECT_REL(gradf, grad, 1e-6);
}

TEST(KernelsEmbedding, WeightedGatherForwardAndBackward) {
  const int64_t rows = 9, D = 7, n = 11, taps = 4;  // bilinear: four taps per output row
  std::vector<int64_t> index(n * taps);
  for (size_t i = 0; i < index.size(); ++i) index[i] = static_cast<int64_t>((i * 5 + i / 3) % rows);
  const auto weight = random_vector(n * taps, 6, 0, 1);
  auto table = random_vector(rows * D, 7);
  const auto ref = naive_gather(index, weight, table, n, taps, D);

  std::vector<double> out(n * D, 9.0);
  kernels::weighted_gather_forward<double>(index.data(), weight.data(), table.data(), out.data(), n,
                                           taps, D);
  QV_EXPECT_REL(out, ref, 1e-15);
  const auto wf = cast_vector<float>(weight), tf = cast_vector<float>(table);
  std::vector<float> outf(n * D);
  kernels::weighted_gather_forward<float>(index.data(), wf.data(), tf.data(), outf.data(), n, taps,
                                          D);
  QV_EXPECT_REL(outf, ref, 1e-6);

  const auto dout = random_vector(n * D, 8);
  auto phi = [&] { return testing::dot(dout, naive_gather(index, weight, table, n, taps, D)); };
  std::vector<double> grad(rows * D, 0.0);
  kernels::weighted_gather_backward<double>(index.data(), weight.data(), dout.data(), grad.data(),
                                            n, taps, D);
  QV_EXPECT_REL(grad, numeric_grad(table, sample_indices(table.size(), table.size(), 0), phi),
                1e-10);
  // Accumulates: a second call doubles it.
  auto twice = grad;
  kernels::weighted_gather_backward<double>(index.data(), weight.data(), dout.data(), twice.data(),
                                            n, taps, D);
  for (double& v : grad) v *= 2;
  QV_EXPECT_REL(twice, grad, 1e-15);
}

}  // namespace
}  // namespace qv
