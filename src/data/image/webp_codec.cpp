// WebP through libwebp. Pillow decodes a still WebP to RGB(A) with libwebp's default options;
// dropping alpha leaves the same RGB that decoding straight to RGB gives. Animated WebP needs
// libwebpdemux, which the build does not link, so it is rejected with a clear error.
#include <webp/decode.h>

#include "core/error.h"
#include "data/image/image_codecs.h"

namespace qv::data::codecs {
namespace {

const char* status_text(VP8StatusCode status) {
  switch (status) {
    case VP8_STATUS_OUT_OF_MEMORY:
      return "out of memory";
    case VP8_STATUS_INVALID_PARAM:
      return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR:
      return "corrupt bitstream";
    case VP8_STATUS_UNSUPPORTED_FEATURE:
      return "unsupported feature";
    case VP8_STATUS_SUSPENDED:
      return "suspended";
    case VP8_STATUS_USER_ABORT:
      return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA:
      return "truncated WebP data (not enough data)";
    default:
      return "unknown error";
  }
}

WebPBitstreamFeatures features_or_throw(const uint8_t* data, size_t size, const std::string& what) {
  WebPBitstreamFeatures features;
  const VP8StatusCode status = WebPGetFeatures(data, size, &features);
  QV_CHECK(status == VP8_STATUS_OK, what, ": WebP header unreadable: ", status_text(status));
  return features;
}

}  // namespace

ImageInfo webp_info(const uint8_t* data, size_t size, const std::string& what) {
  const WebPBitstreamFeatures f = features_or_throw(data, size, what);
  return {ImageFormat::kWebp, f.width, f.height};
}

RgbImage decode_webp(const uint8_t* data, size_t size, const DecodeLimits& limits,
                     const std::string& what) {
  const WebPBitstreamFeatures f = features_or_throw(data, size, what);
  check_size(f.width, f.height, limits, what);
  QV_CHECK(!f.has_animation, what, ": animated WebP is not supported");

  RgbImage out(f.width, f.height);
  WebPDecoderConfig config;
  QV_CHECK(WebPInitDecoderConfig(&config), what, ": libwebp version mismatch");
  config.output.colorspace = MODE_RGB;
  config.output.is_external_memory = 1;
  config.output.u.RGBA.rgba = out.pixels.data();
  config.output.u.RGBA.stride = static_cast<int>(out.row_bytes());
  config.output.u.RGBA.size = out.pixels.size();
  const VP8StatusCode status = WebPDecode(data, size, &config);
  WebPFreeDecBuffer(&config.output);  // frees nothing we own; required by the API
  QV_CHECK(status == VP8_STATUS_OK, what, ": WebP decode failed: ", status_text(status));
  return out;
}

}  // namespace qv::data::codecs
