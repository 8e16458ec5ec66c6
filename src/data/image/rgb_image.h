// An 8-bit RGB image held row-major as interleaved R, G, B bytes (what PIL's mode "RGB" holds).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qv::data {

struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // [height, width, 3]

  RgbImage() = default;
  RgbImage(int w, int h) : width(w), height(h), pixels(static_cast<size_t>(w) * h * 3) {}
  size_t row_bytes() const { return static_cast<size_t>(width) * 3; }
  uint8_t* row(int y) { return pixels.data() + y * row_bytes(); }
  const uint8_t* row(int y) const { return pixels.data() + y * row_bytes(); }
  bool empty() const { return width <= 0 || height <= 0; }
};

}  // namespace qv::data
