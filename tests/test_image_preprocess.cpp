// Rescale + normalise + patchify against the HF processor's pixel_values, the full
// decode -> resize -> patchify pipeline, the patch layout against a naive transcription of
// HF's reshape/permute, video padding, token counts, config parsing and the CLI.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "cli_test_utils.h"
#include "core/error.h"
#include "data/image/image_decode.h"
#include "data/image/image_preprocess.h"
#include "image_test_utils.h"
#include "io/safetensors.h"

namespace qv::data {
namespace {

ImageProcessorConfig small_config() {  // settings.json "qwen3vl_small"
  ImageProcessorConfig cfg;
  cfg.min_pixels = 4096;
  cfg.max_pixels = 65536;
  return cfg;
}

// Bitwise comparison of float arrays; returns the number of differing values.
int64_t count_differences(const std::vector<float>& got, const Tensor& want, float* max_abs) {
  *max_abs = 0;
  int64_t n = 0;
  const float* w = want.data<float>();
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &w[i], sizeof(float)) != 0) ++n;
    *max_abs = std::max(*max_abs, std::fabs(got[i] - w[i]));
  }
  return n;
}

TEST(ImagePreprocess, PatchifyOfResizedFixtureEqualsHfPixelValues) {
  int checked = 0;
  for (const std::string& key : qv::testing::image_fixture_keys()) {
    io::SafetensorsFile fixture(qv::testing::image_fixture_dir() + "/" + key + ".safetensors");
    if (!fixture.has("qwen3vl_small.pixel_values")) continue;
    const RgbImage resized =
        qv::testing::image_from_tensor(fixture.read("qwen3vl_small.resized_rgb_uint8"));
    const Tensor want = fixture.read("qwen3vl_small.pixel_values");
    const Tensor grid = fixture.read("qwen3vl_small.image_grid_thw");
    const VisionItem item = patchify_frames({&resized}, small_config(), false);
    EXPECT_EQ(item.grid.t, grid.data<int64_t>()[0]);
    EXPECT_EQ(item.grid.h, grid.data<int64_t>()[1]);
    EXPECT_EQ(item.grid.w, grid.data<int64_t>()[2]);
    ASSERT_EQ(int64_t(item.pixels.size()), want.numel()) << key;
    float max_abs = 0;
    EXPECT_EQ(count_differences(item.pixels, want, &max_abs), 0)
        << key << " max |diff| " << max_abs;
    ++checked;
  }
  EXPECT_GE(checked, 1);
}

TEST(ImagePreprocess, FullPipelineFromJpegMatchesHf) {
  int checked = 0;
  for (const std::string& key : qv::testing::image_fixture_keys()) {
    io::SafetensorsFile fixture(qv::testing::image_fixture_dir() + "/" + key + ".safetensors");
    const auto bytes = qv::testing::file_bytes(qv::testing::test_image_path(key));
    const RgbImage image = decode_image(bytes.data(), bytes.size(), {}, key);
    for (const char* setting : {"qwen3vl_default", "qwen3vl_small"}) {
      ImageProcessorConfig cfg =
          std::string(setting) == "qwen3vl_small" ? small_config() : ImageProcessorConfig{};
      const VisionItem item = preprocess_image(image, cfg);
      const Tensor grid = fixture.read(std::string(setting) + ".image_grid_thw");
      EXPECT_EQ(item.grid.h, grid.data<int64_t>()[1]) << key << " " << setting;
      EXPECT_EQ(item.grid.w, grid.data<int64_t>()[2]) << key << " " << setting;
      // Where HF's pixel_values are kept compare them; otherwise recompute them from HF's
      // resized image (the fixture README: they follow exactly from it).
      const std::string pv = std::string(setting) + ".pixel_values";
      Tensor want;
      if (fixture.has(pv)) {
        want = fixture.read(pv);
      } else {
        const RgbImage resized = qv::testing::image_from_tensor(
            fixture.read(std::string(setting) + ".resized_rgb_uint8"));
        const VisionItem ref = patchify_frames({&resized}, cfg, false);
        want = Tensor::from_f32(ref.pixels, {int64_t(ref.pixels.size())});
      }
      ASSERT_EQ(int64_t(item.pixels.size()), want.numel()) << key << " " << setting;
      float max_abs = 0;
      EXPECT_EQ(count_differences(item.pixels, want, &max_abs), 0)
          << key << " " << setting << " max |diff| " << max_abs;
      ++checked;
    }
  }
  EXPECT_GE(checked, 2);
}

