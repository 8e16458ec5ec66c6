#include "data/sources/parquet.h"

#include <fcntl.h>
#include <snappy.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "data/sources/thrift_compact.h"

namespace qv::data::parquet {

// ----- Page headers -----

struct PageHeader {
  int32_t type = -1;
  int32_t uncompressed = -1, compressed = -1;
  bool has_v1 = false, has_v2 = false, has_dict = false;
  int32_t num_values = -1;
  int32_t encoding = -1, def_encoding = -1, rep_encoding = -1;  // v1, dictionary
  int32_t def_bytes = -1, rep_bytes = -1;                       // v2
  bool v2_compressed = true;
};

namespace {

using thrift::Field;
using thrift::Type;

constexpr int64_t kMaxSchemaNodes = 100000;
constexpr int64_t kMaxRowGroups = 1 << 20;
constexpr int kMaxSchemaDepth = 64;
constexpr int64_t kFirstHeaderWindow = 64 << 10;

// ----- Footer -----

// Calls each(i) for the elements of a list field of element type `want`, at most `max` of them.
template <typename F>
void read_list_of(thrift::Reader& r, Type t, Type want, int64_t max, std::string_view what,
                  F&& each) {
  Type element;
  const int64_t n = r.read_list(t, element);
  if (n > 0 && element != want) r.error(cat(what, ": list elements of the wrong type"));
  if (n > max) r.error(cat(what, ": ", n, " entries, more than the limit of ", max));
  for (int64_t i = 0; i < n; ++i) each(i);
}

SchemaNode read_schema_node(thrift::Reader& r) {
  SchemaNode n;
  r.read_struct([&](const Field& f) {
    switch (f.id) {
      case 1:
        n.type = r.read_i32(f.type);
        break;
      case 3:
        n.repetition = r.read_i32(f.type);
        break;
      case 4:
        n.name = std::string(r.read_binary(f.type));
        break;
      case 5:
        n.num_children = r.read_i32(f.type);
        break;
      default:
        r.skip(f.type);
    }
  });
  return n;
}

void read_column_meta(thrift::Reader& r, ColumnChunk& c) {
  r.read_struct([&](const Field& f) {
    switch (f.id) {
      case 1:
        c.type = r.read_i32(f.type);
        break;
      case 3:
        read_list_of(r, f.type, Type::kBinary, kMaxSchemaDepth, "path_in_schema",
                     [&](int64_t) { c.path.emplace_back(r.read_binary(Type::kBinary)); });
        break;
      case 4:
        c.codec = r.read_i32(f.type);
        break;
      case 5:
        c.num_values = r.read_int(f.type);
        break;
      case 7:
        c.total_compressed_size = r.read_int(f.type);
        break;
      case 9:
        c.data_page_offset = r.read_int(f.type);
        break;
      case 11:
        c.dictionary_page_offset = r.read_int(f.type);
        break;
      default:
        r.skip(f.type);
    }
  });
}

ColumnChunk read_column_chunk(thrift::Reader& r) {
  ColumnChunk c;
  bool has_meta = false;
  r.read_struct([&](const Field& f) {
    switch (f.id) {
      case 1:
        r.error("column chunks stored in other files are not supported");
      case 3:
        if (f.type != Type::kStruct) r.error("column meta_data is not a struct");
        read_column_meta(r, c);
        has_meta = true;
        break;
      case 8:
      case 9:
        r.error("encrypted columns are not supported");
      default:
        r.skip(f.type);
    }
  });
  if (!has_meta) r.error("a column chunk without meta_data");
  return c;
}

RowGroup read_row_group(thrift::Reader& r, int64_t max_columns) {
  RowGroup g;
  bool has_rows = false;
  r.read_struct([&](const Field& f) {
    switch (f.id) {
      case 1:
        read_list_of(r, f.type, Type::kStruct, max_columns, "row group columns",
                     [&](int64_t) { g.columns.push_back(read_column_chunk(r)); });
        break;
      case 3:
        g.num_rows = r.read_int(f.type);
        has_rows = true;
        break;
      default:
        r.skip(f.type);
    }
  });
  if (!has_rows || g.num_rows < 0) r.error("a row group without a valid num_rows");
  return g;
}

// ----- Schema -----

// One leaf of the schema: the indexes of the nodes on its path (root excluded).
using LeafPath = std::vector<int>;

// Walks the depth-first schema from node `i`, appending leaves; returns the next node index.
size_t walk_schema(const std::vector<SchemaNode>& s, size_t i, int depth, LeafPath& path,
                   std::vector<LeafPath>& leaves) {
  QV_CHECK(i < s.size(), "schema ends inside a group");
  QV_CHECK(depth <= kMaxSchemaDepth, "schema nested deeper than ", kMaxSchemaDepth, " levels");
  const SchemaNode& n = s[i];
  QV_CHECK(n.num_children >= 0 && n.num_children <= static_cast<int64_t>(s.size() - i - 1),
           "schema node '", n.name, "' claims ", n.num_children, " children");
  path.push_back(static_cast<int>(i));
  size_t next = i + 1;
  if (n.num_children == 0) {
    QV_CHECK(n.type >= 0, "schema node '", n.name, "' has neither children nor a type");
    leaves.push_back(path);
  }
  for (int32_t c = 0; c < n.num_children; ++c) next = walk_schema(s, next, depth + 1, path, leaves);
  path.pop_back();
  return next;
}

std::vector<LeafPath> schema_leaves(const std::vector<SchemaNode>& s) {
  QV_CHECK(!s.empty(), "empty schema");
  std::vector<LeafPath> leaves;
  LeafPath path;
  size_t next = 1;
  for (int32_t c = 0; c < s[0].num_children; ++c) next = walk_schema(s, next, 1, path, leaves);
  QV_CHECK(s[0].num_children >= 0 && next == s.size(), "schema has ", s.size() - next,
           " nodes outside the root");
  return leaves;
}

// ----- RLE / bit-packed hybrid -----

class Rle {
 public:
  Rle() = default;
  Rle(const uint8_t* data, size_t size, int width) : data_(data), size_(size), width_(width) {}

