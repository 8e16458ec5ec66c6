#include <gtest/gtest.h>

#include <cmath>

#include "core/tensor.h"

namespace qv {
namespace {

TEST(Tensor, ShapeAndNumel) {
  Tensor t(DType::kF32, {2, 3, 4});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_EQ(t.dim(-1), 4);
  EXPECT_THROW(t.reshaped({5, 5}), Error);
}

TEST(Tensor, Bf16RoundTripRoundsToNearestEven) {
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f)), 1.0f);
  // 1 + 2^-8 lies exactly halfway between two bf16 values; ties go to the even one (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.0f + std::ldexp(1.0f, -6));
}

TEST(Tensor, F16RoundTrip) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.1f}) {
    const float back = f16_to_f32(f32_to_f16(v));
    EXPECT_NEAR(back, v, std::fabs(v) * 1e-3 + 1e-12) << v;
  }
  EXPECT_TRUE(std::isinf(f16_to_f32(f32_to_f16(1e6f))));
}

}  // namespace
}  // namespace qv
