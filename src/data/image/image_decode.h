// Decoding JPEG, PNG and WebP bytes (e.g. a tar member) into RGB exactly as Pillow's
// Image.open(...).convert("RGB") does: alpha dropped (not composited), grayscale replicated,
// palettes looked up, CMYK/YCCK JPEGs read with Adobe's inverted convention, 16-bit samples
// reduced the way Pillow reduces them. The header is read first and an image whose claimed
// size exceeds the limits is rejected before any pixel memory is allocated.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/image/rgb_image.h"

namespace qv::data {

enum class ImageFormat { kUnknown, kJpeg, kPng, kWebp };
const char* image_format_name(ImageFormat format);

// Format by magic bytes (file names in datasets lie).
ImageFormat detect_image_format(const uint8_t* data, size_t size);

struct DecodeLimits {
  int64_t max_pixels = 100'000'000;  // width * height claimed by the header
  int max_jpeg_scans = 1000;         // progressive JPEGs with more scans are hostile
};

struct ImageInfo {
  ImageFormat format = ImageFormat::kUnknown;
  int width = 0, height = 0;
};

// Header only: format and size, without decoding pixels. `what` names the source in errors.
ImageInfo read_image_info(const uint8_t* data, size_t size, const std::string& what = "image");

// Full decode to RGB. Throws qv::Error naming `what` and the reason on empty, truncated,
// corrupt, unsupported or oversized input.
RgbImage decode_image(const uint8_t* data, size_t size, const DecodeLimits& limits = {},
                      const std::string& what = "image");

}  // namespace qv::data