  uint32_t next() {
    while (left_ == 0) start_run();
    --left_;
    if (!packed_) return value_;
    const size_t byte = bit_ / 8, shift = bit_ % 8;
    const size_t nbytes = (shift + static_cast<size_t>(width_) + 7) / 8;
    uint64_t acc = 0;
    for (size_t k = 0; k < nbytes; ++k) acc |= static_cast<uint64_t>(data_[byte + k]) << (8 * k);
    bit_ += static_cast<size_t>(width_);
    return static_cast<uint32_t>((acc >> shift) & ((uint64_t{1} << width_) - 1));
  }

 private:
  uint8_t byte() {
    QV_CHECK(pos_ < size_, "RLE/bit-packed data ends before its values do");
    return data_[pos_++];
  }
  void start_run() {
    uint64_t header = 0;
    for (int shift = 0;; shift += 7) {
      QV_CHECK(shift < 64, "RLE run header longer than 10 bytes");
      const uint8_t b = byte();
      header |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    const uint64_t count = std::min<uint64_t>(header >> 1, uint64_t{1} << 56);
    packed_ = header & 1;
    if (packed_) {  // count groups of 8 values; a short last run is read as far as it goes
      const uint64_t avail = size_ - pos_;
      const uint64_t bytes = width_ == 0 ? 0 : std::min<uint64_t>(count * width_, avail);
      left_ = width_ == 0 ? count * 8 : std::min<uint64_t>(count * 8, bytes * 8 / width_);
      bit_ = pos_ * 8;
      pos_ += bytes;
    } else {
      value_ = 0;
      for (int k = 0; k < (width_ + 7) / 8; ++k) value_ |= static_cast<uint32_t>(byte()) << (8 * k);
      QV_CHECK(width_ == 32 || value_ < (uint64_t{1} << width_), "RLE value ", value_,
               " wider than ", width_, " bits");
      left_ = count;
    }
  }

  const uint8_t* data_ = nullptr;
  size_t size_ = 0, pos_ = 0;
  int width_ = 0;
  uint64_t left_ = 0;
  bool packed_ = false;
  uint32_t value_ = 0;
  size_t bit_ = 0;
};

int bit_width(int max_value) {
  int w = 0;
  while ((1 << w) <= max_value) ++w;
  return w;
}

uint32_t load_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

const uint8_t* bytes(const std::string& s) {
  return reinterpret_cast<const uint8_t*>(s.data());
}

PageHeader read_page_header(thrift::Reader& r) {
  PageHeader h;
  auto sub = [&](Type t, auto&& on_field) {
    if (t != Type::kStruct) r.error("page sub-header is not a struct");
    r.read_struct(on_field);
  };
  r.read_struct([&](const Field& f) {
    switch (f.id) {
      case 1:
        h.type = r.read_i32(f.type);
        break;
      case 2:
        h.uncompressed = r.read_i32(f.type);
        break;
      case 3:
        h.compressed = r.read_i32(f.type);
        break;
      case 5:
        h.has_v1 = true;
        sub(f.type, [&](const Field& g) {
          switch (g.id) {
            case 1:
              h.num_values = r.read_i32(g.type);
              break;
            case 2:
              h.encoding = r.read_i32(g.type);
              break;
            case 3:
              h.def_encoding = r.read_i32(g.type);
              break;
            case 4:
              h.rep_encoding = r.read_i32(g.type);
              break;
            default:
              r.skip(g.type);
          }
        });
        break;
      case 7:
        h.has_dict = true;
        sub(f.type, [&](const Field& g) {
          switch (g.id) {
            case 1:
              h.num_values = r.read_i32(g.type);
              break;
            case 2:
              h.encoding = r.read_i32(g.type);
              break;
            default:
              r.skip(g.type);
          }
        });
        break;
      case 8:
        h.has_v2 = true;
        sub(f.type, [&](const Field& g) {
          switch (g.id) {
            case 1:
              h.num_values = r.read_i32(g.type);
              break;
            case 4:
              h.encoding = r.read_i32(g.type);
              break;
            case 5:
              h.def_bytes = r.read_i32(g.type);
              break;
            case 6:
              h.rep_bytes = r.read_i32(g.type);
              break;
            case 7:
              h.v2_compressed = r.read_bool(g.type);
              break;
            default:
              r.skip(g.type);
          }
        });
        break;
      default:
        r.skip(f.type);
    }
  });
  return h;
}

}  // namespace

std::string codec_name(int32_t codec) {
  static const char* const names[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO",
                                      "BROTLI",       "LZ4",    "ZSTD", "LZ4_RAW"};
  if (codec >= 0 && codec < 8) return names[codec];
  return cat("codec ", codec);
}

std::string encoding_name(int32_t encoding) {
  static const char* const names[] = {
      "PLAIN",          "GROUP_VAR_INT",       "PLAIN_DICTIONARY",        "RLE",
      "BIT_PACKED",     "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY",
      "RLE_DICTIONARY", "BYTE_STREAM_SPLIT"};
  if (encoding >= 0 && encoding < 10) return names[encoding];
  return cat("encoding ", encoding);
}

FileMeta parse_file_meta(const uint8_t* data, size_t size) {
  thrift::Reader r(data, size);
  FileMeta m;
  bool has_schema = false, has_rows = false, has_groups = false;
  r.read_struct([&](const Field& f) {
    switch (f.id) {
      case 2:
        read_list_of(r, f.type, Type::kStruct, kMaxSchemaNodes, "schema",
                     [&](int64_t) { m.schema.push_back(read_schema_node(r)); });
        has_schema = true;
        break;
      case 3:
        m.num_rows = r.read_int(f.type);
        has_rows = true;
        break;
      case 4:
        if (!has_schema) r.error("row groups before the schema");
        read_list_of(r, f.type, Type::kStruct, kMaxRowGroups, "row groups", [&](int64_t) {
          m.row_groups.push_back(read_row_group(r, static_cast<int64_t>(m.schema.size())));
        });
        has_groups = true;
        break;
      case 8:
      case 9:
        r.error("encrypted files are not supported");
      default:
        r.skip(f.type);
    }
  });
  QV_CHECK(has_schema && has_rows && has_groups, "FileMetaData lacks ",
           !has_schema ? "the schema"
           : !has_rows ? "num_rows"
                       : "row_groups");
  const size_t leaves = schema_leaves(m.schema).size();
  int64_t rows = 0;
  for (size_t g = 0; g < m.row_groups.size(); ++g) {
    QV_CHECK(m.row_groups[g].columns.size() == leaves, "row group ", g, " has ",
             m.row_groups[g].columns.size(), " column chunks for ", leaves, " schema columns");
    QV_CHECK(m.row_groups[g].num_rows <= (int64_t{1} << 62) - rows, "row counts overflow");
    rows += m.row_groups[g].num_rows;
  }
  QV_CHECK(rows == m.num_rows, "num_rows is ", m.num_rows, " but the row groups hold ", rows);
  return m;
}

StringListColumn find_string_list_column(const FileMeta& meta, std::string_view name) {
  const std::vector<LeafPath> leaves = schema_leaves(meta.schema);
  StringListColumn col;
  col.name = std::string(name);
  int found = 0;
  for (size_t i = 0; i < leaves.size(); ++i) {
    if (meta.schema[leaves[i][0]].name != name) continue;
    ++found;
    col.leaf = static_cast<int>(i);
  }
  QV_CHECK(found > 0, "no column '", name, "'");
  QV_CHECK(found == 1, "column '", name, "' is not a list of strings (it has ", found,
           " leaf columns)");
  col.path.clear();
  int repeated = 0;
  for (const int i : leaves[col.leaf]) {
    const SchemaNode& n = meta.schema[i];
    col.path.push_back(n.name);
    if (n.repetition == static_cast<int32_t>(Repetition::kOptional)) {
      ++col.max_def;
    } else if (n.repetition == static_cast<int32_t>(Repetition::kRepeated)) {
      col.list_def = col.max_def;
      col.elem_def = ++col.max_def;
      ++col.max_rep;
      ++repeated;
    } else {
      QV_CHECK(n.repetition == static_cast<int32_t>(Repetition::kRequired), "column '", name,
               "': unknown repetition ", n.repetition);
    }
  }
  const SchemaNode& leaf = meta.schema[leaves[col.leaf].back()];
  QV_CHECK(repeated == 1 && leaf.type == static_cast<int32_t>(PhysicalType::kByteArray), "column '",
           name, "' is not a list of strings (", repeated, " repeated levels, physical type ",
           leaf.type, ")");
  return col;
}

// ----- File -----

File::File(std::string path, const Limits& limits) : path_(std::move(path)), limits_(limits) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  QV_CHECK(fd_ >= 0, "Parquet file ", path_, ": ", std::strerror(errno));
  try {
    struct stat st {};
    QV_CHECK(::fstat(fd_, &st) == 0, std::strerror(errno));
    size_ = st.st_size;
    QV_CHECK(size_ >= 12, "too small to be a Parquet file (", size_, " bytes)");
    std::string head, tail;
    read(0, 4, head, "magic");
    QV_CHECK(head == "PAR1", "bad magic at the start: not a Parquet file");
    read(size_ - 8, 8, tail, "footer length");
    QV_CHECK(tail.substr(4) != "PARE", "encrypted footer: not supported");
    QV_CHECK(tail.substr(4) == "PAR1", "bad magic at the end: truncated or not a Parquet file");
    const int64_t len = load_u32(bytes(tail));
    QV_CHECK(len <= size_ - 12, "footer length ", len, " exceeds the file (", size_, " bytes)");
    QV_CHECK(len <= limits_.max_footer_bytes, "footer of ", len, " bytes exceeds the limit of ",
             limits_.max_footer_bytes);
    data_end_ = size_ - 8 - len;
    std::string footer;
    read(data_end_, len, footer, "footer");
    try {
      meta_ = parse_file_meta(bytes(footer), footer.size());
    } catch (const Error& e) {
      fail("footer: ", e.what());
    }
  } catch (const Error& e) {
    ::close(fd_);
    fail("Parquet file ", path_, ": ", e.what());
  }
}

File::~File() {
  ::close(fd_);
}

void File::read(int64_t offset, int64_t n, std::string& out, std::string_view what) const {
  QV_CHECK(offset >= 0 && n >= 0 && offset <= size_ && n <= size_ - offset, what, " at bytes ",
           offset, "+", n, " lies outside the file (", size_, " bytes)");
  out.resize(static_cast<size_t>(n));
  for (int64_t done = 0; done < n;) {
    const ssize_t got =
        ::pread(fd_, out.data() + done, static_cast<size_t>(n - done), offset + done);
    if (got < 0 && errno == EINTR) continue;
    QV_CHECK(got > 0, "reading ", what, ": ", got < 0 ? std::strerror(errno) : "short read");
    done += got;
  }
}

// ----- Column reader -----

struct ColumnReader::Page {
  std::string body;  // levels and values, decompressed
  int64_t values_left = 0;
  Rle rep, def;
  bool dictionary = false;
  Rle indices;
  size_t plain_pos = 0, plain_end = 0;  // PLAIN values: body[plain_pos, plain_end)
};

ColumnReader::ColumnReader(const File& file, int row_group, const StringListColumn& column)
    : file_(file), row_group_(row_group), column_(column) {
  try {
    const auto& groups = file.meta().row_groups;
    QV_CHECK(row_group >= 0 && row_group < static_cast<int>(groups.size()), "no such row group");
    const ColumnChunk& c = groups[row_group].columns.at(column.leaf);
    QV_CHECK(c.path == column.path, "column chunk path does not match the schema");
    QV_CHECK(c.type == static_cast<int32_t>(PhysicalType::kByteArray),
             "column chunk type is not BYTE_ARRAY");
    codec_ = c.codec;
    QV_CHECK(codec_ == static_cast<int32_t>(Codec::kUncompressed) ||
                 codec_ == static_cast<int32_t>(Codec::kSnappy) ||
                 codec_ == static_cast<int32_t>(Codec::kZstd),
             "compression ", codec_name(codec_),
             " is not supported (UNCOMPRESSED, SNAPPY, ZSTD are)");
    pos_ = c.data_page_offset;
    if (c.dictionary_page_offset > 0 && c.dictionary_page_offset < pos_)
      pos_ = c.dictionary_page_offset;
    QV_CHECK(pos_ >= 4 && c.total_compressed_size >= 0 && pos_ <= file.data_end() &&
                 c.total_compressed_size <= file.data_end() - pos_,
             "column chunk bytes ", pos_, "+", c.total_compressed_size,
             " lie outside the data area (4..", file.data_end(), ")");
    end_ = pos_ + c.total_compressed_size;
  } catch (const Error& e) {
    corrupt(e.what());
  }
}

ColumnReader::~ColumnReader() {
  ZSTD_freeDCtx(static_cast<ZSTD_DCtx*>(zstd_));
}

void ColumnReader::corrupt(std::string_view what) const {
  fail(file_.path(), ": row group ", row_group_, ", column '", column_.name, "': ", what);
}

std::string ColumnReader::decompress(std::string in, int64_t size) const {
  QV_CHECK(size >= 0 && size <= file_.limits().max_page_bytes, "page of ", size,
           " uncompressed bytes exceeds the limit of ", file_.limits().max_page_bytes);
  if (codec_ == static_cast<int32_t>(Codec::kUncompressed)) {
    QV_CHECK(static_cast<int64_t>(in.size()) == size, "uncompressed page of ", in.size(),
             " bytes, header says ", size);
    return in;
  }
  std::string out;
  if (codec_ == static_cast<int32_t>(Codec::kSnappy)) {
    size_t n = 0;
    QV_CHECK(snappy::GetUncompressedLength(in.data(), in.size(), &n), "corrupt snappy page");
    QV_CHECK(static_cast<int64_t>(n) == size, "snappy page holds ", n, " bytes, header says ",
             size);
    out.resize(n);
    QV_CHECK(snappy::RawUncompress(in.data(), in.size(), out.data()), "corrupt snappy page");
    return out;
  }
  auto* ctx = static_cast<ZSTD_DCtx*>(zstd_);
  if (!ctx) {
    ctx = ZSTD_createDCtx();
    QV_CHECK(ctx, "out of memory for a zstd context");
    const_cast<ColumnReader*>(this)->zstd_ = ctx;
  }
  // A frame that states its size must state the header's (checked before allocating).
  const unsigned long long stated = ZSTD_getFrameContentSize(in.data(), in.size());
  QV_CHECK(stated != ZSTD_CONTENTSIZE_ERROR, "corrupt zstd page: bad frame header");
  QV_CHECK(stated == ZSTD_CONTENTSIZE_UNKNOWN || stated == static_cast<uint64_t>(size),
           "zstd page holds ", stated, " bytes, header says ", size);
  out.resize(static_cast<size_t>(size));
  const size_t got = ZSTD_decompressDCtx(ctx, out.data(), out.size(), in.data(), in.size());
  QV_CHECK(!ZSTD_isError(got), "corrupt zstd page: ", ZSTD_getErrorName(got));
  QV_CHECK(got == out.size(), "zstd page holds ", got, " bytes, header says ", size);
  return out;
}

void ColumnReader::read_dictionary(std::string body, int32_t encoding, int64_t count) {
  QV_CHECK(dict_.empty() && dict_buf_.empty(), "a second dictionary page");
  QV_CHECK(encoding == static_cast<int32_t>(Encoding::kPlain) ||
               encoding == static_cast<int32_t>(Encoding::kPlainDictionary),
           "dictionary page encoding ", encoding_name(encoding), " is not supported");
  QV_CHECK(count >= 0 && count <= static_cast<int64_t>(body.size() / 4), "dictionary of ", count,
           " entries in ", body.size(), " bytes");
  dict_buf_ = std::move(body);
  dict_.reserve(static_cast<size_t>(count));
  size_t p = 0;
  for (int64_t i = 0; i < count; ++i) {
    QV_CHECK(dict_buf_.size() - p >= 4, "dictionary entry ", i, " past the page end");
    const uint32_t n = load_u32(bytes(dict_buf_) + p);
    p += 4;
    QV_CHECK(n <= dict_buf_.size() - p, "dictionary entry ", i, " of ", n,
             " bytes past the page end");
    dict_.emplace_back(dict_buf_.data() + p, n);
    p += n;
  }
}

bool ColumnReader::load_page() {
  const Limits& lim = file_.limits();
  while (pos_ < end_) {
    // The header's length is known only once it is parsed: read a window, grow it if needed.
    std::string window;
    int64_t want = std::min(end_ - pos_, kFirstHeaderWindow);
    PageHeader h;
    size_t header_len = 0;
    for (;;) {
      file_.read(pos_, want, window, "page header");
      thrift::Reader r(bytes(window), window.size());
      try {
        h = read_page_header(r);
        header_len = r.position();
        break;
      } catch (const Error& e) {
        const int64_t more = std::min({want * 4, end_ - pos_, lim.max_page_header_bytes});
        if (!r.hit_end() || more <= want) fail("page header at byte ", pos_, ": ", e.what());
        want = more;
      }
    }
    const int64_t body_at = pos_ + static_cast<int64_t>(header_len);
    QV_CHECK(h.compressed >= 0 && h.uncompressed >= 0, "page at byte ", pos_,
             " without valid sizes");
    QV_CHECK(h.compressed <= end_ - body_at, "page at byte ", pos_, " of ", h.compressed,
             " bytes runs past the column chunk");
    QV_CHECK(h.compressed <= lim.max_page_bytes && h.uncompressed <= lim.max_page_bytes,
             "page at byte ", pos_, " exceeds the page limit of ", lim.max_page_bytes, " bytes");
    std::string raw;
    file_.read(body_at, h.compressed, raw, "page");
    pos_ = body_at + h.compressed;
    switch (static_cast<PageType>(h.type)) {
      case PageType::kIndex:
        continue;
      case PageType::kDictionary:
        QV_CHECK(h.has_dict, "dictionary page without its header");
        read_dictionary(decompress(std::move(raw), h.uncompressed), h.encoding, h.num_values);
        ++pages_.dictionary;
        continue;
      case PageType::kData:
        QV_CHECK(h.has_v1, "data page without its header");
        start_data_page_v1(std::move(raw), h);
        ++pages_.data_v1;
        break;
      case PageType::kDataV2:
        QV_CHECK(h.has_v2, "data page v2 without its header");
        start_data_page_v2(std::move(raw), h);
        ++pages_.data_v2;
        break;
      default:
        fail("unknown page type ", h.type, " at byte ", body_at - static_cast<int64_t>(header_len));
    }
    if (page_->values_left > 0) return true;
  }
  return false;
}

// Levels of a v1 page: a 4-byte length, then RLE/bit-packed hybrid data. Returns the end.
size_t v1_levels(const std::string& body, size_t at, int32_t encoding, int max_level,
                 std::string_view what, Rle& out) {
  if (max_level == 0) return at;
  QV_CHECK(encoding == static_cast<int32_t>(Encoding::kRle), what, " level encoding ",
           encoding_name(encoding), " is not supported (RLE is)");
  QV_CHECK(body.size() - at >= 4, what, " levels past the page end");
  const uint32_t n = load_u32(bytes(body) + at);
  QV_CHECK(n <= body.size() - at - 4, what, " levels of ", n, " bytes past the page end");
  out = Rle(bytes(body) + at + 4, n, bit_width(max_level));
  return at + 4 + n;
}

void ColumnReader::check_value_count(int64_t n) const {
  QV_CHECK(n >= 0 && n <= file_.limits().max_page_values, "data page of ", n, " values (limit ",
           file_.limits().max_page_values, ")");
}

void ColumnReader::start_data_page_v1(std::string raw, const PageHeader& h) {
  check_value_count(h.num_values);
  page_ = std::make_unique<Page>();
  page_->body = decompress(std::move(raw), h.uncompressed);
  size_t at = v1_levels(page_->body, 0, h.rep_encoding, column_.max_rep, "repetition", page_->rep);
  at = v1_levels(page_->body, at, h.def_encoding, column_.max_def, "definition", page_->def);
  page_->values_left = h.num_values;
  start_values(at, h.encoding);
}

void ColumnReader::start_data_page_v2(std::string raw, const PageHeader& h) {
  check_value_count(h.num_values);
  QV_CHECK(h.rep_bytes >= 0 && h.def_bytes >= 0, "data page v2 without valid level sizes");
  const int64_t levels = int64_t{h.rep_bytes} + h.def_bytes;
  QV_CHECK(levels <= static_cast<int64_t>(raw.size()) && levels <= h.uncompressed,
           "data page v2 levels of ", levels, " bytes exceed the page");
  page_ = std::make_unique<Page>();
  std::string values = raw.substr(static_cast<size_t>(levels));
  raw.resize(static_cast<size_t>(levels));
  page_->body = std::move(raw);
  if (h.v2_compressed)
    values = decompress(std::move(values), h.uncompressed - levels);
  else
    QV_CHECK(static_cast<int64_t>(values.size()) == h.uncompressed - levels,
             "uncompressed data page v2 of ", values.size() + levels, " bytes, header says ",
             h.uncompressed);
  page_->body += values;
  const uint8_t* b = bytes(page_->body);
  if (column_.max_rep > 0) page_->rep = Rle(b, h.rep_bytes, bit_width(column_.max_rep));
  if (column_.max_def > 0)
    page_->def = Rle(b + h.rep_bytes, h.def_bytes, bit_width(column_.max_def));
  page_->values_left = h.num_values;
  start_values(static_cast<size_t>(levels), h.encoding);
}

void ColumnReader::start_values(size_t at, int32_t encoding) {
  Page& p = *page_;
  if (encoding == static_cast<int32_t>(Encoding::kPlain)) {
    p.plain_pos = at;
    p.plain_end = p.body.size();
    ++pages_.plain;
    return;
  }
  QV_CHECK(encoding == static_cast<int32_t>(Encoding::kRleDictionary) ||
               encoding == static_cast<int32_t>(Encoding::kPlainDictionary),
           "value encoding ", encoding_name(encoding),
           " is not supported (PLAIN, PLAIN_DICTIONARY, RLE_DICTIONARY are)");
  p.dictionary = true;
  ++pages_.dictionary_encoded;
  if (at == p.body.size()) return;  // only nulls: no index data at all
  const int width = static_cast<uint8_t>(p.body[at]);
  QV_CHECK(width <= 32, "dictionary index bit width ", width);
  p.indices = Rle(bytes(p.body) + at + 1, p.body.size() - at - 1, width);
}

std::string_view ColumnReader::next_value() {
  Page& p = *page_;
  if (p.dictionary) {
    const uint32_t i = p.indices.next();
    QV_CHECK(!dict_.empty(), "a dictionary-encoded value without a dictionary page");
    QV_CHECK(i < dict_.size(), "dictionary index ", i, " with ", dict_.size(), " entries");
    return dict_[i];
  }
  QV_CHECK(p.plain_end - p.plain_pos >= 4, "PLAIN values end before the levels do");
  const uint32_t n = load_u32(bytes(p.body) + p.plain_pos);
  p.plain_pos += 4;
  QV_CHECK(n <= p.plain_end - p.plain_pos, "PLAIN value of ", n, " bytes past the page end");
  const std::string_view v(p.body.data() + p.plain_pos, n);
  p.plain_pos += n;
  return v;
}

bool ColumnReader::peek() {
  if (have_cur_) return true;
  while (!page_ || page_->values_left == 0)
    if (!load_page()) return false;
  cur_rep_ = column_.max_rep > 0 ? static_cast<int>(page_->rep.next()) : 0;
  cur_def_ = column_.max_def > 0 ? static_cast<int>(page_->def.next()) : 0;
  QV_CHECK(cur_rep_ <= column_.max_rep && cur_def_ <= column_.max_def, "level (", cur_rep_, ", ",
           cur_def_, ") above the column's maximum (", column_.max_rep, ", ", column_.max_def, ")");
  --page_->values_left;
  have_cur_ = true;
  return true;
}

bool ColumnReader::next(ListRow& row, bool keep) {
  row.is_null = row.too_large = false;
  row.items.clear();
  row.bytes = 0;
  try {
    if (!peek()) return false;
    QV_CHECK(cur_rep_ == 0, "a row starts at repetition level ", cur_rep_);
    const Limits& lim = file_.limits();
    int64_t count = 0;
    bool no_elements = false;  // a null or empty list: nothing may follow it in the row
    do {
      QV_CHECK(!no_elements && (count == 0 || cur_def_ >= column_.elem_def),
               "a null or empty list inside a row's list");
      have_cur_ = false;
      if (cur_def_ < column_.elem_def) {
        no_elements = true;
        row.is_null = cur_def_ < column_.list_def;
        continue;
      }
      const bool present = cur_def_ == column_.max_def;
      const std::string_view v = present ? next_value() : std::string_view();
      ++count;
      row.bytes += 16 + static_cast<int64_t>(v.size());
      if (count > lim.max_row_items || row.bytes > lim.max_row_bytes) {
        row.too_large = true;
        row.items.clear();
      }
      if (keep && !row.too_large)
        row.items.push_back(present ? std::optional<std::string>(v) : std::nullopt);
    } while (peek() && cur_rep_ != 0);
  } catch (const Error& e) {
    corrupt(e.what());
  }
  return true;
}

}  // namespace qv::data::parquet
