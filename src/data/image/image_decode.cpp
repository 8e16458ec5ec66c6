#include "data/image/image_decode.h"

#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "data/image/image_codecs.h"

namespace qv::data {

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kWebp:
      return "WebP";
    default:
      return "unknown";
  }
}

ImageFormat detect_image_format(const uint8_t* data, size_t size) {
  static const uint8_t kPng[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return ImageFormat::kJpeg;
  if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return ImageFormat::kPng;
  if (size >= 12 && std::memcmp(data, "RIFF", 4) == 0 && std::memcmp(data + 8, "WEBP", 4) == 0)
    return ImageFormat::kWebp;
  return ImageFormat::kUnknown;
}

namespace {

ImageFormat require_format(const uint8_t* data, size_t size, const std::string& what) {
  QV_CHECK(data != nullptr || size == 0, what, ": null data");
  QV_CHECK(size > 0, what, ": empty image data (0 bytes)");
  const ImageFormat format = detect_image_format(data, size);
  if (format == ImageFormat::kUnknown) {
    std::string head;
    for (size_t i = 0; i < size && i < 8; ++i) {
      char hex[5];
      std::snprintf(hex, sizeof hex, i ? " %02x" : "%02x", data[i]);
      head += hex;
    }
    fail(what, ": not a JPEG, PNG or WebP image (", size, " bytes, starting ", head, ")");
  }
  return format;
}

}  // namespace

namespace codecs {

void check_size(int64_t width, int64_t height, const DecodeLimits& limits,
                const std::string& what) {
  QV_CHECK(width > 0 && height > 0, what, ": invalid image size ", width, "x", height);
  QV_CHECK(width * height <= limits.max_pixels, what, ": image of ", width, "x", height, " = ",
           width * height, " pixels exceeds the limit of ", limits.max_pixels, " pixels");
}

}  // namespace codecs

ImageInfo read_image_info(const uint8_t* data, size_t size, const std::string& what) {
  switch (require_format(data, size, what)) {
    case ImageFormat::kJpeg:
      return codecs::jpeg_info(data, size, what);
    case ImageFormat::kPng:
      return codecs::png_info(data, size, what);
    default:
      return codecs::webp_info(data, size, what);
  }
}

RgbImage decode_image(const uint8_t* data, size_t size, const DecodeLimits& limits,
                      const std::string& what) {
  switch (require_format(data, size, what)) {
    case ImageFormat::kJpeg:
      return codecs::decode_jpeg(data, size, limits, what);
    case ImageFormat::kPng:
      return codecs::decode_png(data, size, limits, what);
    default:
      return codecs::decode_webp(data, size, limits, what);
  }
}

}  // namespace qv::data
