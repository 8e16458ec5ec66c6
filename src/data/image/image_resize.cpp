#include "data/image/image_resize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace qv::data {
namespace {

// 8 bits of result, 2 bits of headroom for weights that sum above 1 or dip below 0.
constexpr int kPrecisionBits = 32 - 8 - 2;

double cubic_weight(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// For each output position along one axis: the first input index, how many inputs it reads,
// and their fixed-point weights (ksize slots per output, unused ones zero).
struct Taps {
  int ksize = 0;
  std::vector<int> first, count;
  std::vector<int32_t> weights;
};

Taps compute_taps(int in_size, int out_size) {
  // Pillow passes the source box as floats; (float)in_size - 0.0f is exact for sane sizes.
  const double scale = static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 2.0 * filter_scale;
  Taps t;
  t.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  t.weights.assign(size_t(out_size) * t.ksize, 0);
  std::vector<double> w(t.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double inv_scale = 1.0 / filter_scale;
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    double total = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = cubic_weight((x + xmin - center + 0.5) * inv_scale);
      total += w[x];
    }
    int32_t* k = &t.weights[size_t(xx) * t.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double v = total != 0.0 ? w[x] / total : w[x];
      k[x] = static_cast<int32_t>(v < 0 ? -0.5 + v * (1 << kPrecisionBits)
                                        : 0.5 + v * (1 << kPrecisionBits));
    }
    t.first[xx] = xmin;
    t.count[xx] = std::max(xmax, 0);
  }
  return t;
}

inline uint8_t clip8(int32_t acc) {
  const int32_t v = acc >> kPrecisionBits;  // arithmetic shift, as Pillow's lookup index
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Rows [row0, row0 + out.height) of `in`, resampled along x into `out`.
void horizontal_pass(const RgbImage& in, int row0, const Taps& t, RgbImage& out) {
  for (int y = 0; y < out.height; ++y) {
    const uint8_t* src = in.row(row0 + y);
    uint8_t* dst = out.row(y);
    for (int xx = 0; xx < out.width; ++xx) {
      const int32_t* k = &t.weights[size_t(xx) * t.ksize];
      const uint8_t* s = src + size_t(t.first[xx]) * 3;
      int32_t r = 1 << (kPrecisionBits - 1), g = r, b = r;
      for (int x = 0; x < t.count[xx]; ++x, s += 3) {
        r += s[0] * k[x];
        g += s[1] * k[x];
        b += s[2] * k[x];
      }
      dst[3 * xx] = clip8(r);
      dst[3 * xx + 1] = clip8(g);
      dst[3 * xx + 2] = clip8(b);
    }
  }
}

// Resamples along y; `shift` is subtracted from the taps' first rows (the rows of `in` start
// at that source row).
void vertical_pass(const RgbImage& in, const Taps& t, int shift, RgbImage& out) {
  const size_t n = out.row_bytes();
  std::vector<int32_t> acc(n);
  for (int yy = 0; yy < out.height; ++yy) {
    const int32_t* k = &t.weights[size_t(yy) * t.ksize];
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < t.count[yy]; ++y) {
      const uint8_t* src = in.row(t.first[yy] - shift + y);
      const int32_t w = k[y];
      for (size_t i = 0; i < n; ++i) acc[i] += src[i] * w;  // integer sums: order-free
    }
    uint8_t* dst = out.row(yy);
    for (size_t i = 0; i < n; ++i) dst[i] = clip8(acc[i]);
  }
}

}  // namespace

RgbImage resize_bicubic(const RgbImage& image, int out_width, int out_height) {
  QV_CHECK(!image.empty() && image.pixels.size() == size_t(image.width) * image.height * 3,
           "resize_bicubic: invalid input image ", image.width, "x", image.height);
  QV_CHECK(out_width > 0 && out_height > 0, "resize_bicubic: invalid output size ", out_width, "x",
           out_height);
  const bool need_horizontal = out_width != image.width;
  const bool need_vertical = out_height != image.height;
  if (!need_horizontal && !need_vertical) return image;

  const Taps vert = compute_taps(image.height, out_height);
  if (!need_horizontal) {
    RgbImage out(out_width, out_height);
    vertical_pass(image, vert, 0, out);
    return out;
  }
  const Taps horiz = compute_taps(image.width, out_width);
  if (!need_vertical) {
    RgbImage out(out_width, out_height);
    horizontal_pass(image, 0, horiz, out);
    return out;
  }
  // Only the source rows some output row reads go through the horizontal pass.
  const int first_row = vert.first[0];
  const int last_row = vert.first[out_height - 1] + vert.count[out_height - 1];
  RgbImage temp(out_width, last_row - first_row);
  horizontal_pass(image, first_row, horiz, temp);
  RgbImage out(out_width, out_height);
  vertical_pass(temp, vert, first_row, out);
  return out;
}

}  // namespace qv::data