// HF: patches[T', C, H, W] -> reshape (gt, T, C, gh/M, M, P, gw/M, M, P)
// -> permute (0, 3, 6, 4, 7, 2, 1, 5, 8) -> [gt*gh*gw, C*T*P*P]. Walks the output index and
// reads the source element it names.
float hf_layout_value(const std::vector<const RgbImage*>& frames, const ImageProcessorConfig& cfg,
                      const VisionGrid& g, int64_t row, int64_t col, const float table[3][256]) {
  const int64_t P = cfg.patch_size, T = cfg.temporal_patch_size, M = cfg.merge_size;
  // row = (((t * gh/M + bh) * gw/M + bw) * M + mr) * M + mc
  const int64_t mc = row % M, mr = (row / M) % M, bw = (row / (M * M)) % (g.w / M);
  const int64_t bh = (row / (M * M * (g.w / M))) % (g.h / M);
  const int64_t t = row / (M * M * (g.w / M) * (g.h / M));
  // col = ((c * T + tt) * P + pr) * P + pc
  const int64_t pc = col % P, pr = (col / P) % P, tt = (col / (P * P)) % T, c = col / (P * P * T);
  const int64_t frame = std::min<int64_t>(t * T + tt, int64_t(frames.size()) - 1);
  const int64_t y = (bh * M + mr) * P + pr, x = (bw * M + mc) * P + pc;
  return table[c][frames[frame]->row(static_cast<int>(y))[x * 3 + c]];
}

TEST(ImagePreprocess, LayoutMatchesHfReshapeAndPermuteAndVideoPadsWithLastFrame) {
  ImageProcessorConfig cfg;
  cfg.patch_size = 4;  // small, so that the walk over every element stays cheap
  cfg.image_mean = {0.1f, 0.2f, 0.3f};
  cfg.image_std = {0.7f, 0.8f, 0.9f};
  std::mt19937 rng(11);
  std::vector<RgbImage> frames(3, RgbImage(24, 16));
  for (auto& f : frames)
    for (auto& v : f.pixels) v = static_cast<uint8_t>(rng());
  std::vector<const RgbImage*> views = {&frames[0], &frames[1], &frames[2]};
  float table[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v)
      table[c][v] = (static_cast<float>(v * (1.0 / 255.0)) - cfg.image_mean[c]) / cfg.image_std[c];
  const VisionItem item = patchify_frames(views, cfg, true);
  EXPECT_TRUE(item.is_video);
  EXPECT_EQ(item.grid.t, 2);  // 3 frames padded to 4
  EXPECT_EQ(item.grid.h, 4);
  EXPECT_EQ(item.grid.w, 6);
  const int64_t dim = cfg.patch_dim();
  ASSERT_EQ(int64_t(item.pixels.size()), item.grid.patches() * dim);
  for (int64_t r = 0; r < item.grid.patches(); ++r)
    for (int64_t c = 0; c < dim; ++c)
      ASSERT_EQ(item.pixels[r * dim + c], hf_layout_value(views, cfg, item.grid, r, c, table))
          << "row " << r << " col " << c;
  // A single image is its own frame twice.
  const VisionItem image = patchify_frames({&frames[0]}, cfg, false);
  EXPECT_EQ(image.grid.t, 1);
  for (int64_t r = 0; r < image.grid.patches(); ++r)
    for (int64_t c = 0; c < dim; ++c)
      ASSERT_EQ(image.pixels[r * dim + c],
                hf_layout_value({&frames[0]}, cfg, image.grid, r, c, table));
}

TEST(ImagePreprocess, RejectsFramesNotOnTheGrid) {
  RgbImage a(64, 48), b(64, 64);
  EXPECT_THROW(patchify_frames({&a}, ImageProcessorConfig{}, false), Error);  // 48 % 32
  RgbImage c(64, 64);
  EXPECT_THROW(patchify_frames({&b, &a}, ImageProcessorConfig{}, true), Error);
  EXPECT_NO_THROW(patchify_frames({&b, &c}, ImageProcessorConfig{}, true));
}

TEST(ImagePreprocess, TinyAndExtremeImagesThroughThePipeline) {
  RgbImage one(1, 1);
  one.pixels = {255, 0, 128};
  const VisionItem item = preprocess_image(one, ImageProcessorConfig{});
  EXPECT_EQ(item.grid.h, 16);  // 1x1 -> 256x256 (see SmartResize.TinyAndExtremeImages)
  EXPECT_EQ(item.grid.w, 16);
  EXPECT_EQ(item.pixels[0], 1.0f);  // red channel of a flat red-ish image: (1 - .5) / .5
  EXPECT_THROW(preprocess_image(RgbImage(5000, 1), ImageProcessorConfig{}), Error);
}

TEST(ImagePreprocess, VideoUsesTheFrameBudgetAndFusedNormalisation) {
  VideoProcessorConfig cfg;
  std::vector<RgbImage> frames(5, RgbImage(64, 48));
  for (size_t i = 0; i < frames.size(); ++i)
    std::fill(frames[i].pixels.begin(), frames[i].pixels.end(), static_cast<uint8_t>(40 * i));
  const VisionItem v = preprocess_video(frames, cfg);
  EXPECT_TRUE(v.is_video);
  EXPECT_EQ(v.grid.t, 3);  // 5 frames -> padded to 6
  const ResizedSize s = smart_resize_video(5, 48, 64, 2, 32, 4096, 25165824);
  EXPECT_EQ(v.grid.h * 16, s.height);
  EXPECT_EQ(v.grid.w * 16, s.width);
  // Fused form of torchvision: (x - 127.5) / 127.5 in float32.
  const float last = (160.0f - 127.5f) / 127.5f;
  EXPECT_EQ(v.pixels.back(), last);
  EXPECT_THROW(preprocess_video({frames[0]}, cfg), Error);  // fewer frames than T
}

