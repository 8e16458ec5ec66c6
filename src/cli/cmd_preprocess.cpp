// qwen3vl preprocess: one image file -> pixel_values and image_grid_thw, as Hugging Face's
// Qwen3-VL image processor produces them, written to a safetensors file.
#include <cstdio>
#include <string>

#include "cli/command.h"
#include "core/error.h"
#include "core/tensor.h"
#include "data/image/image_decode.h"
#include "data/image/image_preprocess.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

namespace qv::cli {
namespace {

int run_preprocess(const Args& args) {
  Flags f(args);
  f.allow_only({"image", "out", "min-pixels", "max-pixels", "config", "max-decode-pixels"});
  const std::string image_path = f.require("image");
  const std::string out_path = f.require("out");

  data::ImageProcessorConfig cfg;
  if (f.has("config")) cfg = data::load_image_processor_config(f.get("config"));
  cfg.min_pixels = f.get_int("min-pixels", cfg.min_pixels);
  cfg.max_pixels = f.get_int("max-pixels", cfg.max_pixels);
  cfg.validate();
  data::DecodeLimits limits;
  limits.max_pixels = f.get_int("max-decode-pixels", limits.max_pixels);

  const std::string bytes = io::read_file(image_path);
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  const data::RgbImage image = data::decode_image(data, bytes.size(), limits, image_path);
  const data::VisionItem item = data::preprocess_image(image, cfg);

  io::TensorMap tensors;
  tensors["pixel_values"] = Tensor::from_f32(item.pixels, {item.grid.patches(), cfg.patch_dim()});
  tensors["image_grid_thw"] = Tensor::from_i64({item.grid.t, item.grid.h, item.grid.w}, {1, 3});
  io::save_safetensors(out_path, tensors);
  std::printf(
      "%s: %s %dx%d -> %lldx%lld, grid_thw [%lld, %lld, %lld], %lld patches, %lld tokens"
      " -> %s\n",
      image_path.c_str(), data::image_format_name(data::detect_image_format(data, bytes.size())),
      image.width, image.height, (long long)(item.grid.w * cfg.patch_size),
      (long long)(item.grid.h * cfg.patch_size), (long long)item.grid.t, (long long)item.grid.h,
      (long long)item.grid.w, (long long)item.grid.patches(),
      (long long)data::merged_token_count(item.grid, cfg.merge_size), out_path.c_str());
  return 0;
}

const Registration kRegistration(
    {"preprocess",
     "image -> pixel_values + image_grid_thw safetensors (--image PATH --out FILE "
     "[--min-pixels N] [--max-pixels N] [--config preprocessor_config.json])",
     run_preprocess});

}  // namespace
}  // namespace qv::cli
