// Writes the small images of fuzz/corpus/image (one per decoder path: JPEG gray / RGB / CMYK /
// YCCK / progressive, PNG palette / 16-bit / gray+alpha / interlaced, lossless WebP), using the
// encoders of the image tests. Build and run by hand when the seeds need remaking:
//   g++ -std=c++20 -I tests fuzz/tools/make_image_seeds.cpp -ljpeg -lpng -lwebp -o /tmp/seeds
//   /tmp/seeds fuzz/corpus/image
#include <fstream>
#include <string>

#include "image_test_encoders.h"

namespace {

void write(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::vector<uint8_t> gradient(int w, int h, int channels) {
  std::vector<uint8_t> p(size_t(w) * h * channels);
  for (size_t i = 0; i < p.size(); ++i) p[i] = uint8_t(i * 37 + i / 7);
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace qv::testing;
  if (argc != 2) return 2;
  const std::string dir = argv[1];
  write(dir + "/gray.jpg", encode_jpeg(gradient(9, 7, 1), 9, 7, 1, 50));
  write(dir + "/rgb.jpg", encode_jpeg(gradient(17, 8, 3), 17, 8, 3, 60));
  write(dir + "/cmyk.jpg", encode_jpeg(gradient(8, 8, 4), 8, 8, 4, 50));
  write(dir + "/ycck.jpg", encode_jpeg(gradient(8, 9, 4), 8, 9, 4, 50, true));
  PngSpec pal{.width = 5, .height = 3, .color_type = PNG_COLOR_TYPE_PALETTE, .bit_depth = 4};
  pal.rows = gradient(3, 3, 1);
  pal.palette = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {9, 9, 9}};
  for (auto& v : pal.rows) v &= 0x33;
  pal.palette_alpha = {128, 255};
  write(dir + "/palette.png", encode_png(pal));
  PngSpec deep{.width = 4, .height = 4, .color_type = PNG_COLOR_TYPE_RGB, .bit_depth = 16};
  deep.rows = gradient(4 * 6, 4, 1);
  write(dir + "/rgb16.png", encode_png(deep));
  PngSpec ga{.width = 6, .height = 5, .color_type = PNG_COLOR_TYPE_GRAY_ALPHA, .bit_depth = 8};
  ga.rows = gradient(12, 5, 1);
  write(dir + "/gray_alpha.png", encode_png(ga));
  PngSpec il{.width = 11, .height = 9, .color_type = PNG_COLOR_TYPE_RGBA, .bit_depth = 8};
  il.interlaced = true;
  il.rows = gradient(44, 9, 1);
  write(dir + "/interlaced.png", encode_png(il));
  write(dir + "/lossless.webp", encode_webp_lossless(gradient(7, 5, 3), 7, 5, false));
  write(dir + "/alpha.webp", encode_webp_lossless(gradient(4, 6, 4), 4, 6, true));
  return 0;
}
