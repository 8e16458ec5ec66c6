// OBELICS interleaved documents: JSONL rows (or rows of Parquet shards, *.parquet, read by
// data/sources/obelics_parquet.h with the same rules and skips) whose `texts` and `images` lists
// have equal length and exactly one non-null entry at each position. Images are local paths
// (relative to the JSONL file, or absolute) or http(s) URLs fetched through HttpFetcher (timeouts,
// bounded retries, on-disk cache); other URL schemes (file://, ftp://, ...) are refused.
//
// Robustness: a malformed row (bad JSON, wrong schema) is a counted skip naming file and line; so
// is an unavailable image (missing file, failed fetch, too large): by default the whole document
// is skipped, since its text refers to the image; with drop_unavailable_images the image alone
// is dropped. A file that cannot be opened, or a corrupt Parquet file, is a qv::Error (naming the
// file, and for Parquet the row group, column and reason). Not thread-safe: one reader per thread.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/skip_stats.h"
#include "data/sources/http_fetch.h"
#include "data/sources/line_reader.h"

namespace qv::data {

class ObelicsParquetFile;  // data/sources/obelics_parquet.h

struct DocItem {
  bool is_image = false;
  std::string text;         // text items
  std::string image_bytes;  // image items, as stored (not decoded)
  std::string image_ref;    // image items: the path or URL from the row
};

struct Document {
  std::string source;  // the JSONL or Parquet file
  int64_t line = 0;    // 1-based (Parquet: the row in the file)
  std::vector<DocItem> items;
  std::string origin() const { return source + ":" + std::to_string(line); }
};

struct ObelicsOptions {
  int64_t max_line_bytes = 64ll << 20;
  int64_t max_image_bytes = 32ll << 20;  // local files and downloads (overrides http.max_bytes)
  bool fetch_remote = true;              // false: http(s) images are counted skips
  bool drop_unavailable_images = false;  // false: skip the whole document
  // A row with more images is a counted skip, found before any image is read or fetched
  // (0: no limit; the loader sets its per-sample limit here).
  int64_t max_images = 0;
  HttpFetchOptions http;
};

// Where a reader stands: enough to continue exactly at the next row.
struct ObelicsState {
  int64_t file_index = 0;
  std::string file;    // checked on restore; empty when all files are done
  int64_t offset = 0;  // byte offset of the next row (Parquet: its row group)
  int64_t line = 0;    // lines before it (Parquet: rows before it in the file)
  nlohmann::json to_json() const;
  static ObelicsState from_json(const nlohmann::json& j);  // throws qv::Error on a bad state
  bool operator==(const ObelicsState&) const = default;
};

// Where a reader of a list of files stands: the file it reads and the byte offset and line
// (Parquet: row group and row) of its next row. The OBELICS and chat readers keep one each;
// `name` ("OBELICS", "chat") names the files and the reader in errors.
class FileListCursor {
 public:
  // Checks that every file exists and is a regular file.
  FileListCursor(std::vector<std::string> files, std::string name);
  bool done() const { return index_ >= files_.size(); }
  const std::string& file() const { return files_[index_]; }  // not when done()
  int64_t offset() const { return offset_; }
  int64_t line() const { return line_; }
  bool at_start() const { return offset_ == 0 && line_ == 0; }
  void advance(int64_t offset, int64_t line) { offset_ = offset, line_ = line; }  // past a row
  void next_file();
  ObelicsState state() const;
  // Moves to `s` after checking that it names this list's file at its index.
  void restore(const ObelicsState& s);

 private:
  std::vector<std::string> files_;
  std::string name_;
  size_t index_ = 0;
  int64_t offset_ = 0, line_ = 0;
};

// One row parsed (images not loaded). `skip_reason` is empty when the row is well formed, else a
// skip:: reason with `detail` saying what is wrong where.
struct ObelicsRow {
  Document doc;
  std::string_view skip_reason;
  std::string detail;
};
ObelicsRow parse_obelics_row(std::string_view line, const std::string& source, int64_t line_no);

// The row rules above over lists already read (a Parquet row; nullopt is a null entry): equal
// lengths, exactly one non-null entry per position, not empty.
using ObelicsCell = std::optional<std::string>;
ObelicsRow obelics_row_from_lists(std::vector<ObelicsCell> texts, std::vector<ObelicsCell> images,
                                  const std::string& source, int64_t line_no);

class ObelicsReader {
 public:
  // Throws qv::Error when a file does not exist. Skips are counted in `skips` when given (it
  // must outlive the reader), else in the reader's own SkipStats.
  explicit ObelicsReader(std::vector<std::string> files, ObelicsOptions options = {},
                         SkipStats* skips = nullptr);
  ~ObelicsReader();

  // Next document with its image bytes loaded; false after the last file.
  bool next(Document& doc);

  // state() after n documents, restored into a reader over the same files, continues with
  // document n + 1 (a direct seek).
  ObelicsState state() const;
  void restore(const ObelicsState& state);

  const SkipStats& skips() const { return *skips_; }
  const HttpFetcher& fetcher() const { return fetcher_; }

 private:
  bool load_images(Document& doc);
  // Fills item.image_bytes; on failure returns a skip reason and sets `detail`.
  std::string_view load_image(DocItem& item, const Document& doc, std::string& detail);
  bool read_row(ObelicsRow& row);  // the current file's next row, parsed; false at its end
  bool open_file();
  void close_file();

  FileListCursor at_;  // the resume point
  ObelicsOptions options_;
  std::unique_ptr<SkipStats> own_skips_;
  SkipStats* skips_;
  HttpFetcher fetcher_;
  std::unique_ptr<LineReader> lines_;
  std::unique_ptr<ObelicsParquetFile> parquet_;  // instead of lines_ for *.parquet files
};

}  // namespace qv::data
