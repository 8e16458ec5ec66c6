// OBELICS interleaved documents: JSONL rows with `texts` and `images` lists of equal length where
// exactly one of the two is non-null at each position. Images are local paths (relative to the
// JSONL file) or http(s) URLs, fetched with timeouts, bounded retries and an on-disk cache.
#pragma once
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "data/skip_stats.h"

namespace qv::data {

struct DocItem {
  bool is_image = false;
  std::string text;         // for text items
  std::string image_ref;    // path or URL, for image items
  std::string image_bytes;  // filled by the reader
};

struct Document {
  std::string origin;  // file:line
  std::vector<DocItem> items;
};

struct UrlFetchConfig {
  std::string cache_dir = ".cache/qwen3vl-images";
  double timeout_s = 10;
  int retries = 2;
  int64_t max_bytes = 64ll << 20;
};

// Fetches a URL's body (http/https only) through the cache; throws qv::Error on failure.
std::string fetch_url(const std::string& url, const UrlFetchConfig& config);

// Parses one JSONL row; throws qv::Error naming `origin` on a malformed row.
Document parse_obelics_row(const std::string& line, const std::string& origin);

class ObelicsReader {
 public:
  ObelicsReader(std::vector<std::string> files, UrlFetchConfig fetch, SkipStats& skips);
  // Next document with image bytes loaded; bad rows and unreachable images are counted skips.
  bool next(Document& doc);

 private:
  bool load_images(Document& doc, const std::string& base_dir);
  std::vector<std::string> files_;
  size_t file_ = 0;
  int64_t line_ = 0;
  std::ifstream in_;
  UrlFetchConfig fetch_;
  SkipStats& skips_;
};

}  // namespace qv::data
