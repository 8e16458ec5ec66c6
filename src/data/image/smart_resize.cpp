#include "data/image/smart_resize.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace qv::data {
namespace {

// Python's round() on a float: nearest integer, ties to even (nearbyint in the default
// rounding mode does exactly that).
int64_t round_half_even(double x) {
  return static_cast<int64_t>(std::nearbyint(x));
}

void check_aspect(int64_t height, int64_t width) {
  QV_CHECK(height > 0 && width > 0, "smart_resize: invalid image size ", height, "x", width);
  const double ratio = static_cast<double>(std::max(height, width)) / std::min(height, width);
  QV_CHECK(ratio <= 200.0, "smart_resize: absolute aspect ratio must be at most 200, got ", ratio,
           " (", width, "x", height, ")");
}

// Shared tail of both rules: `volume` multiplies the area (frames for video, 1 for images).
ResizedSize fit_budget(int64_t height, int64_t width, int64_t volume_rounded, int64_t volume,
                       int64_t factor, int64_t min_pixels, int64_t max_pixels) {
  int64_t h_bar = round_half_even(static_cast<double>(height) / factor) * factor;
  int64_t w_bar = round_half_even(static_cast<double>(width) / factor) * factor;
  const int64_t area = volume * height * width;
  if (volume_rounded * h_bar * w_bar > max_pixels) {
    const double beta = std::sqrt(static_cast<double>(area) / static_cast<double>(max_pixels));
    h_bar = std::max(factor, static_cast<int64_t>(std::floor(height / beta / factor)) * factor);
    w_bar = std::max(factor, static_cast<int64_t>(std::floor(width / beta / factor)) * factor);
  } else if (volume_rounded * h_bar * w_bar < min_pixels) {
    const double beta = std::sqrt(static_cast<double>(min_pixels) / static_cast<double>(area));
    h_bar = static_cast<int64_t>(std::ceil(height * beta / factor)) * factor;
    w_bar = static_cast<int64_t>(std::ceil(width * beta / factor)) * factor;
  }
  QV_CHECK(h_bar > 0 && w_bar > 0, "smart_resize: ", width, "x", height,
           " resizes to an empty image (min_pixels ", min_pixels, ")");
  return {h_bar, w_bar};
}

void check_budget(int64_t factor, int64_t min_pixels, int64_t max_pixels) {
  QV_CHECK(factor > 0, "smart_resize: factor must be positive, got ", factor);
  QV_CHECK(min_pixels >= 0 && max_pixels > 0 && min_pixels <= max_pixels,
           "smart_resize: invalid pixel budget min ", min_pixels, " max ", max_pixels);
}

}  // namespace

ResizedSize smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                         int64_t max_pixels) {
  check_budget(factor, min_pixels, max_pixels);
  check_aspect(height, width);
  return fit_budget(height, width, 1, 1, factor, min_pixels, max_pixels);
}

ResizedSize smart_resize_video(int64_t num_frames, int64_t height, int64_t width,
                               int64_t temporal_factor, int64_t factor, int64_t min_pixels,
                               int64_t max_pixels) {
  check_budget(factor, min_pixels, max_pixels);
  QV_CHECK(temporal_factor > 0, "smart_resize_video: invalid temporal factor ", temporal_factor);
  QV_CHECK(num_frames >= temporal_factor, "smart_resize_video: ", num_frames,
           " frames, need at least temporal_patch_size = ", temporal_factor);
  QV_CHECK(height > 0 && width > 0, "smart_resize_video: invalid frame size ", height, "x", width);
  if (height < factor || width < factor) {
    const double scale =
        std::max(static_cast<double>(factor) / height, static_cast<double>(factor) / width);
    height = static_cast<int64_t>(height * scale);
    width = static_cast<int64_t>(width * scale);
  }
  check_aspect(height, width);
  const int64_t t_bar =
      round_half_even(static_cast<double>(num_frames) / temporal_factor) * temporal_factor;
  return fit_budget(height, width, t_bar, num_frames, factor, min_pixels, max_pixels);
}

std::vector<int64_t> sample_frame_indices(int64_t total_frames, double video_fps, double fps,
                                          int64_t min_frames, int64_t max_frames) {
  QV_CHECK(total_frames > 0, "sample_frame_indices: video has no frames");
  QV_CHECK(video_fps > 0 && fps > 0, "sample_frame_indices: fps must be positive (video ",
           video_fps, ", sampling ", fps, ")");
  int64_t n = static_cast<int64_t>(static_cast<double>(total_frames) / video_fps * fps);
  n = std::min({std::max(n, min_frames), max_frames, total_frames});
  QV_CHECK(n > 0, "sample_frame_indices: no frames to sample (max_frames ", max_frames, ")");
  std::vector<int64_t> indices(n);
  const double stop = static_cast<double>(total_frames - 1);
  if (n == 1) {
    indices[0] = 0;
    return indices;
  }
  const double step = stop / static_cast<double>(n - 1);
  for (int64_t i = 0; i < n; ++i) {
    const double v = i == n - 1 ? stop : static_cast<double>(i) * step;
    indices[i] = round_half_even(v);
  }
  return indices;
}

}  // namespace qv::data
