// Helpers for the kernel tests: random data, error measures and finite-difference gradients.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <vector>

namespace qv::testing {

inline std::vector<double> random_vector(size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

template <typename To, typename From>
std::vector<To> cast_vector(const std::vector<From>& v) {
  return std::vector<To>(v.begin(), v.end());
}

// max |a - b| / max(max |b|, floor): the error relative to the reference's scale.
template <typename A, typename B>
double rel_err(const std::vector<A>& a, const std::vector<B>& b, double floor = 1e-30) {
  double diff = 0, scale = floor;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

// Expects rel_err(a, b) < tol; prints the error when QV_PRINT_KERNEL_ERRORS is set, which is
// how the figures in reports are gathered.
#define QV_EXPECT_REL(a, b, tol) ::qv::testing::expect_rel(a, b, tol, #a " vs " #b, __LINE__)

template <typename A, typename B>
void expect_rel(const std::vector<A>& a, const std::vector<B>& b, double tol, const char* what,
                int line) {
  ASSERT_EQ(a.size(), b.size()) << what;
  const double err = rel_err(a, b);
  EXPECT_LT(err, tol) << what;
  if (std::getenv("QV_PRINT_KERNEL_ERRORS"))
    std::cout << "  [err] " << ::testing::UnitTest::GetInstance()->current_test_info()->name()
              << ":" << line << " " << what << " = " << err << " (tol " << tol << ")\n";
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Indices to perturb: all of [0, n) when n <= limit, else `limit` distinct random ones.
inline std::vector<size_t> sample_indices(size_t n, size_t limit, uint64_t seed) {
  std::vector<size_t> idx(n);
  for (size_t i = 0; i < n; ++i) idx[i] = i;
  if (n <= limit) return idx;
  std::mt19937_64 rng(seed);
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(limit);
  return idx;
}

// Gradient of phi() with respect to x[i] for i in idx, by the fourth-order central difference
// (f(-2h) - 8 f(-h) + 8 f(h) - f(2h)) / 12h. Its truncation error is O(h^4), so h = 1e-3 keeps
// both truncation and rounding far below the 1e-7 relative tolerances of the tests. phi must
// read x through the reference it captured; x is restored afterwards.
template <typename Phi>
std::vector<double> numeric_grad(std::vector<double>& x, const std::vector<size_t>& idx, Phi phi,
                                 double h = 1e-3) {
  std::vector<double> g(idx.size());
  for (size_t n = 0; n < idx.size(); ++n) {
    double& xi = x[idx[n]];
    const double x0 = xi;
    xi = x0 + h;
    const double f1 = phi();
    xi = x0 - h;
    const double fm1 = phi();
    xi = x0 + 2 * h;
    const double f2 = phi();
    xi = x0 - 2 * h;
    const double fm2 = phi();
    xi = x0;
    g[n] = (fm2 - 8 * fm1 + 8 * f1 - f2) / (12 * h);
  }
  return g;
}

inline std::vector<double> pick(const std::vector<double>& v, const std::vector<size_t>& idx) {
  std::vector<double> out(idx.size());
  for (size_t n = 0; n < idx.size(); ++n) out[n] = v[idx[n]];
  return out;
}

}  // namespace qv::testing
