// Bicubic resize that reproduces Pillow's Image.resize(size, Image.BICUBIC) on RGB uint8
// (Pillow's ImagingResample, the resize Hugging Face's slow image processors use) bit for bit:
// separable passes with a = -0.5 cubic weights, the support widened by the scale factor when
// shrinking (antialiasing), weights normalised then turned into 22-bit fixed point, and the
// result rounded and clipped to uint8 after each pass. A pass whose size does not change is
// skipped; with both changing, the horizontal pass runs first over only the rows the vertical
// pass will read.
#pragma once
#include "data/image/rgb_image.h"

namespace qv::data {

RgbImage resize_bicubic(const RgbImage& image, int out_width, int out_height);

}  // namespace qv::data
