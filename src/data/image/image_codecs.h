// Private to data/: one decoder per format, each reading its header first and calling
// `check_size` before allocating pixels. Errors are thrown as qv::Error with `what` in them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/image/image_decode.h"

namespace qv::data::codecs {

// Throws when width x height is not a positive size within the limits.
void check_size(int64_t width, int64_t height, const DecodeLimits& limits, const std::string& what);

ImageInfo jpeg_info(const uint8_t* data, size_t size, const std::string& what);
ImageInfo png_info(const uint8_t* data, size_t size, const std::string& what);
ImageInfo webp_info(const uint8_t* data, size_t size, const std::string& what);

RgbImage decode_jpeg(const uint8_t* data, size_t size, const DecodeLimits& limits,
                     const std::string& what);
RgbImage decode_png(const uint8_t* data, size_t size, const DecodeLimits& limits,
                    const std::string& what);
RgbImage decode_webp(const uint8_t* data, size_t size, const DecodeLimits& limits,
                     const std::string& what);

}  // namespace qv::data::codecs
