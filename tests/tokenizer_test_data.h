// Shared helpers for the tokenizer tests: paths of the test data and JSON-lines reading.
#pragma once
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qv::test {

inline std::string source_path(const std::string& relative) {
  return std::string(QWEN3VL_SOURCE_DIR) + "/" + relative;
}

// Where scripts/fetch_tokenizer.sh puts the real Qwen3 tokenizer.
inline std::string qwen_tokenizer_path() {
  return source_path("third_party/npm/tokenizer-qwen3/package/models/tokenizer.json");
}

inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace qv::test
