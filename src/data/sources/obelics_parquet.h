// OBELICS documents from Parquet shards as published: a `texts` and an `images` column, each a
// list of nullable strings per row (other columns, such as `metadata` and `general_metadata`,
// are never read). Each row becomes an ObelicsRow under the same rules and skip reasons as a
// JSONL line (data/sources/obelics.h), with the row's 1-based number in the file as its line. Texts
// must be valid UTF-8 (as JSON strings are); a row over the row limits is a counted skip.
//
// Positions are (row group, rows before): seek() re-reads the footer's row counts only and
// skips the rows before the target inside its row group (a row group is decoded from its start,
// so a seek costs at most one row group's decoding). Corrupt files throw qv::Error naming the
// file, row group, column and reason (parquet.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/sources/obelics.h"
#include "data/sources/parquet.h"

namespace qv::data {

bool is_parquet_path(std::string_view path);  // ends with ".parquet"

// The reader limits for OBELICS options: a row may hold as many bytes as a JSONL line.
parquet::Limits parquet_limits(const ObelicsOptions& options);

class ObelicsParquetFile {
 public:
  // Reads and checks the footer and the two columns' schema; throws qv::Error naming the file.
  ObelicsParquetFile(const std::string& path, const parquet::Limits& limits);
  ~ObelicsParquetFile();

  // Positions the reader before the row with `rows_before` rows ahead of it in the file, which
  // must lie in row group `row_group` (or be its end). Throws qv::Error on a bad position.
  void seek(int64_t row_group, int64_t rows_before);

  // The next row, parsed (skip_reason set when it breaks a rule); false after the last row.
  bool next(ObelicsRow& row);

  int64_t row_group() const { return group_; }  // where the next row is
  int64_t row() const { return row_; }          // rows before it in the file
  int64_t num_rows() const { return file_.meta().num_rows; }

 private:
  int64_t group_end(int64_t g) const { return first_row_[g] + file_.meta().row_groups[g].num_rows; }
  void position_readers();  // opens the row group's readers and skips to row_
  [[noreturn]] void fail_at(std::string_view what) const;

  parquet::File file_;
  parquet::StringListColumn texts_, images_;
  std::vector<int64_t> first_row_;  // per row group
  int64_t group_ = 0, row_ = 0;
  std::unique_ptr<parquet::ColumnReader> text_reader_, image_reader_;
  int64_t readers_group_ = -1, readers_row_ = 0;  // where the open readers stand
  parquet::ListRow texts_row_, images_row_;
};

}  // namespace qv::data
