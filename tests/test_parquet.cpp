// The OBELICS Parquet reader (src/data/sources/parquet.*, obelics_parquet.*) against files
// written by an independent writer (parquet-wasm, i.e. arrow-rs) and read back by an
// independent reader (hyparquet) into <name>.expected.json
// (tests/tools/regenerate_parquet_data.sh): content equality on every file; documents and skips
// equal to the same rows as JSONL; exact resume from every state; the loader's batches equal to the
// JSONL loader's and exact after a seek-restore; corrupt files give errors that name file, row
// group, column and reason.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/pipeline/loader.h"
#include "data/sources/obelics.h"
#include "data/sources/obelics_parquet.h"
#include "data/sources/parquet.h"
#include "data_test_utils.h"
#include "loader_test_utils.h"

namespace qv::data {
namespace {

using testing::TempDir;

const std::string kDir = testing::source_path("tests/data/obelics");
const std::vector<std::string> kDocFiles = {
    "docs-snappy-dict-v1.parquet", "docs-snappy-plain-v2.parquet", "docs-zstd-dict-v2.parquet",
    "docs-zstd-plain-v1.parquet", "docs-uncompressed-dict-v1.parquet"};

nlohmann::json expected_of(const std::string& parquet_name) {
  const std::string name = parquet_name.substr(0, parquet_name.size() - 8) + ".expected.json";
  return nlohmann::json::parse(testing::read_bytes(kDir + "/" + name));
}

// A column's row as the JSON the reference wrote (null, or a list of strings and nulls).
nlohmann::json as_json(const parquet::ListRow& row) {
  if (row.is_null) return nullptr;
  nlohmann::json out = nlohmann::json::array();
  for (const auto& item : row.items) out.push_back(item ? nlohmann::json(*item) : nullptr);
  return out;
}

ObelicsOptions offline() {
  ObelicsOptions o;
  o.fetch_remote = false;
  return o;
}

std::vector<Document> read_all(ObelicsReader& reader) {
  std::vector<Document> out;
  Document d;
  while (reader.next(d)) out.push_back(d);
  return out;
}

void expect_same_items(const Document& a, const Document& b) {
  ASSERT_EQ(a.items.size(), b.items.size()) << a.origin() << " vs " << b.origin();
  for (size_t k = 0; k < a.items.size(); ++k) {
    EXPECT_EQ(a.items[k].is_image, b.items[k].is_image);
    EXPECT_EQ(a.items[k].text, b.items[k].text);
    EXPECT_EQ(a.items[k].image_ref, b.items[k].image_ref);
    EXPECT_EQ(a.items[k].image_bytes, b.items[k].image_bytes);
  }
}

TEST(Parquet, EveryFileMatchesTheIndependentReader) {
  parquet::PageCounts total;
  bool mixed_chunk = false, multi_page_chunk = false;
  std::vector<std::string> files = kDocFiles;
  files.push_back("sample.parquet");
  for (const auto& name : files) {
    SCOPED_TRACE(name);
    const nlohmann::json want = expected_of(name);
    parquet::File file(kDir + "/" + name, parquet::Limits{});
    std::vector<int64_t> groups;
    for (const auto& g : file.meta().row_groups) groups.push_back(g.num_rows);
    EXPECT_EQ(nlohmann::json(groups), want.at("row_groups"));
    nlohmann::json got = nlohmann::json::array();
    for (const char* column : {"texts", "images"}) {
      const auto col = parquet::find_string_list_column(file.meta(), column);
      EXPECT_EQ(col.max_rep, 1);
      size_t row = 0;
      for (size_t g = 0; g < groups.size(); ++g) {
        parquet::ColumnReader reader(file, static_cast<int>(g), col);
        parquet::ListRow r;
        int64_t rows = 0;
        while (reader.next(r)) {
          if (got.size() <= row) got.push_back(nlohmann::json::object());
          got[row++][column] = as_json(r);
          ++rows;
        }
        EXPECT_EQ(rows, groups[g]) << column << ", row group " << g;
        const auto& p = reader.pages();
        mixed_chunk |= p.dictionary_encoded > 0 && p.plain > 0;
        multi_page_chunk |= p.data_v1 + p.data_v2 > 1;
        total.data_v1 += p.data_v1;
        total.data_v2 += p.data_v2;
        total.dictionary += p.dictionary;
        total.dictionary_encoded += p.dictionary_encoded;
        total.plain += p.plain;
      }
    }
    EXPECT_EQ(got, want.at("rows"));
  }
  // The files exercise every page kind and value encoding the reader supports.
  EXPECT_GT(total.data_v1, 0);
  EXPECT_GT(total.data_v2, 0);
  EXPECT_GT(total.dictionary, 0);
  EXPECT_GT(total.dictionary_encoded, 0);
  EXPECT_GT(total.plain, 0);
  EXPECT_TRUE(mixed_chunk) << "no chunk falls back from dictionary to plain pages";
  EXPECT_TRUE(multi_page_chunk) << "no chunk has several data pages";
}

TEST(Parquet, OtherColumnsAreSkippedAndSchemaIsChecked) {
  parquet::File file(kDir + "/docs-zstd-plain-v1.parquet", parquet::Limits{});
  // images, metadata, general_metadata, num_tokens, tags, texts: texts is the sixth leaf.
  EXPECT_EQ(file.meta().row_groups.at(0).columns.size(), 6u);
  EXPECT_EQ(parquet::find_string_list_column(file.meta(), "images").leaf, 0);
  EXPECT_EQ(parquet::find_string_list_column(file.meta(), "texts").leaf, 5);
  EXPECT_THROW(parquet::find_string_list_column(file.meta(), "metadata"), Error);  // not a list
  EXPECT_THROW(parquet::find_string_list_column(file.meta(), "tags"), Error);      // list of int32
  EXPECT_THROW(parquet::find_string_list_column(file.meta(), "nope"), Error);
}

TEST(ObelicsParquet, DocumentsAndSkipsEqualTheSameRowsAsJsonl) {
  ObelicsReader jsonl({kDir + "/docs.jsonl"}, offline());
  const auto want = read_all(jsonl);
  ASSERT_EQ(want.size(), 24u);
  EXPECT_EQ(jsonl.skips().total(), 5) << jsonl.skips().summary();
  for (const auto& name : kDocFiles) {
    SCOPED_TRACE(name);
    ObelicsReader reader({kDir + "/" + name}, offline());
    const auto got = read_all(reader);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].origin(), kDir + "/" + name + ":" + std::to_string(want[i].line));
      expect_same_items(got[i], want[i]);
    }
    EXPECT_EQ(reader.skips().by_reason(), jsonl.skips().by_reason());
  }
}