TEST(ImagePreprocess, TokenCounts) {
  const ImageProcessorConfig cfg;
  EXPECT_EQ(merged_token_count({1, 26, 34}, 2), 221);
  EXPECT_EQ(merged_token_count({3, 4, 6}, 2), 18);
  // 000000018 is 500x668: default grid [1, 42, 32] -> 336 tokens (settings.json grid / 4).
  EXPECT_EQ(image_token_count(668, 500, cfg), 42 * 32 / 4);
}

TEST(ImageProcessorConfigTest, ParsesHfJson) {
  const ImageProcessorConfig a = parse_image_processor_config(R"({
    "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2,
    "size": {"shortest_edge": 3136, "longest_edge": 1003520},
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "rescale_factor": 0.00392156862745098, "do_normalize": true})");
  EXPECT_EQ(a.patch_size, 14);
  EXPECT_EQ(a.factor(), 28);
  EXPECT_EQ(a.min_pixels, 3136);
  EXPECT_EQ(a.max_pixels, 1003520);
  EXPECT_EQ(a.image_mean[0], 0.48145466f);
  EXPECT_EQ(a.image_std[2], 0.27577711f);
  const ImageProcessorConfig b =
      parse_image_processor_config(R"({"size": {"shortest_edge": 1, "longest_edge": 2},
                                      "min_pixels": 4096, "max_pixels": 65536})");
  EXPECT_EQ(b.min_pixels, 4096);  // explicit keys win over the size dict
  EXPECT_EQ(b.max_pixels, 65536);
  const ImageProcessorConfig d = parse_image_processor_config("{}");
  EXPECT_EQ(d.patch_size, 16);
  EXPECT_EQ(d.min_pixels, 65536);
  EXPECT_EQ(d.max_pixels, 16777216);
  EXPECT_THROW(parse_image_processor_config("{\"patch_size\": 0}"), Error);
  EXPECT_THROW(parse_image_processor_config("{\"image_std\": [1, 0, 1]}"), Error);
  EXPECT_THROW(parse_image_processor_config("not json", "x.json"), Error);
}

TEST(PreprocessCommand, WritesHfPixelValuesAndGrid) {
  const std::string out = (std::filesystem::temp_directory_path() /
                           ("qv_preprocess_" + std::to_string(getpid()) + ".safetensors"))
                              .string();
  const std::string image = qv::testing::test_image_path("000000018");
  const auto r = qv::testing::run_qwen3vl("preprocess --image " + image + " --out " + out +
                                          " --min-pixels 4096 --max-pixels 65536");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("grid_thw [1, 18, 12]"), std::string::npos) << r.output;
  const io::TensorMap got = io::load_safetensors(out);
  std::filesystem::remove(out);
  io::SafetensorsFile fixture(qv::testing::image_fixture_dir() + "/000000018.safetensors");
  const Tensor want_grid = fixture.read("qwen3vl_small.image_grid_thw");
  const Tensor& grid = got.at("image_grid_thw");
  ASSERT_EQ(grid.dtype(), DType::kI64);
  EXPECT_EQ(grid.shape(), (Shape{1, 3}));
  EXPECT_EQ(std::memcmp(grid.data<int64_t>(), want_grid.data<int64_t>(), 24), 0);
  const Tensor& pv = got.at("pixel_values");
  EXPECT_EQ(pv.dtype(), DType::kF32);
  EXPECT_EQ(pv.shape(), (Shape{216, 1536}));
  if (fixture.has("qwen3vl_small.pixel_values")) {
    const Tensor want = fixture.read("qwen3vl_small.pixel_values");
    EXPECT_EQ(std::memcmp(pv.raw(), want.raw(), want.nbytes()), 0);
  }
}

TEST(PreprocessCommand, ReportsBadInputWithItsPath) {
  const std::string bad = (std::filesystem::temp_directory_path() /
                           ("qv_preprocess_bad_" + std::to_string(getpid()) + ".jpg"))
                              .string();
  auto bytes = qv::testing::file_bytes(qv::testing::test_image_path("000000018"));
  bytes.resize(1000);
  io::write_file_atomic(bad, std::string(bytes.begin(), bytes.end()));
  const auto r = qv::testing::run_qwen3vl("preprocess --image " + bad + " --out " + bad + ".out");
  std::filesystem::remove(bad);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(bad), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("truncated JPEG"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace qv::data
