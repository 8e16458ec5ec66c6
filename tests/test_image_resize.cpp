// Bicubic resize against Pillow's output on the fixture images (the reference's own decoded
// RGB goes in, so decoding does not enter this comparison), plus invariants.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "data/image/image_resize.h"
#include "image_test_utils.h"
#include "io/safetensors.h"

namespace qv::data {
namespace {

TEST(ImageResize, MatchesPillowBicubicOnFixtures) {
  int checked = 0;
  for (const std::string& key : qv::testing::image_fixture_keys()) {
    io::SafetensorsFile fixture(qv::testing::image_fixture_dir() + "/" + key + ".safetensors");
    if (!fixture.has("rgb_uint8")) continue;
    const RgbImage source = qv::testing::image_from_tensor(fixture.read("rgb_uint8"));
    for (const char* setting : {"qwen3vl_default", "qwen3vl_small"}) {
      const std::string name = std::string(setting) + ".resized_rgb_uint8";
      if (!fixture.has(name)) continue;
      const RgbImage expected = qv::testing::image_from_tensor(fixture.read(name));
      const RgbImage got = resize_bicubic(source, expected.width, expected.height);
      ASSERT_EQ(got.width, expected.width);
      ASSERT_EQ(got.height, expected.height);
      const auto d = qv::testing::compare_bytes(got.pixels, expected.pixels);
      EXPECT_EQ(d.max, 0) << key << " " << setting << " " << source.width << "x" << source.height
                          << " -> " << got.width << "x" << got.height << ": " << d.differing
                          << " values differ, mean |diff| " << d.mean;
      ++checked;
    }
  }
  EXPECT_GE(checked, 4);
}

TEST(ImageResize, ConstantImageStaysConstant) {
  // The fixed-point weights of every output sum to 1 within rounding, so a flat image stays flat
  // whether shrinking, enlarging or mixing the two.
  for (auto [w, h, ow, oh] :
       {std::array<int, 4>{37, 23, 8, 64}, {5, 5, 123, 77}, {1, 1, 32, 32}, {300, 2, 17, 1}}) {
    RgbImage img(w, h);
    for (int i = 0; i < w * h; ++i) {
      img.pixels[3 * i] = 0;
      img.pixels[3 * i + 1] = 128;
      img.pixels[3 * i + 2] = 255;
    }
    const RgbImage out = resize_bicubic(img, ow, oh);
    ASSERT_EQ(out.pixels.size(), size_t(ow) * oh * 3);
    for (int i = 0; i < ow * oh; ++i) {
      ASSERT_EQ(out.pixels[3 * i], 0);
      ASSERT_EQ(out.pixels[3 * i + 1], 128);
      ASSERT_EQ(out.pixels[3 * i + 2], 255);
    }
  }
}

TEST(ImageResize, SameSizeIsACopyAndOnePassIsSeparable) {
  std::mt19937 rng(5);
  RgbImage img(31, 19);
  for (auto& v : img.pixels) v = static_cast<uint8_t>(rng());
  EXPECT_EQ(resize_bicubic(img, 31, 19).pixels, img.pixels);
  // Width-only resize treats each row on its own: resizing one row alone gives the same row.
  const RgbImage wide = resize_bicubic(img, 50, 19);
  for (int y = 0; y < img.height; ++y) {
    RgbImage row(img.width, 1);
    std::copy(img.row(y), img.row(y) + img.row_bytes(), row.pixels.begin());
    const RgbImage r = resize_bicubic(row, 50, 1);
    ASSERT_TRUE(std::equal(r.pixels.begin(), r.pixels.end(), wide.row(y))) << y;
  }
}

TEST(ImageResize, RejectsInvalidSizes) {
  RgbImage img(4, 4);
  EXPECT_THROW(resize_bicubic(img, 0, 4), Error);
  EXPECT_THROW(resize_bicubic(img, 4, -1), Error);
  EXPECT_THROW(resize_bicubic(RgbImage(), 4, 4), Error);
}

}  // namespace
}  // namespace qv::data
