// PNG through libpng's classic API (the simplified API would apply gamma and colour
// management, which Pillow does not). Transformations are chosen to land where Pillow's
// convert("RGB") lands: palettes looked up, 1/2/4-bit gray scaled to 0..255, 16-bit colour
// reduced to its high byte, 16-bit gray clipped to 0..255 (Pillow opens it as 32-bit "I" and
// clips), alpha dropped. libpng reports errors by longjmp to the setjmp in run_libpng, whose
// locals are all trivially destructible (buffers live in the caller-owned PngJob).
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "data/image/image_codecs.h"

namespace qv::data::codecs {
namespace {

struct PngJob {
  const uint8_t* data = nullptr;
  size_t size = 0, pos = 0;
  int width = 0, height = 0, channels = 0;  // as checked against the limits beforehand
  bool gray16 = false;
  RgbImage out;
  std::vector<uint8_t> raw;  // rows as libpng returns them, when they are not 8-bit RGB
  std::vector<png_bytep> rows;
  char message[256] = {};
};

void on_error(png_structp png, png_const_charp msg) {
  auto* job = static_cast<PngJob*>(png_get_error_ptr(png));
  std::snprintf(job->message, sizeof job->message, "%s", msg);
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}  // Pillow does not report them either

void read_bytes(png_structp png, png_bytep out, size_t n) {
  auto* job = static_cast<PngJob*>(png_get_io_ptr(png));
  if (n > job->size - job->pos) png_error(png, "truncated PNG data (premature end of file)");
  std::memcpy(out, job->data + job->pos, n);
  job->pos += n;
}

bool run_libpng(PngJob& job) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job, on_error, on_warning);
  if (!png) {
    std::snprintf(job.message, sizeof job.message, "cannot create the libpng reader");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(job.message, sizeof job.message, "cannot create the libpng info struct");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  png_set_read_fn(png, &job, read_bytes);
  png_read_info(png, info);
  if (png_get_image_width(png, info) != uint32_t(job.width) ||
      png_get_image_height(png, info) != uint32_t(job.height))
    png_error(png, "IHDR changed between reads");
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  job.gray16 = color_type == PNG_COLOR_TYPE_GRAY && bit_depth == 16;
  if (bit_depth == 16 && !job.gray16) png_set_strip_16(png);  // keeps the high byte
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  job.channels = png_get_channels(png, info);
  const size_t stride = png_get_rowbytes(png, info);
  try {
    // 8-bit RGB rows go straight into the output image; anything else via a raw buffer.
    job.out = RgbImage(job.width, job.height);
    uint8_t* base = job.out.pixels.data();
    if (stride != job.out.row_bytes()) {
      job.raw.resize(stride * job.height);
      base = job.raw.data();
    }
    job.rows.resize(job.height);
    for (int y = 0; y < job.height; ++y) job.rows[y] = base + stride * y;
  } catch (const std::bad_alloc&) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::snprintf(job.message, sizeof job.message, "out of memory for %dx%d pixels", job.width,
                  job.height);
    return false;
  }
  png_read_image(png, job.rows.data());
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

// The PNG signature is followed by IHDR (the format requires it first): length 13, "IHDR",
// width, height (big-endian). Read directly so an oversized claim is refused before libpng
// runs at all (libpng itself reads on to the first IDAT before reporting the size).
ImageInfo read_ihdr(const uint8_t* data, size_t size, const std::string& what) {
  QV_CHECK(size >= 8 + 8 + 13, what, ": truncated PNG data (", size, " bytes, no IHDR chunk)");
  const uint8_t* c = data + 8;
  auto be32 = [](const uint8_t* p) {
    return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
  };
  QV_CHECK(be32(c) == 13 && std::memcmp(c + 4, "IHDR", 4) == 0, what,
           ": corrupt PNG (first chunk is not a 13-byte IHDR)");
  const uint32_t w = be32(c + 8), h = be32(c + 12);
  QV_CHECK(w > 0 && h > 0 && w <= 0x7fffffffu && h <= 0x7fffffffu, what,
           ": corrupt PNG (invalid size ", w, "x", h, ")");
  return {ImageFormat::kPng, static_cast<int>(w), static_cast<int>(h)};
}

void run_or_throw(PngJob& job, const std::string& what) {
  if (!run_libpng(job)) fail(what, ": PNG decode failed: ", job.message);
}

}  // namespace

ImageInfo png_info(const uint8_t* data, size_t size, const std::string& what) {
  return read_ihdr(data, size, what);
}

RgbImage decode_png(const uint8_t* data, size_t size, const DecodeLimits& limits,
                    const std::string& what) {
  const ImageInfo header = read_ihdr(data, size, what);
  check_size(header.width, header.height, limits, what);
  PngJob job;
  job.data = data;
  job.size = size;
  job.width = header.width;
  job.height = header.height;
  run_or_throw(job, what);

  if (job.raw.empty()) return std::move(job.out);
  RgbImage& out = job.out;
  for (int y = 0; y < job.height; ++y) {
    const uint8_t* in = job.rows[y];
    uint8_t* o = out.row(y);
    for (int x = 0; x < job.width; ++x, o += 3) {
      if (job.gray16) {
        const int v = (in[2 * x] << 8) | in[2 * x + 1];
        o[0] = o[1] = o[2] = static_cast<uint8_t>(v > 255 ? 255 : v);
      } else if (job.channels <= 2) {  // gray, gray + alpha
        o[0] = o[1] = o[2] = in[x * job.channels];
      } else {  // RGBA, 16-bit RGB cut to 8
        std::memcpy(o, in + x * job.channels, 3);
      }
    }
  }
  return std::move(job.out);
}

}  // namespace qv::data::codecs
