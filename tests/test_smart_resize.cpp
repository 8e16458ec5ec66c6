// smart_resize against the grids the HF processor produced for the fixture images, Python
// rounding semantics, and the video rule and frame sampling.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/image/image_preprocess.h"
#include "data/image/smart_resize.h"
#include "image_test_utils.h"

namespace qv::data {
namespace {

TEST(SmartResize, GridsMatchHfForEveryFixtureImageAndSetting) {
  const auto settings =
      nlohmann::json::parse(io::read_file(qv::testing::image_fixture_dir() + "/settings.json"));
  int checked = 0;
  for (const auto& [file, info] : settings["files"].items()) {
    const int64_t w = info["size_wh"][0], h = info["size_wh"][1];
    for (const auto& [name, s] : settings["settings"].items()) {
      ImageProcessorConfig cfg;
      cfg.patch_size = s["patch_size"];
      cfg.temporal_patch_size = s["temporal_patch_size"];
      cfg.merge_size = s["merge_size"];
      cfg.min_pixels = s["min_pixels"];
      cfg.max_pixels = s["max_pixels"];
      const VisionGrid g = image_grid(h, w, cfg);
      const auto& want = info[name]["grid_thw"];
      EXPECT_EQ(g.t, want[0].get<int64_t>()) << file << " " << name;
      EXPECT_EQ(g.h, want[1].get<int64_t>()) << file << " " << name;
      EXPECT_EQ(g.w, want[2].get<int64_t>()) << file << " " << name;
      EXPECT_EQ(g.patches(), info[name]["pixel_values_shape"][0].get<int64_t>());
      ++checked;
    }
  }
  EXPECT_EQ(checked, 12);
}

// Expected values below are worked by hand from HF's Python (round() ties to even).
TEST(SmartResize, RoundsHalfToEvenLikePython) {
  // 48 / 32 = 1.5 -> 2; 80 / 32 = 2.5 -> 2 (half-up would give 3); 112 / 32 = 3.5 -> 4.
  const ResizedSize a = smart_resize(48, 80, 32, 0, 1 << 30);
  EXPECT_EQ(a.height, 64);
  EXPECT_EQ(a.width, 64);
  EXPECT_EQ(smart_resize(112, 112, 32, 0, 1 << 30).height, 128);
}

TEST(SmartResize, BudgetsAreRespected) {
  for (int64_t h : {1, 7, 31, 100, 417, 1000, 4321})
    for (int64_t w : {1, 9, 32, 333, 2048, 5000}) {
      if (std::max(h, w) > 200 * std::min(h, w)) continue;
      const ResizedSize s = smart_resize(h, w, 32, 65536, 16777216);
      EXPECT_EQ(s.height % 32, 0);
      EXPECT_EQ(s.width % 32, 0);
      EXPECT_GE(s.height * s.width, 65536) << h << "x" << w;
      EXPECT_LE(s.height * s.width, 16777216) << h << "x" << w;
    }
}

TEST(SmartResize, TinyAndExtremeImages) {
  // 1x1: both sides round to 0, the min_pixels branch scales by sqrt(65536) = 256 -> 256x256.
  const ResizedSize one = smart_resize(1, 1, 32, 65536, 16777216);
  EXPECT_EQ(one.height, 256);
  EXPECT_EQ(one.width, 256);
  // Aspect ratio above 200 is an error (1x5000); exactly 200 is fine.
  EXPECT_THROW(smart_resize(1, 5000, 32, 65536, 16777216), Error);
  EXPECT_THROW(smart_resize(5000, 1, 32, 65536, 16777216), Error);
  EXPECT_NO_THROW(smart_resize(1, 200, 32, 65536, 16777216));
  EXPECT_THROW(smart_resize(0, 10, 32, 65536, 16777216), Error);
  // Nothing rescues a side that rounds to 0 when min_pixels is 0: an error, not an empty image.
  EXPECT_THROW(smart_resize(10, 100, 32, 0, 16777216), Error);
}

TEST(SmartResize, VideoBudgetCountsFrames) {
  // 8 frames of 480x640 with a budget of 8 * 256 * 256: beta = sqrt(8*480*640 / 524288).
  const ResizedSize s = smart_resize_video(8, 480, 640, 2, 32, 4096, 8 * 256 * 256);
  EXPECT_LE(8 * s.height * s.width, 8 * 256 * 256);
  EXPECT_EQ(s.height % 32, 0);
  EXPECT_GT(s.height * s.width, 8 * 256 * 256 / 8 / 2);
  // The same frame size without the frame count in the budget is larger.
  const ResizedSize single = smart_resize(480, 640, 32, 4096, 8 * 256 * 256);
  EXPECT_GT(single.height * single.width, s.height * s.width);
  EXPECT_THROW(smart_resize_video(1, 480, 640, 2, 32, 4096, 1 << 24), Error);
  // Frames below the factor are first scaled so the shorter side reaches it.
  const ResizedSize small = smart_resize_video(4, 10, 20, 2, 32, 4096, 1 << 24);
  EXPECT_EQ(small.height % 32, 0);
  EXPECT_GE(small.width, small.height);
}

TEST(SmartResize, SampleFrameIndicesLikeQwen3VLVideoProcessor) {
  // 10 frames at 5 fps, sampled at 2 fps: int(10 / 5 * 2) = 4 -> linspace(0, 9, 4).
  EXPECT_EQ(sample_frame_indices(10, 5.0, 2.0, 4, 768), (std::vector<int64_t>{0, 3, 6, 9}));
  // Too few by fps: raised to min_frames, then capped by the frame count.
  EXPECT_EQ(sample_frame_indices(7, 30.0, 2.0, 4, 768), (std::vector<int64_t>{0, 2, 4, 6}));
  EXPECT_EQ(sample_frame_indices(3, 30.0, 2.0, 4, 768), (std::vector<int64_t>{0, 1, 2}));
  // linspace(0, 5, 3) = [0, 2.5, 5]: numpy rounds 2.5 to 2.
  EXPECT_EQ(sample_frame_indices(6, 1.0, 0.5, 1, 768), (std::vector<int64_t>{0, 2, 5}));
  EXPECT_EQ(sample_frame_indices(1000, 10.0, 2.0, 4, 5).size(), 5u);
  EXPECT_THROW(sample_frame_indices(0, 30.0, 2.0, 4, 768), Error);
}

}  // namespace
}  // namespace qv::data
