#include "data/image/image_preprocess.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "core/error.h"
#include "data/image/image_resize.h"

namespace qv::data {
namespace {

// Every uint8 value maps to one float per channel, so rescale + normalise is a table lookup
// computed with exactly the reference's float arithmetic.
using ChannelTables = std::array<std::array<float, 256>, 3>;

ChannelTables normalisation_tables(const ImageProcessorConfig& cfg) {
  ChannelTables t;
  for (int c = 0; c < 3; ++c) {
    const float mean = cfg.image_mean[c], std = cfg.image_std[c];
    // Fused form (torchvision processors): mean and std divided by the rescale factor in
    // float32, then (x - mean') / std' on the raw values.
    const float fused_mean =
        static_cast<float>(mean * static_cast<float>(1.0 / cfg.rescale_factor));
    const float fused_std = static_cast<float>(std * static_cast<float>(1.0 / cfg.rescale_factor));
    for (int v = 0; v < 256; ++v) {
      float x;
      if (cfg.fused_rescale_normalize && cfg.do_rescale && cfg.do_normalize) {
        x = (static_cast<float>(v) - fused_mean) / fused_std;
      } else {
        x = cfg.do_rescale ? static_cast<float>(static_cast<double>(v) * cfg.rescale_factor)
                           : static_cast<float>(v);
        if (cfg.do_normalize) x = (x - mean) / std;
      }
      t[c][v] = x;
    }
  }
  return t;
}

}  // namespace

int64_t merged_token_count(const VisionGrid& grid, int merge_size) {
  return grid.t * grid.h * grid.w / (int64_t(merge_size) * merge_size);
}

ResizedSize resized_image_size(int64_t height, int64_t width, const ImageProcessorConfig& cfg) {
  return smart_resize(height, width, cfg.factor(), cfg.min_pixels, cfg.max_pixels);
}

VisionGrid image_grid(int64_t height, int64_t width, const ImageProcessorConfig& cfg) {
  const ResizedSize s = resized_image_size(height, width, cfg);
  return {1, s.height / cfg.patch_size, s.width / cfg.patch_size};
}

int64_t image_token_count(int64_t height, int64_t width, const ImageProcessorConfig& cfg) {
  return merged_token_count(image_grid(height, width, cfg), cfg.merge_size);
}

VisionItem patchify_frames(const std::vector<const RgbImage*>& frames,
                           const ImageProcessorConfig& cfg, bool is_video) {
  cfg.validate();
  QV_CHECK(!frames.empty(), "patchify: no frames");
  const int height = frames[0]->height, width = frames[0]->width;
  for (const RgbImage* f : frames)
    QV_CHECK(
        f->width == width && f->height == height && f->pixels.size() == size_t(width) * height * 3,
        "patchify: frames differ in size (", f->width, "x", f->height, " vs ", width, "x", height,
        ")");
  const int P = cfg.patch_size, T = cfg.temporal_patch_size, M = cfg.merge_size;
  QV_CHECK(height > 0 && width > 0 && height % (P * M) == 0 && width % (P * M) == 0,
           "patchify: frame size ", width, "x", height, " is not a multiple of patch_size * ",
           "merge_size = ", P * M);

  VisionItem item;
  item.is_video = is_video;
  const int64_t n_frames = static_cast<int64_t>(frames.size());
  item.grid = {(n_frames + T - 1) / T, height / P, width / P};
  const int64_t dim = cfg.patch_dim();
  item.pixels.resize(size_t(item.grid.patches()) * dim);
  const ChannelTables tables = normalisation_tables(cfg);

  float* out = item.pixels.data();
  for (int64_t t = 0; t < item.grid.t; ++t)
    for (int64_t bh = 0; bh < item.grid.h / M; ++bh)
      for (int64_t bw = 0; bw < item.grid.w / M; ++bw)
        for (int mr = 0; mr < M; ++mr)
          for (int mc = 0; mc < M; ++mc) {
            const int64_t y0 = (bh * M + mr) * P, x0 = (bw * M + mc) * P;
            for (int c = 0; c < 3; ++c) {
              const std::array<float, 256>& table = tables[c];
              for (int tt = 0; tt < T; ++tt) {
                const int64_t frame = std::min(t * T + tt, n_frames - 1);
                if (tt > 0 && frame == std::min(t * T + tt - 1, n_frames - 1)) {
                  // A repeated frame (single images, padding): copy the previous block.
                  std::memcpy(out, out - P * P, sizeof(float) * P * P);
                  out += P * P;
                  continue;
                }
                const RgbImage& f = *frames[frame];
                for (int pr = 0; pr < P; ++pr) {
                  const uint8_t* src = f.row(static_cast<int>(y0 + pr)) + x0 * 3 + c;
                  for (int pc = 0; pc < P; ++pc) *out++ = table[src[3 * pc]];
                }
              }
            }
          }
  return item;
}

VisionItem preprocess_image(const RgbImage& image, const ImageProcessorConfig& cfg) {
  cfg.validate();
  const ResizedSize s = resized_image_size(image.height, image.width, cfg);
  const RgbImage resized =
      resize_bicubic(image, static_cast<int>(s.width), static_cast<int>(s.height));
  return patchify_frames({&resized}, cfg, /*is_video=*/false);
}

VisionItem preprocess_video(const std::vector<RgbImage>& frames, const VideoProcessorConfig& cfg) {
  const ImageProcessorConfig& fc = cfg.frames;
  fc.validate();
  QV_CHECK(!frames.empty(), "preprocess_video: no frames");
  const int height = frames[0].height, width = frames[0].width;
  for (const RgbImage& f : frames)
    QV_CHECK(f.width == width && f.height == height, "preprocess_video: frames differ in size (",
             f.width, "x", f.height, " vs ", width, "x", height, ")");
  const ResizedSize s =
      smart_resize_video(static_cast<int64_t>(frames.size()), height, width, fc.temporal_patch_size,
                         fc.factor(), fc.min_pixels, fc.max_pixels);
  std::vector<RgbImage> resized;
  resized.reserve(frames.size());
  std::vector<const RgbImage*> views;
  for (const RgbImage& f : frames) {
    resized.push_back(resize_bicubic(f, static_cast<int>(s.width), static_cast<int>(s.height)));
    views.push_back(&resized.back());
  }
  return patchify_frames(views, fc, /*is_video=*/true);
}

}  // namespace qv::data
