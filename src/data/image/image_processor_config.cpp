#include "data/image/image_processor_config.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json_depth.h"
#include "io/json_number.h"

namespace qv::data {

void ImageProcessorConfig::validate() const {
  QV_CHECK(patch_size > 0 && temporal_patch_size > 0 && merge_size > 0,
           "image processor: patch_size, temporal_patch_size and merge_size must be positive (",
           patch_size, ", ", temporal_patch_size, ", ", merge_size, ")");
  QV_CHECK(min_pixels >= 0 && max_pixels > 0 && min_pixels <= max_pixels,
           "image processor: invalid pixel budget min_pixels ", min_pixels, " max_pixels ",
           max_pixels);
  QV_CHECK(rescale_factor > 0, "image processor: rescale_factor must be positive");
  for (int c = 0; c < 3; ++c)
    QV_CHECK(image_std[c] != 0.0f, "image processor: image_std[", c, "] is zero");
}

namespace {

std::array<float, 3> read_triplet(const nlohmann::json& j, const char* key,
                                  const std::string& origin) {
  const nlohmann::json& v = j.at(key);
  std::array<float, 3> out{};
  if (v.is_number()) {
    out.fill(v.get<float>());
    return out;
  }
  QV_CHECK(v.is_array() && v.size() == 3, origin, ": ", key, " must be a number or 3 numbers");
  for (int c = 0; c < 3; ++c) out[c] = v[c].get<float>();  // HF casts to float32 likewise
  return out;
}

}  // namespace

ImageProcessorConfig parse_image_processor_config(const std::string& json_text,
                                                  const std::string& origin) {
  io::check_json_depth(json_text, origin);
  ImageProcessorConfig c;
  try {
    const nlohmann::json j = nlohmann::json::parse(json_text);
    QV_CHECK(j.is_object(), origin, ": expected a JSON object");
    auto read_key = [&](const char* key, auto& field) {
      if (!j.contains(key) || j[key].is_null()) return;
      using T = std::decay_t<decltype(field)>;
      if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        const auto v = io::json_integer<T>(j[key]);
        QV_CHECK(v, origin, ": ", key, " must be an integer in range, not ", j[key].dump());
        field = *v;
      } else {
        field = j[key].template get<T>();
      }
    };
    read_key("patch_size", c.patch_size);
    read_key("temporal_patch_size", c.temporal_patch_size);
    read_key("merge_size", c.merge_size);
    if (j.contains("size") && j["size"].is_object()) {
      const auto& s = j["size"];
      for (auto [key, field] :
           {std::pair{"shortest_edge", &c.min_pixels}, std::pair{"longest_edge", &c.max_pixels}}) {
        if (!s.contains(key)) continue;
        const auto v = io::json_integer<int64_t>(s[key]);
        QV_CHECK(v, origin, ": size.", key, " must be an integer in range, not ", s[key].dump());
        *field = *v;
      }
    }
    // Explicit keys win, as in HF. (4.57 ignores `size` altogether, a bug; 5.x honours it.)
    read_key("min_pixels", c.min_pixels);
    read_key("max_pixels", c.max_pixels);
    read_key("do_rescale", c.do_rescale);
    read_key("do_normalize", c.do_normalize);
    read_key("rescale_factor", c.rescale_factor);
    if (j.contains("image_mean")) c.image_mean = read_triplet(j, "image_mean", origin);
    if (j.contains("image_std")) c.image_std = read_triplet(j, "image_std", origin);
  } catch (const nlohmann::json::exception& e) {
    fail(origin, ": bad image processor config: ", e.what());
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail(origin, ": ", e.what());
  }
  return c;
}

ImageProcessorConfig load_image_processor_config(const std::string& path) {
  return parse_image_processor_config(io::read_file(path), path);
}

ImageProcessorConfig image_processor_config_for_model(const std::string& model_dir) {
  const std::filesystem::path p = std::filesystem::path(model_dir) / "preprocessor_config.json";
  if (!std::filesystem::exists(p)) return {};
  return load_image_processor_config(p.string());
}

}  // namespace qv::data