TEST(ObelicsParquet, ResumesExactlyFromEveryState) {
  const std::vector<std::string> files = {kDir + "/docs-snappy-dict-v1.parquet",
                                          kDir + "/sample.jsonl", kDir + "/sample.parquet"};
  ObelicsReader reader(files, offline());
  std::vector<Document> docs;
  std::vector<ObelicsState> states = {reader.state()};
  Document d;
  while (reader.next(d)) {
    docs.push_back(d);
    states.push_back(reader.state());
  }
  ASSERT_EQ(docs.size(), 30u);
  ObelicsReader reused(files, offline());  // one reader seeking back and forth
  for (size_t n :
       {size_t{29}, size_t{3}, size_t{0}, size_t{17}, size_t{16}, size_t{30}, size_t{8}}) {
    reused.restore(states[n]);
    Document next;
    if (n == docs.size()) {
      EXPECT_FALSE(reused.next(next));
      continue;
    }
    ASSERT_TRUE(reused.next(next)) << n;
    EXPECT_EQ(next.origin(), docs[n].origin());
  }
  for (size_t n = 0; n < states.size(); ++n) {
    const auto st = ObelicsState::from_json(nlohmann::json::parse(states[n].to_json().dump()));
    ObelicsReader resumed(files, offline());
    resumed.restore(st);
    const auto rest = read_all(resumed);
    ASSERT_EQ(rest.size(), docs.size() - n) << n;
    for (size_t i = 0; i < rest.size(); ++i) {
      EXPECT_EQ(rest[i].origin(), docs[n + i].origin());
      expect_same_items(rest[i], docs[n + i]);
    }
  }
}

