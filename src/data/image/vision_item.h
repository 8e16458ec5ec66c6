// One preprocessed image or video as the vision tower takes it: patch rows in Hugging Face's
// processor layout and the grid they form (made by image_preprocess, carried by samples).
#pragma once
#include <cstdint>
#include <vector>

namespace qv::data {

struct VisionGrid {
  int64_t t = 1, h = 0, w = 0;  // in patches
  int64_t patches() const { return t * h * w; }
};

struct VisionItem {
  std::vector<float> pixels;  // [grid.patches(), patch_dim], HF processor layout
  VisionGrid grid;
  bool is_video = false;
};

}  // namespace qv::data
