// A focused Apache Parquet reader: the footer (FileMetaData in Thrift's compact protocol) and a
// streaming reader of one leaf column whose rows are lists of nullable strings (a LIST of
// optional BYTE_ARRAY, or the legacy two-level form), which is what OBELICS's `texts` and
// `images` columns are. Other columns are never read.
//
// Supported: UNCOMPRESSED, SNAPPY and ZSTD pages; PLAIN, PLAIN_DICTIONARY and RLE_DICTIONARY
// values; RLE/bit-packed hybrid levels; data pages v1 and v2. Anything else (other codecs, delta
// encodings, encrypted files, chunks in other files) is a qv::Error naming it.
//
// Robustness: every length, offset and count read from the file is checked against the file
// size and the Limits before it is used; memory is one page per column plus its dictionary and
// the current row, plus the decoded footer (at most about 25 bytes per footer byte for a hostile
// footer of empty column chunks, so max_footer_bytes bounds it). Corrupt input throws qv::Error
// naming the file, the row group and column where it applies, and the reason; nothing read from the
// file can crash the reader.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qv::data::parquet {

struct PageHeader;  // parquet.cpp

// Parquet's enums (parquet.thrift), the values this reader needs by name.
enum class PhysicalType : int32_t { kByteArray = 6 };
enum class Repetition : int32_t { kRequired = 0, kOptional = 1, kRepeated = 2 };
enum class Codec : int32_t { kUncompressed = 0, kSnappy = 1, kZstd = 6 };
enum class Encoding : int32_t {
  kPlain = 0,
  kPlainDictionary = 2,
  kRle = 3,
  kBitPacked = 4,
  kRleDictionary = 8,
};
enum class PageType : int32_t { kData = 0, kIndex = 1, kDictionary = 2, kDataV2 = 3 };

std::string codec_name(int32_t codec);
std::string encoding_name(int32_t encoding);

struct Limits {
  int64_t max_footer_bytes = 16ll << 20;
  int64_t max_page_bytes = 256ll << 20;        // one page, compressed or not
  int64_t max_page_header_bytes = 16ll << 20;  // page headers may carry statistics
  int64_t max_page_values = 1ll << 26;         // levels of one page (RLE runs cost no bytes)
  int64_t max_row_bytes = 64ll << 20;          // a row's strings together, 16 bytes per element
  int64_t max_row_items = 1 << 20;             // list elements of one row
};

struct SchemaNode {
  std::string name;
  int32_t type = -1;  // physical type; -1 for groups
  int32_t repetition = static_cast<int32_t>(Repetition::kRequired);
  int32_t num_children = 0;
};

struct ColumnChunk {
  std::vector<std::string> path;  // path_in_schema
  int32_t type = -1, codec = -1;
  int64_t num_values = 0, total_compressed_size = 0;
  int64_t data_page_offset = -1, dictionary_page_offset = -1;  // -1: absent
};

struct RowGroup {
  int64_t num_rows = 0;
  std::vector<ColumnChunk> columns;  // one per schema leaf, in leaf order
};

struct FileMeta {
  std::vector<SchemaNode> schema;  // depth first; [0] is the root
  int64_t num_rows = 0;
  std::vector<RowGroup> row_groups;
};

// Decodes a serialized FileMetaData. Throws qv::Error on malformed or unsupported metadata.
FileMeta parse_file_meta(const uint8_t* data, size_t size);

// A leaf column that holds a list of strings per row, and the levels its values carry.
struct StringListColumn {
  std::string name;  // the top-level field
  int leaf = 0;      // index among the schema's leaves (= column chunk index)
  std::vector<std::string> path;
  int max_def = 0, max_rep = 0;
  int list_def = 0;  // definition level of a present (possibly empty) list
  int elem_def = 0;  // ... of a present list element slot (null below max_def)
};

// The column for top-level field `name`; throws qv::Error when there is none or it is not a
// list of strings (one repeated level, BYTE_ARRAY leaf).
StringListColumn find_string_list_column(const FileMeta& meta, std::string_view name);

// An open Parquet file and its footer.
class File {
 public:
  File(std::string path, const Limits& limits);  // throws qv::Error naming the file
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  const FileMeta& meta() const { return meta_; }
  const Limits& limits() const { return limits_; }
  int64_t data_end() const { return data_end_; }  // where the footer starts
  // Reads exactly n bytes at offset into out; throws qv::Error naming `what` on a short read.
  void read(int64_t offset, int64_t n, std::string& out, std::string_view what) const;

 private:
  std::string path_;
  Limits limits_;
  int fd_ = -1;
  int64_t size_ = 0, data_end_ = 0;
  FileMeta meta_;
};

// One row of a string-list column: a null list, or its elements (nullopt for null elements).
struct ListRow {
  bool is_null = false;
  bool too_large = false;  // over Limits: the elements were dropped
  std::vector<std::optional<std::string>> items;
  int64_t bytes = 0;  // the row's size against max_row_bytes
};

// What a column reader has met so far (the tests check that each kind was exercised).
struct PageCounts {
  int64_t data_v1 = 0, data_v2 = 0, dictionary = 0;  // pages by type
  int64_t dictionary_encoded = 0, plain = 0;         // data pages by value encoding
};

// Streams the rows of one column chunk. Throws qv::Error naming file, row group, column and
// reason on corrupt pages.
class ColumnReader {
 public:
  ColumnReader(const File& file, int row_group, const StringListColumn& column);
  ~ColumnReader();

  // The next row; `keep` false skips its strings (seeking). False after the chunk's last row.
  bool next(ListRow& row, bool keep = true);
  const PageCounts& pages() const { return pages_; }

 private:
  struct Page;
  [[noreturn]] void corrupt(std::string_view what) const;
  bool peek();  // loads the level pair of the next value into cur_; false at chunk end
  bool load_page();
  void start_data_page_v1(std::string raw, const PageHeader& h);
  void start_data_page_v2(std::string raw, const PageHeader& h);
  void start_values(size_t at, int32_t encoding);
  void check_value_count(int64_t n) const;  // page_->body[at..] holds the values
  void read_dictionary(std::string body, int32_t encoding, int64_t count);
  std::string decompress(std::string compressed, int64_t uncompressed_size) const;
  std::string_view next_value();

  const File& file_;
  int row_group_;
  const StringListColumn& column_;
  int32_t codec_ = 0;
  int64_t pos_ = 0, end_ = 0;  // the chunk's unread byte range in the file
  std::string dict_buf_;
  std::vector<std::string_view> dict_;
  std::unique_ptr<Page> page_;
  bool have_cur_ = false;
  int cur_rep_ = 0, cur_def_ = 0;
  void* zstd_ = nullptr;
  PageCounts pages_;
};

}  // namespace qv::data::parquet
