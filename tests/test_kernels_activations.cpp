// SwiGLU and GELU (tanh and erf) against their formulas; backward by finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "kernel_test_utils.h"
#include "kernels/activations.h"

namespace qv {
namespace {

using testing::cast_vector;
using testing::numeric_grad;
using testing::random_vector;
using testing::sample_indices;

double silu(double g) {
  return g / (1 + std::exp(-g));
}
double gelu_tanh(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
double gelu_erf(double x) {
  return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
}

// Inputs spanning the interesting range, including large magnitudes where exp overflows.
std::vector<double> activation_inputs(uint64_t seed) {
  auto x = random_vector(61, seed, -6, 6);
  for (double v : {0.0, -30.0, 30.0, -100.0, 100.0}) x.push_back(v);
  return x;
}

std::vector<double> map(const std::vector<double>& x, double (*f)(double)) {
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = f(x[i]);
  return y;
}

using Forward = std::function<void(const std::vector<double>&, std::vector<double>&)>;

template <typename T>
std::vector<double> unary_forward(void (*fn)(const T*, T*, int64_t), const std::vector<double>& x,
                                  bool in_place) {
  auto xt = cast_vector<T>(x);
  std::vector<T> y(x.size(), T(7));
  fn(xt.data(), in_place ? xt.data() : y.data(), static_cast<int64_t>(x.size()));
  return cast_vector<double>(in_place ? xt : y);
}

template <typename T>
std::vector<double> unary_backward(void (*fn)(const T*, const T*, T*, int64_t),
                                   const std::vector<double>& x, const std::vector<double>& dy) {
  const auto xt = cast_vector<T>(x), dyt = cast_vector<T>(dy);
  std::vector<T> dx(x.size(), T(7));
  fn(xt.data(), dyt.data(), dx.data(), static_cast<int64_t>(x.size()));
  return cast_vector<double>(dx);
}

void check_unary(double (*ref)(double), void (*fwd_d)(const double*, double*, int64_t),
                 void (*fwd_f)(const float*, float*, int64_t),
                 void (*bwd_d)(const double*, const double*, double*, int64_t),
                 void (*bwd_f)(const float*, const float*, float*, int64_t)) {
  auto x = activation_inputs(1);
  const auto y_ref = map(x, ref);
  QV_EXPECT_REL(unary_forward<double>(fwd_d, x, false), y_ref, 1e-15);
  QV_EXPECT_REL(unary_forward<float>(fwd_f, x, false), y_ref, 1e-6);
  EXPECT_EQ(unary_forward<double>(fwd_d, x, true), unary_forward<double>(fwd_d, x, false));
  EXPECT_EQ(unary_forward<float>(fwd_f, x, true), unary_forward<float>(fwd_f, x, false));

  const auto dy = random_vector(x.size(), 2);
  // Elementwise, so the gradient of phi = sum(dy * f(x)) at x[i] involves only that term.
  const auto dx = unary_backward<double>(bwd_d, x, dy);
  std::vector<double> numeric(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    std::vector<double> xi = {x[i]};
    numeric[i] = dy[i] * numeric_grad(xi, {0}, [&] { return ref(xi[0]); })[0];
  }
  QV_EXPECT_REL(dx, numeric, 1e-9);
  QV_EXPECT_REL(unary_backward<float>(bwd_f, x, dy), dx, 1e-6);
}

TEST(KernelsActivations, GeluTanh) {
  check_unary(gelu_tanh, kernels::gelu_tanh_forward<double>, kernels::gelu_tanh_forward<float>,
              kernels::gelu_tanh_backward<double>, kernels::gelu_tanh_backward<float>);
}

TEST(KernelsActivations, GeluErf) {
  check_unary(gelu_erf, kernels::gelu_erf_forward<double>, kernels::gelu_erf_forward<float>,
              kernels::gelu_erf_backward<double>, kernels::gelu_erf_backward<float>);
}

TEST(KernelsActivations, GeluVariantsDifferOnlyByTheApproximation) {
  const auto x = activation_inputs(3);
  const auto a = unary_forward<double>(kernels::gelu_tanh_forward<double>, x, false);
  const auto b = unary_forward<double>(kernels::gelu_erf_forward<double>, x, false);
  QV_EXPECT_REL(a, b, 1e-3);
}

template <typename T>
std::vector<double> run_swiglu(const std::vector<double>& g, const std::vector<double>& u) {
  const auto gt = cast_vector<T>(g), ut = cast_vector<T>(u);
  std::vector<T> out(g.size(), T(7));
  kernels::swiglu_forward<T>(gt.data(), ut.data(), out.data(), static_cast<int64_t>(g.size()));
  return cast_vector<double>(out);
}

template <typename T>
std::pair<std::vector<double>, std::vector<double>> run_swiglu_backward(
    const std::vector<double>& g, const std::vector<double>& u, const std::vector<double>& dy) {
  const auto gt = cast_vector<T>(g), ut = cast_vector<T>(u), dyt = cast_vector<T>(dy);
  std::vector<T> dg(g.size(), T(7)), du(g.size(), T(7));
  kernels::swiglu_backward<T>(gt.data(), ut.data(), dyt.data(), dg.data(), du.data(),
                              static_cast<int64_t>(g.size()));
  return {cast_vector<double>(dg), cast_vector<double>(du)};
}

TEST(KernelsActivations, SwiGlu) {
  auto g = activation_inputs(4);
  auto u = random_vector(g.size(), 5, -2, 2);
  std::vector<double> ref(g.size());
  for (size_t i = 0; i < g.size(); ++i) ref[i] = silu(g[i]) * u[i];
  QV_EXPECT_REL(run_swiglu<double>(g, u), ref, 1e-15);
  QV_EXPECT_REL(run_swiglu<float>(g, u), ref, 1e-6);

  const auto dy = random_vector(g.size(), 6);
  const auto [dg, du] = run_swiglu_backward<double>(g, u, dy);
  std::vector<double> num_g(g.size()), num_u(g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    std::vector<double> gi = {g[i]}, ui = {u[i]};
    auto phi = [&] { return dy[i] * silu(gi[0]) * ui[0]; };
    num_g[i] = numeric_grad(gi, {0}, phi)[0];
    num_u[i] = numeric_grad(ui, {0}, phi)[0];
  }
  QV_EXPECT_REL(dg, num_g, 1e-9);
  QV_EXPECT_REL(du, num_u, 1e-9);
  const auto [dgf, duf] = run_swiglu_backward<float>(g, u, dy);
  QV_EXPECT_REL(dgf, dg, 1e-6);
  QV_EXPECT_REL(duf, du, 1e-6);
}

TEST(KernelsActivations, LargeArraysUseThreadsAndStillMatch) {
  const auto x = random_vector(100000, 7, -5, 5);
  QV_EXPECT_REL(unary_forward<double>(kernels::gelu_tanh_forward<double>, x, true),
                map(x, gelu_tanh), 1e-15);
  auto a = x;
  const auto b = random_vector(x.size(), 8);
  kernels::add_inplace<double>(a.data(), b.data(), static_cast<int64_t>(a.size()));
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], x[i] + b[i]);
}

}  // namespace
}  // namespace qv
