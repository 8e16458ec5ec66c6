// Qwen3-VL vision preprocessing: smart resize, Pillow bicubic resize, rescale + normalise, and
// patchify into Hugging Face's layout. Rows are ordered (t, h / merge, w / merge, merge_row,
// merge_col), so each 2x2 merge block is `merge^2` consecutive rows; each row holds
// (C, T, P, P) values. A single image is repeated to temporal_patch_size frames; a video whose
// frame count is not a multiple of it repeats its last frame.
#pragma once
#include <cstdint>
#include <vector>

#include "data/image/image_processor_config.h"
#include "data/image/rgb_image.h"
#include "data/image/smart_resize.h"
#include "data/image/vision_item.h"

namespace qv::data {

// Tokens the LLM sees for a grid after the patch merger: t * h * w / merge^2.
int64_t merged_token_count(const VisionGrid& grid, int merge_size);

// The size an image of height x width is resized to, and its grid in patches.
ResizedSize resized_image_size(int64_t height, int64_t width, const ImageProcessorConfig& cfg);
VisionGrid image_grid(int64_t height, int64_t width, const ImageProcessorConfig& cfg);
// Merged tokens for an image of that size (e.g. from read_image_info, without decoding).
int64_t image_token_count(int64_t height, int64_t width, const ImageProcessorConfig& cfg);

// Rescale + normalise + patchify frames that already have the target size (all equal, sides
// multiples of patch_size * merge_size). Pads to a multiple of temporal_patch_size by repeating
// the last frame.
VisionItem patchify_frames(const std::vector<const RgbImage*>& frames,
                           const ImageProcessorConfig& cfg, bool is_video);

// The whole image path: smart_resize, resize_bicubic, patchify (frame repeated T times).
VisionItem preprocess_image(const RgbImage& image, const ImageProcessorConfig& cfg);

// The video path over frames already sampled (see sample_frame_indices): the video smart_resize
// budget (t * h * w), each frame resized, then patchify. The reference resizes videos with
// torchvision's bicubic, which differs from Pillow's by small amounts; ours uses Pillow's.
VisionItem preprocess_video(const std::vector<RgbImage>& frames, const VideoProcessorConfig& cfg);

}  // namespace qv::data
