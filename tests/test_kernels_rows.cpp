// Row ops (kernels/rows.h) against plain loops: copies must be exact and adds must equal one
// float add per element, so every comparison is bit-exact (EXPECT_EQ on the buffers).
#include <gtest/gtest.h>

#include <vector>

#include "kernel_test_utils.h"
#include "kernels/rows.h"

namespace qv {
namespace {

using testing::cast_vector;
using testing::random_vector;

int64_t at(const std::vector<int64_t>& index, int64_t i) {
  return index.empty() ? i : index[i];
}
const int64_t* ptr(const std::vector<int64_t>& index) {
  return index.empty() ? nullptr : index.data();
}

// Sizes around the threading threshold (1 << 15 floats) so both the serial and the threaded
// paths are compared.
struct Case {
  int64_t n, D;
};
const Case kCases[] = {{1, 1}, {5, 7}, {64, 1024}, {300, 257}};

// A permutation of `rows` rows taking the first n (distinct destinations), seeded.
std::vector<int64_t> distinct_rows(int64_t rows, int64_t n, uint64_t seed) {
  std::vector<int64_t> p(rows);
  for (int64_t i = 0; i < rows; ++i) p[i] = i;
  const auto r = random_vector(rows, seed, 0, 1);
  for (int64_t i = rows - 1; i > 0; --i)
    std::swap(p[i], p[static_cast<int64_t>(r[i] * (i + 1)) % (i + 1)]);
  p.resize(n);
  return p;
}

TEST(KernelsRows, CopyRowsGathersScattersAndMovesLikeALoop) {
  for (const Case& c : kCases) {
    const int64_t rows = c.n + 3;  // the larger buffer has rows the index never names
    const auto src = cast_vector<float>(random_vector(rows * c.D, 11));
    const std::vector<int64_t> none;
    const auto sidx = distinct_rows(rows, c.n, 3), didx = distinct_rows(rows, c.n, 4);
    for (const auto& [s, d] : {std::pair{&sidx, &none}, {&none, &didx}, {&sidx, &didx}}) {
      std::vector<float> want(rows * c.D, -7.0f), got = want;
      for (int64_t i = 0; i < c.n; ++i)
        for (int64_t j = 0; j < c.D; ++j) want[at(*d, i) * c.D + j] = src[at(*s, i) * c.D + j];
      kernels::copy_rows(src.data(), ptr(*s), got.data(), ptr(*d), c.n, c.D);
      EXPECT_EQ(got, want) << "n " << c.n << " D " << c.D;
    }
  }
}

TEST(KernelsRows, AddRowsAddsOnceToEachNamedRow) {
  for (const Case& c : kCases) {
    const int64_t rows = c.n + 3;
    const auto src = cast_vector<float>(random_vector(rows * c.D, 21));
    const auto base = cast_vector<float>(random_vector(rows * c.D, 22));
    const auto sidx = distinct_rows(rows, c.n, 5), didx = distinct_rows(rows, c.n, 6);
    std::vector<float> want = base, got = base;
    for (int64_t i = 0; i < c.n; ++i)
      for (int64_t j = 0; j < c.D; ++j) want[didx[i] * c.D + j] += src[sidx[i] * c.D + j];
    kernels::add_rows(src.data(), sidx.data(), got.data(), didx.data(), c.n, c.D);
    EXPECT_EQ(got, want) << "n " << c.n << " D " << c.D;
  }
}

TEST(KernelsRows, CopyColumnsSplitsAndJoinsQkv) {
  for (const Case& c : kCases) {
    const int64_t N = c.n, D = c.D;
    const auto qkv = cast_vector<float>(random_vector(N * 3 * D, 31));
    std::vector<float> part[3], joined(N * 3 * D, 0.0f);
    for (int p = 0; p < 3; ++p) {
      part[p].assign(N * D, 0.0f);
      kernels::copy_columns(qkv.data() + p * D, 3 * D, part[p].data(), D, N, D);
      std::vector<float> want(N * D);
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = 0; j < D; ++j) want[i * D + j] = qkv[i * 3 * D + p * D + j];
      EXPECT_EQ(part[p], want) << "part " << p << " N " << N << " D " << D;
      kernels::copy_columns(part[p].data(), D, joined.data() + p * D, 3 * D, N, D);
    }
    EXPECT_EQ(joined, qkv) << "N " << N << " D " << D;
  }
}

}  // namespace
}  // namespace qv
