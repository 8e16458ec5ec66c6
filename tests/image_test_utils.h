// Shared helpers for the image tests: test data paths, file bytes, uint8 image comparison.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/image/rgb_image.h"
#include "io/atomic_file.h"

namespace qv::testing {

inline std::string image_fixture_dir() {
  return std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/image-processor";
}
inline std::string test_image_path(const std::string& key) {
  return std::string(QWEN3VL_SOURCE_DIR) + "/tests/data/images/" + key + ".jpg";
}

// Keys (e.g. "000000018") of the fixture files present.
inline std::vector<std::string> image_fixture_keys() {
  std::vector<std::string> keys;
  for (const auto& e : std::filesystem::directory_iterator(image_fixture_dir()))
    if (e.path().extension() == ".safetensors") keys.push_back(e.path().stem().string());
  std::sort(keys.begin(), keys.end());
  return keys;
}

inline std::vector<uint8_t> file_bytes(const std::string& path) {
  const std::string s = io::read_file(path);
  return std::vector<uint8_t>(s.begin(), s.end());
}

// A uint8 [h, w, 3] tensor as an RgbImage.
inline data::RgbImage image_from_tensor(const Tensor& t) {
  data::RgbImage img(static_cast<int>(t.dim(1)), static_cast<int>(t.dim(0)));
  const auto* p = t.data<uint8_t>();
  img.pixels.assign(p, p + t.numel());
  return img;
}

struct ByteDiff {
  int max = 0;
  double mean = 0;
  int64_t differing = 0;
};

inline ByteDiff compare_bytes(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  ByteDiff d;
  if (a.size() != b.size() || a.empty()) return {256, 256, -1};
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const int diff = std::abs(int(a[i]) - int(b[i]));
    d.max = std::max(d.max, diff);
    d.differing += diff != 0;
    sum += diff;
  }
  d.mean = sum / a.size();
  return d;
}

}  // namespace qv::testing
