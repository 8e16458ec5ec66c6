// JPEG through libjpeg-turbo with its default settings (ISLOW IDCT, fancy upsampling), as Pillow
// decodes. libjpeg reports errors by calling error_exit, which must not return: we longjmp back
// to the function that called setjmp. That function holds only trivially destructible locals,
// and everything it allocates lives in the caller-owned JpegJob, so the jump skips no
// destructor.
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <vector>

// jpeglib.h needs size_t and FILE declared first.
#include <jerror.h>
#include <jpeglib.h>

#include "core/error.h"
#include "data/image/image_codecs.h"

namespace qv::data::codecs {
namespace {

struct JpegErrorManager {
  jpeg_error_mgr pub;  // first member: libjpeg hands us a pointer to it
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX + 64];
};

struct ScanLimiter {
  jpeg_progress_mgr pub;  // first member, as above
  int max_scans;
};

[[noreturn]] void jump_back(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  std::longjmp(err->jump, 1);
}

void on_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  jump_back(cinfo);
}

// Warnings are ignored as Pillow ignores them, except running out of data: libjpeg would pad
// the image with gray, Pillow reports "image file is truncated".
void on_message(j_common_ptr cinfo, int level) {
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    std::snprintf(err->message, sizeof err->message, "truncated JPEG data (premature end of file)");
    jump_back(cinfo);
  }
}

void on_progress(j_common_ptr cinfo) {
  if (!cinfo->is_decompressor) return;
  auto* limiter = reinterpret_cast<ScanLimiter*>(cinfo->progress);
  auto* dinfo = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (limiter->max_scans > 0 && dinfo->input_scan_number > limiter->max_scans) {
    auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
    std::snprintf(err->message, sizeof err->message,
                  "progressive JPEG with more than %d scans (hostile input?)", limiter->max_scans);
    jump_back(cinfo);
  }
}

struct JpegJob {
  const uint8_t* data = nullptr;
  size_t size = 0;
  const DecodeLimits* limits = nullptr;  // null: read the header only
  int width = 0, height = 0, components = 0;
  bool too_large = false;
  std::vector<uint8_t> raw;  // [height, width, components] as libjpeg outputs them
  JpegErrorManager err;
};

// Returns false with job.err.message set when libjpeg fails.
bool run_libjpeg(JpegJob& job) {
  jpeg_decompress_struct cinfo;
  ScanLimiter limiter;
  cinfo.err = jpeg_std_error(&job.err.pub);
  job.err.pub.error_exit = on_error_exit;
  job.err.pub.emit_message = on_message;
  job.err.message[0] = '\0';
  if (setjmp(job.err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, job.data, static_cast<unsigned long>(job.size));
  jpeg_read_header(&cinfo, TRUE);
  job.width = static_cast<int>(cinfo.image_width);
  job.height = static_cast<int>(cinfo.image_height);
  job.components = cinfo.num_components;
  if (job.limits == nullptr) {
    jpeg_destroy_decompress(&cinfo);
    return true;
  }
  if (int64_t(job.width) * job.height > job.limits->max_pixels || job.width <= 0 ||
      job.height <= 0) {
    job.too_large = true;
    jpeg_destroy_decompress(&cinfo);
    return true;
  }
  switch (cinfo.num_components) {
    case 1:
      cinfo.out_color_space = JCS_GRAYSCALE;
      break;
    case 3:
      cinfo.out_color_space = JCS_RGB;
      break;
    case 4:  // CMYK or YCCK; libjpeg turns YCCK into CMYK
      cinfo.out_color_space = JCS_CMYK;
      break;
    default:
      std::snprintf(job.err.message, sizeof job.err.message,
                    "unsupported JPEG with %d color components", cinfo.num_components);
      jpeg_destroy_decompress(&cinfo);
      return false;
  }
  limiter.pub.progress_monitor = on_progress;
  limiter.max_scans = job.limits->max_jpeg_scans;
  cinfo.progress = &limiter.pub;
  jpeg_start_decompress(&cinfo);
  const size_t stride = size_t(cinfo.output_width) * cinfo.output_components;
  try {
    job.raw.resize(stride * cinfo.output_height);
  } catch (const std::bad_alloc&) {
    jpeg_destroy_decompress(&cinfo);
    std::snprintf(job.err.message, sizeof job.err.message, "out of memory for %dx%d pixels",
                  job.width, job.height);
    return false;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = job.raw.data() + stride * cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  job.components = cinfo.output_components;
  // No jpeg_finish_decompress: data after the last scanline (or a missing EOI) does not matter.
  jpeg_destroy_decompress(&cinfo);
  return true;
}

void run_or_throw(JpegJob& job, const std::string& what) {
  if (!run_libjpeg(job)) fail(what, ": JPEG decode failed: ", job.err.message);
}

// Pillow reads every 4-component JPEG as Adobe-style inverted CMYK ("CMYK;I": ink = 255 - the
// value libjpeg returns), then converts CMYK -> RGB as r = (255 - k) - c * (255 - k) / 255 with
// its rounded integer division. Arguments are the values libjpeg returns.
inline uint8_t cmyk_channel(int stored_ink, int stored_black) {
  const int ink = 255 - stored_ink, not_black = stored_black;  // 255 - (255 - stored_black)
  const int t = ink * not_black + 128;
  const int scaled = ((t >> 8) + t) >> 8;
  const int v = not_black - scaled;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

}  // namespace

ImageInfo jpeg_info(const uint8_t* data, size_t size, const std::string& what) {
  JpegJob job;
  job.data = data;
  job.size = size;
  run_or_throw(job, what);
  return {ImageFormat::kJpeg, job.width, job.height};
}

RgbImage decode_jpeg(const uint8_t* data, size_t size, const DecodeLimits& limits,
                     const std::string& what) {
  JpegJob job;
  job.data = data;
  job.size = size;
  job.limits = &limits;
  run_or_throw(job, what);
  if (job.too_large) check_size(job.width, job.height, limits, what);  // throws

  RgbImage out(job.width, job.height);
  const size_t n = size_t(job.width) * job.height;
  const uint8_t* in = job.raw.data();
  uint8_t* o = out.pixels.data();
  if (job.components == 3) {
    out.pixels.swap(job.raw);
  } else if (job.components == 1) {
    for (size_t i = 0; i < n; ++i) o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = in[i];
  } else {
    for (size_t i = 0; i < n; ++i, in += 4, o += 3) {
      o[0] = cmyk_channel(in[0], in[3]);
      o[1] = cmyk_channel(in[1], in[3]);
      o[2] = cmyk_channel(in[2], in[3]);
    }
  }
  return out;
}

}  // namespace qv::data::codecs
