// Any image bytes: header-only info, full decode (JPEG, PNG or WebP by magic bytes) with a pixel
// bound small enough for fuzzing speed, then the whole Qwen3-VL preprocessing (smart resize,
// bicubic resize, patchify) to a bounded size.
#include "core/error.h"
#include "data/image/image_decode.h"
#include "data/image/image_preprocess.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qv::data::DecodeLimits limits;
  limits.max_pixels = 1 << 22;
  qv::data::RgbImage image;
  try {
    image = qv::data::decode_image(data, size, limits, "fuzz");
  } catch (const qv::Error&) {
    return 0;
  }
  // The loader counts an image's tokens from its header alone, so both must agree.
  const qv::data::ImageInfo info = qv::data::read_image_info(data, size, "fuzz");
  qv::fuzz::require(info.width == image.width && info.height == image.height,
                    "read_image_info size differs from the decoded size");
  qv::data::ImageProcessorConfig cfg;
  cfg.min_pixels = 32 * 32;
  cfg.max_pixels = 128 * 128;
  try {
    const qv::data::VisionItem item = qv::data::preprocess_image(image, cfg);
    (void)item;
  } catch (const qv::Error&) {
  }
  return 0;
}
