// The vectorisable exp used by the softmax loops, against libm.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernel_test_utils.h"
#include "kernels/cpu/fast_exp.h"

namespace qv {
namespace {

using kernels::cpu::fast_exp;

TEST(KernelsFastExp, FloatWithinTwoUlps) {
  double worst = 0;
  const auto xs = testing::random_vector(200000, 1, -87.3, 88.3);
  for (double xd : xs) {
    const float x = static_cast<float>(xd);
    const double ref = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(fast_exp(x) - ref) / ref);
  }
  EXPECT_LT(worst, 2 * std::numeric_limits<float>::epsilon()) << worst;
  if (std::getenv("QV_PRINT_KERNEL_ERRORS")) std::cout << "  [err] float exp " << worst << "\n";
}

TEST(KernelsFastExp, DoubleWithinTwoUlps) {
  long double worst = 0;
  const auto xs = testing::random_vector(200000, 2, -708, 709);
  for (double x : xs) {
    const long double ref = std::exp(static_cast<long double>(x));
    worst = std::max(worst, std::fabs(fast_exp(x) - ref) / ref);
  }
  EXPECT_LT(worst, 2 * std::numeric_limits<double>::epsilon()) << static_cast<double>(worst);
  if (std::getenv("QV_PRINT_KERNEL_ERRORS"))
    std::cout << "  [err] double exp " << static_cast<double>(worst) << "\n";
}

template <typename T>
void check_specials() {
  const T inf = std::numeric_limits<T>::infinity();
  EXPECT_EQ(fast_exp(T(0)), T(1));
  EXPECT_EQ(fast_exp(-inf), T(0));
  EXPECT_EQ(fast_exp(T(-1e4)), T(0));
  EXPECT_EQ(fast_exp(inf), inf);
  EXPECT_EQ(fast_exp(T(1e4)), inf);
  EXPECT_TRUE(std::isnan(fast_exp(std::numeric_limits<T>::quiet_NaN())));
  // The smallest normal results are still right.
  const T lo = std::log(std::numeric_limits<T>::min()) + T(0.01);
  EXPECT_NEAR(fast_exp(lo) / std::exp(lo), T(1), 4 * std::numeric_limits<T>::epsilon());
}

TEST(KernelsFastExp, SpecialValues) {
  check_specials<float>();
  check_specials<double>();
}

}  // namespace
}  // namespace qv