TEST(ObelicsParquet, PositionOutsideTheFileIsAnError) {
  const std::string path = kDir + "/sample.parquet";  // row groups of 2 and 1 rows
  ObelicsParquetFile file(path, parquet::Limits{});
  EXPECT_NO_THROW(file.seek(0, 2));
  EXPECT_NO_THROW(file.seek(1, 3));
  EXPECT_NO_THROW(file.seek(2, 3));
  for (const auto& [group, row] :
       std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {1, 1}, {2, 2}, {3, 3}, {-1, 0}, {0, -1}}) {
    try {
      file.seek(group, row);
      ADD_FAILURE() << group << ", " << row;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
}

TEST(ObelicsParquet, OverlargeRowsAreCountedSkips) {
  ObelicsOptions o = offline();
  o.max_line_bytes = 100;  // document 5 holds 4 entries of 16 bytes plus its strings
  ObelicsReader reader({kDir + "/docs-snappy-dict-v1.parquet"}, o);
  const auto docs = read_all(reader);
  EXPECT_GT(reader.skips().count("row too large"), 0);
  EXPECT_EQ(docs.size() + static_cast<size_t>(reader.skips().count("row too large")), 24u);
}

// ----- Corrupt files -----

std::string error_of(const std::string& path) {
  try {
    ObelicsReader reader({path}, offline());
    read_all(reader);
  } catch (const Error& e) {
    return e.what();
  }
  return {};
}

void put_u32(std::string& bytes, size_t at, uint32_t v) {
  for (int k = 0; k < 4; ++k) bytes[at + k] = static_cast<char>(v >> (8 * k));
}

TEST(ObelicsParquet, CorruptFilesGiveErrorsNamingFileAndReason) {
  TempDir dir;
  const std::string good = testing::read_bytes(kDir + "/sample.parquet");
  const std::string path = dir.file("bad.parquet");
  auto expect_error = [&](const std::string& bytes, const std::vector<std::string>& parts) {
    testing::write_bytes(path, bytes);
    const std::string what = error_of(path);
    ASSERT_FALSE(what.empty()) << "no error for " << parts.back();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    for (const auto& p : parts) EXPECT_NE(what.find(p), std::string::npos) << what;
  };
  std::string bytes = good;
  bytes[0] = 'X';
  expect_error(bytes, {"bad magic at the start"});
  expect_error(good.substr(0, good.size() - 1), {"bad magic at the end"});
  expect_error(good.substr(0, 8), {"too small"});
  // Truncated inside the footer: the tail is kept, so the magic is right but the length lies.
  expect_error(good.substr(0, 100) + good.substr(good.size() - 8), {"footer length"});
  bytes = good;
  put_u32(bytes, good.size() - 8, 0x7fffffff);
  expect_error(bytes, {"footer length 2147483647 exceeds the file"});
  bytes = good;
  put_u32(bytes, good.size() - 8, static_cast<uint32_t>(good.size() - 12) / 2);  // cuts the footer
  expect_error(bytes, {"footer:"});
  // A dictionary entry whose length prefix lies (the uncompressed file's text is in the clear).
  bytes = testing::read_bytes(kDir + "/docs-uncompressed-dict-v1.parquet");
  const size_t at = bytes.find("document 0 says w");
  ASSERT_NE(at, std::string::npos);
  put_u32(bytes, at - 4, 0x10000);
  expect_error(bytes, {"row group 0", "column 'texts'", "dictionary entry 0 of 65536 bytes"});
}

// The bytes as an in-memory file (memfd), so thousands of variants cost no disk writes.
class MemFile {
 public:
  explicit MemFile(const std::string& bytes) : fd_(::memfd_create("parquet-test", 0)) {
    if (fd_ < 0 || ::write(fd_, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()))
      throw std::runtime_error("memfd");
  }
  ~MemFile() { ::close(fd_); }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

TEST(ObelicsParquet, UnsupportedFilesAreRefusedByName) {
  // Written by the same independent writer: valid Parquet that is not what we read.
  const std::string gzip = kDir + "/bad-gzip.parquet", no_texts = kDir + "/bad-no-texts.parquet";
  std::string what = error_of(gzip);
  for (const char* part : {"row group 0", "column '", "compression GZIP is not supported"})
    EXPECT_NE(what.find(part), std::string::npos) << what;
  EXPECT_NE(what.find(gzip), std::string::npos) << what;
  what = error_of(no_texts);
  EXPECT_NE(what.find(no_texts + ": no column 'texts'"), std::string::npos) << what;
}

TEST(ObelicsParquet, EveryTruncationAndByteFlipIsAnErrorOrGoodData) {
  // Every corruption of a small file either reads (at most its rows, some perhaps counted
  // skips) or throws qv::Error naming the file; under the sanitizer build this also proves
  // memory safety on each of these inputs.
  const std::string good = testing::read_bytes(kDir + "/sample.parquet");
  int errors = 0, reads = 0;
  auto check = [&](const std::string& bytes) {
    const MemFile file(bytes);
    try {
      ObelicsParquetFile reader(file.path(), parquet::Limits{});
      ObelicsRow row;
      int64_t rows = 0;
      while (reader.next(row)) ++rows;
      EXPECT_EQ(rows, reader.num_rows());
      ++reads;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(file.path()), std::string::npos) << e.what();
      ++errors;
    }
  };
  for (size_t cut = 0; cut < good.size(); ++cut) check(good.substr(0, cut));
  EXPECT_EQ(reads, 0) << "a truncated file read without an error";
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bytes = good;
    bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
    check(bytes);
  }
  EXPECT_GT(errors, static_cast<int>(good.size())) << "no byte flip was detected";
  EXPECT_GT(reads, 0) << "every byte flip was an error (flips in text bytes should read)";
}

