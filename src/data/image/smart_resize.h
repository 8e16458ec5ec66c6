// Hugging Face's Qwen2-VL / Qwen3-VL "smart resize": the size an image (or video frame) is
// resized to before patchify, and the frame sampling of Qwen3VLVideoProcessor. Arithmetic
// follows the Python code step by step (double precision, round half to even, floor/ceil) so
// grids match exactly.
#pragma once
#include <cstdint>
#include <vector>

namespace qv::data {

struct ResizedSize {
  int64_t height = 0, width = 0;
};

// Image rule (qwen2_vl image_processing smart_resize): each side rounded to a multiple of
// `factor`; if the area exceeds max_pixels both sides shrink by sqrt(area / max) (floored to
// the factor, at least one factor); if below min_pixels both grow by sqrt(min / area) (ceiled).
// Aspect ratio above 200 is an error. Sides below factor / 2 round to 0 and then, like HF, are
// only rescued by the min_pixels branch; a zero result is an error here.
ResizedSize smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels,
                         int64_t max_pixels);

// Video rule (qwen3_vl video_processing smart_resize): the budget counts frames too
// (t * h * w, t = frames rounded to a multiple of temporal_factor); frames smaller than the
// factor are first scaled up so the shorter side reaches it; fewer frames than
// temporal_factor is an error.
ResizedSize smart_resize_video(int64_t num_frames, int64_t height, int64_t width,
                               int64_t temporal_factor, int64_t factor, int64_t min_pixels,
                               int64_t max_pixels);

// Qwen3VLVideoProcessor.sample_frames with fps sampling: n = int(total / video_fps * fps)
// clamped to [min_frames, max_frames] and to total, indices = round(linspace(0, total - 1, n))
// (half to even, numpy's linspace arithmetic).
std::vector<int64_t> sample_frame_indices(int64_t total_frames, double video_fps, double fps,
                                          int64_t min_frames, int64_t max_frames);

}  // namespace qv::data
