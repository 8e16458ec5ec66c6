// Settings of Qwen3-VL's image and video processors. Defaults are the released Qwen3-VL
// preprocessor_config.json / video_preprocessor_config.json values (patch 16, merge 2,
// temporal 2, mean = std = 0.5), not the HF class defaults (see QWEN3VL_FACTS.md section 3).
#pragma once
#include <array>
#include <cstdint>
#include <string>

namespace qv::data {

struct ImageProcessorConfig {
  int patch_size = 16;
  int temporal_patch_size = 2;
  int merge_size = 2;
  int64_t min_pixels = 65536;     // "shortest_edge" in HF's size dict: an area, not an edge
  int64_t max_pixels = 16777216;  // "longest_edge"
  bool do_rescale = true, do_normalize = true;
  double rescale_factor = 1.0 / 255.0;
  std::array<float, 3> image_mean = {0.5f, 0.5f, 0.5f};
  std::array<float, 3> image_std = {0.5f, 0.5f, 0.5f};
  // false: the slow image processor's arithmetic, float32(u8 * rescale in double) then
  // (x - mean) / std in float32. true: the torchvision processors' fused form,
  // (float32(u8) - mean / rescale) / (std / rescale) in float32 (what videos go through).
  bool fused_rescale_normalize = false;

  int64_t factor() const { return int64_t(patch_size) * merge_size; }
  int64_t patch_dim() const { return 3LL * temporal_patch_size * patch_size * patch_size; }
  void validate() const;  // throws qv::Error on nonsense values
};

struct VideoProcessorConfig {
  ImageProcessorConfig frames = video_frame_defaults();
  double fps = 2.0;  // frames sampled per second of video
  int64_t min_frames = 4, max_frames = 768;

  // The released Qwen3-VL video budget counts t * h * w: 4096 .. 25165824.
  static ImageProcessorConfig video_frame_defaults() {
    ImageProcessorConfig c;
    c.min_pixels = 4096;
    c.max_pixels = 25165824;
    c.fused_rescale_normalize = true;
    return c;
  }
};

// Parses a Hugging Face preprocessor_config.json (text). Reads patch_size, temporal_patch_size,
// merge_size, min_pixels / max_pixels (or size.shortest_edge / size.longest_edge), do_rescale,
// rescale_factor, do_normalize, image_mean, image_std; absent keys keep the defaults. `origin`
// names the file in errors.
ImageProcessorConfig parse_image_processor_config(const std::string& json_text,
                                                  const std::string& origin = "config");
ImageProcessorConfig load_image_processor_config(const std::string& path);

// A model folder's preprocessor_config.json if present, else the defaults.
ImageProcessorConfig image_processor_config_for_model(const std::string& model_dir);

}  // namespace qv::data
