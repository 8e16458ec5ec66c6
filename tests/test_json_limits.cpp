// Limits on hostile JSON: nesting depth (checked before nlohmann::json parses, for every parser
// of outside JSON) and integer fields that a float or out-of-range number must not reach
// through an undefined cast.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>

#include "core/error.h"
#include "data/image/image_processor_config.h"
#include "data/sources/obelics.h"
#include "data/tokenizer/tokenizer.h"
#include "io/json_depth.h"
#include "io/json_number.h"
#include "io/safetensors.h"
#include "model/config.h"

namespace qv {
namespace {

std::string nested(int depth, const std::string& inner = "1") {
  return std::string(depth, '[') + inner + std::string(depth, ']');
}

TEST(JsonDepth, CountsBracketsOutsideStringsOnly) {
  const int max = io::kMaxJsonDepth;
  EXPECT_EQ(io::json_depth_violation(nested(max)), std::string::npos);
  EXPECT_EQ(io::json_depth_violation(nested(max + 1)), size_t(max));
  const std::string in_string = "[\"" + std::string(1000, '[') + "\\\"" + "{{{\"]";
  EXPECT_EQ(io::json_depth_violation(in_string), std::string::npos);
  // Closing brackets bring the depth back down: siblings do not add up.
  std::string siblings = "[";
  for (int i = 0; i < 10 * max; ++i) siblings += "{\"a\":[1]},";
  siblings += "0]";
  EXPECT_EQ(io::json_depth_violation(siblings), std::string::npos);
  EXPECT_EQ(io::json_depth_violation(nested(3), 2), 2u);
}

// Every parser of outside JSON refuses a deep document with an error naming the source.
TEST(JsonDepth, EveryParserRejectsDeepNesting) {
  const std::string deep = "{\"a\": " + nested(100000) + "}";
  auto expect_depth_error = [](auto&& parse, const char* origin) {
    try {
      parse();
      ADD_FAILURE() << origin << ": accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::strstr(e.what(), origin), nullptr) << e.what();
      EXPECT_NE(std::strstr(e.what(), "nested deeper than"), nullptr) << e.what();
    }
  };
  expect_depth_error([&] { model::ModelConfig::from_json_text(deep, "config.json"); },
                     "config.json");
  expect_depth_error([&] { data::Tokenizer::from_json(deep, "tokenizer.json"); }, "tokenizer.json");
  expect_depth_error([&] { data::parse_image_processor_config(deep, "preprocessor.json"); },
                     "preprocessor.json");
  expect_depth_error([&] { io::parse_checkpoint_index(deep, "index.json", "/m"); }, "index.json");
  std::string st(8, '\0');
  const uint64_t len = deep.size();
  std::memcpy(st.data(), &len, 8);
  st += deep;
  expect_depth_error(
      [&] {
        io::parse_safetensors_header(reinterpret_cast<const std::byte*>(st.data()), st.size(),
                                     "x.safetensors");
      },
      "x.safetensors");
  const data::ObelicsRow row = data::parse_obelics_row(deep, "rows.jsonl", 7);
  EXPECT_EQ(row.skip_reason, data::skip::kMalformedJson);
  EXPECT_NE(row.detail.find("nested deeper than"), std::string::npos) << row.detail;
}

TEST(JsonInteger, AcceptsIntegersInRangeOnly) {
  using nlohmann::json;
  EXPECT_EQ(io::json_integer<int64_t>(json(-5)), -5);
  EXPECT_EQ(io::json_integer<int64_t>(json(16.0)), 16);
  EXPECT_EQ(io::json_integer<int>(json(int64_t{1} << 40)), std::nullopt);
  EXPECT_EQ(io::json_integer<int64_t>(json(std::numeric_limits<uint64_t>::max())), std::nullopt);
  EXPECT_EQ(io::json_integer<int64_t>(json(1e300)), std::nullopt);
  EXPECT_EQ(io::json_integer<int64_t>(json(0x1p63)), std::nullopt);
  EXPECT_EQ(io::json_integer<int64_t>(json(-0x1p63)), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(io::json_integer<int64_t>(json(2.5)), std::nullopt);
  EXPECT_EQ(io::json_integer<int64_t>(json(std::nan(""))), std::nullopt);
  EXPECT_EQ(io::json_integer<int64_t>(json("7")), std::nullopt);
  EXPECT_EQ(io::json_integer<uint8_t>(json(-1)), std::nullopt);
}

TEST(JsonInteger, ConfigIntegerFieldsRejectHugeFloats) {
  const char* text =
      R"({"text_config": {"hidden_size": 1e300}, "vision_config": {}, "model_type": "qwen3_vl"})";
  try {
    model::ModelConfig::from_json_text(text, "config.json");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::strstr(e.what(), "hidden_size"), nullptr) << e.what();
  }
  EXPECT_THROW(data::parse_image_processor_config(R"({"patch_size": 4294967312})", "p.json"),
               Error);
}

// Sizes that would overflow int64 in parameter counts (or, for num_position_embeddings, spin the
// perfect-square search for billions of steps) are rejected by validate(), naming the field.
TEST(ConfigLimits, HugeSizesAreRejectedNamingTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {"vision_config", "num_position_embeddings"}, {"vision_config", "hidden_size"},
      {"vision_config", "spatial_merge_size"},      {"text_config", "vocab_size"},
      {"text_config", "num_hidden_layers"},
  };
  for (const auto& [section, field] : cases) {
    nlohmann::json j = {{"text_config", nlohmann::json::object()},
                        {"vision_config", nlohmann::json::object()}};
    j[section][field] = std::numeric_limits<int64_t>::max();
    try {
      model::ModelConfig::from_json_text(j.dump(), "config.json");
      ADD_FAILURE() << field << ": accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::strstr(e.what(), field), nullptr) << e.what();
      EXPECT_NE(std::strstr(e.what(), "exceeds the limit"), nullptr) << e.what();
    }
  }
  for (const char* name : {"debugmodel", "2B", "4B", "8B", "32B", "72B"})
    EXPECT_NO_THROW(model::ModelConfig::flavor(name).validate()) << name;
}

}  // namespace
}  // namespace qv