// ----- The loader -----

data::LoaderConfig obelics_config(const std::string& path) {
  auto c = testing::small_config();
  c.dataset = "obelics";
  c.path = path;
  c.obelics.fetch_remote = false;
  c.seq_len = 96;
  c.prefetch = 1;
  return c;
}

TEST(ObelicsParquet, LoaderBatchesEqualTheJsonlLoaders) {
  for (const auto& [jsonl, parquet] : std::vector<std::pair<std::string, std::string>>{
           {"sample.jsonl", "sample.parquet"}, {"docs.jsonl", "docs-zstd-dict-v2.parquet"}}) {
    SCOPED_TRACE(parquet);
    DataLoader a(obelics_config(kDir + "/" + jsonl)), b(obelics_config(kDir + "/" + parquet));
    for (int i = 0; i < 6; ++i) {
      const Batch x = a.next(), y = b.next();
      EXPECT_EQ(x.ids, y.ids);
      EXPECT_EQ(x.labels, y.labels);
      EXPECT_EQ(x.document_ids, y.document_ids);
      EXPECT_EQ(x.image_pixels, y.image_pixels);
      ASSERT_EQ(x.origins.size(), y.origins.size());
      for (size_t k = 0; k < x.origins.size(); ++k) {
        std::string o = y.origins[k];
        o.replace(o.find(parquet), parquet.size(), jsonl);
        EXPECT_EQ(o, x.origins[k]);
      }
    }
  }
}

TEST(ObelicsParquet, LoaderSeekRestoreIsExactAtEveryCut) {
  const auto c = obelics_config(kDir + "/docs-snappy-plain-v2.parquet");
  DataLoader straight(c);
  const auto all = testing::take(straight, 12);
  for (const int at : {1, 5, 9}) {
    DataLoader a(c);
    testing::take(a, at);
    const auto state = a.state();
    ASSERT_TRUE(state.contains("pipeline"));
    DataLoader b(c);
    b.restore(state);
    const auto rest = testing::take(b, 12 - at);
    for (int i = 0; i < 12 - at; ++i) {
      SCOPED_TRACE("restored at " + std::to_string(at) + ", batch " + std::to_string(at + i));
      testing::expect_same(all[at + i], rest[i]);
    }
  }
}

TEST(ObelicsParquet, RanksReadWholeShardsOfTheirOwn) {
  // Two shards, two ranks: shard i goes to rank i, so each rank's documents come from its file.
  const std::vector<std::string> names = {"docs-zstd-plain-v1.parquet", "sample.parquet"};
  for (int rank = 0; rank < 2; ++rank) {
    auto c = obelics_config(kDir + "/{docs-zstd-plain-v1,sample}.parquet");
    c.world_size = 2;
    c.rank = rank;
    DataLoader l(c);
    for (int i = 0; i < 3; ++i)
      for (const auto& o : l.next().origins)
        EXPECT_EQ(o.rfind(kDir + "/" + names[rank] + ":", 0), 0u) << rank << ": " << o;
  }
}

}  // namespace
}  // namespace qv::data
