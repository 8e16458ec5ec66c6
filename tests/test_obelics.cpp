#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/image/image_decode.h"
#include "data/sources/obelics.h"
#include "data_test_utils.h"

namespace qv::data {
namespace {

using testing::TempDir;

const std::string kSampleDir = testing::source_path("tests/data/obelics");
const std::string kSample = kSampleDir + "/sample.jsonl";

std::vector<Document> read_all(ObelicsReader& reader) {
  std::vector<Document> out;
  Document d;
  while (reader.next(d)) out.push_back(d);
  return out;
}

std::vector<int64_t> lines_of(const std::vector<Document>& docs) {
  std::vector<int64_t> lines;
  for (const auto& d : docs) lines.push_back(d.line);
  return lines;
}

ObelicsOptions offline() {
  ObelicsOptions o;
  o.fetch_remote = false;
  return o;
}

// A JSONL file next to a copy of the sample images.
std::string write_jsonl(const TempDir& dir, const std::vector<std::string>& rows) {
  std::string text;
  for (const auto& r : rows) text += r + "\n";
  testing::write_bytes(dir.file("docs.jsonl"), text);
  testing::write_bytes(dir.file("images/red.png"),
                       testing::read_bytes(kSampleDir + "/images/red.png"));
  return dir.file("docs.jsonl");
}

TEST(Obelics, ReadsTheSampleDocuments) {
  ObelicsReader reader({kSample}, offline());
  const auto docs = read_all(reader);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(reader.skips().total(), 0) << reader.skips().summary();
  EXPECT_EQ(docs[0].origin(), kSample + ":1");
  ASSERT_EQ(docs[0].items.size(), 3u);
  EXPECT_FALSE(docs[0].items[0].is_image);
  EXPECT_EQ(docs[0].items[0].text, "A red square, drawn as a tiny PNG.");
  EXPECT_TRUE(docs[0].items[1].is_image);
  EXPECT_EQ(docs[0].items[1].image_ref, "images/red.png");
  EXPECT_EQ(docs[0].items[1].image_bytes, testing::read_bytes(kSampleDir + "/images/red.png"));
  ASSERT_EQ(docs[1].items.size(), 3u);
  EXPECT_TRUE(docs[1].items[0].is_image && !docs[1].items[1].is_image && docs[1].items[2].is_image);
  EXPECT_EQ(docs[2].items.size(), 2u);
  // The images are real PNGs with the pixels they were written with (tests/data/obelics/README.md).
  const std::string& red = docs[0].items[1].image_bytes;
  const RgbImage r = decode_image(reinterpret_cast<const uint8_t*>(red.data()), red.size());
  ASSERT_EQ(r.width, 2);
  ASSERT_EQ(r.height, 2);
  for (size_t i = 0; i < r.pixels.size(); i += 3)
    EXPECT_EQ((std::vector<int>{r.pixels[i], r.pixels[i + 1], r.pixels[i + 2]}),
              (std::vector<int>{255, 0, 0}));
  const std::string& blue = docs[1].items[2].image_bytes;
  const RgbImage b = decode_image(reinterpret_cast<const uint8_t*>(blue.data()), blue.size());
  ASSERT_EQ(b.width, 3);
  ASSERT_EQ(b.height, 2);
  EXPECT_EQ(
      std::vector<int>(b.pixels.begin(), b.pixels.end()),
      (std::vector<int>{0, 0, 255, 0, 0, 255, 255, 255, 255, 0, 0, 200, 0, 0, 200, 0, 0, 200}));
}

TEST(Obelics, MalformedRowsAreCountedWithTheirLineNumbers) {
  TempDir dir;
  const std::string path = write_jsonl(
      dir, {
               R"({"texts": ["ok one"], "images": [null]})",
               R"({"texts": ["broken", "images": [null]})",
               R"({"texts": ["a", null], "images": [null]})",
               R"({"texts": [null, "b"], "images": [null, null]})",
               R"({"texts": ["c"], "images": ["images/red.png"]})",
               R"({"texts": [3], "images": [null]})",
               R"(["texts", "images"])",
               R"({"texts": "x", "images": [null]})",
               R"({"texts": [], "images": []})",
               "",
               R"({"texts": ["caf\u00e9 ok", null], "images": [null, "images/red.png"]})",
               "{\"texts\": [\"bad utf-8 \xff\"], \"images\": [null]}",
           });
  ObelicsReader reader({path}, offline());
  EXPECT_EQ(lines_of(read_all(reader)), (std::vector<int64_t>{1, 11}));
  EXPECT_EQ(reader.skips().by_reason(),
            (std::map<std::string, int64_t>{{"malformed JSON", 2},
                                            {"texts/images length mismatch", 1},
                                            {"position with neither text nor image", 1},
                                            {"position with both text and image", 1},
                                            {"malformed document", 3},
                                            {"empty document", 1}}));
  const auto records = reader.skips().records();
  ASSERT_GE(records.size(), 2u);
  EXPECT_EQ(records[0].origin, path + ":2");
  EXPECT_EQ(records[0].reason, "malformed JSON");
  EXPECT_EQ(records[0].detail.rfind("line 2: ", 0), 0u) << records[0].detail;
  EXPECT_EQ(records[1].message(), path +
                                      ":3: texts/images length mismatch ('texts' has 2 entries, "
                                      "'images' has 1)");
}

TEST(Obelics, UnavailableImagesSkipTheDocumentOrAreDropped) {
  TempDir dir;
  const std::string path =
      write_jsonl(dir, {R"({"texts": ["a", null], "images": [null, "images/missing.png"]})",
                        R"({"texts": [null, "b"], "images": ["file:///etc/hostname", null]})",
                        R"({"texts": [null, "c"], "images": ["ftp://127.0.0.1/x.png", null]})",
                        R"({"texts": [null], "images": ["http://127.0.0.1:1/x.png"]})",
                        R"({"texts": ["d", null], "images": [null, "images/red.png"]})",
                        R"({"texts": [null], "images": ["images"]})"});
  {
    ObelicsReader reader({path}, offline());
    EXPECT_EQ(lines_of(read_all(reader)), (std::vector<int64_t>{5}));
    EXPECT_EQ(reader.skips().by_reason(),
              (std::map<std::string, int64_t>{{"missing image file", 1},
                                              {"image URL scheme not allowed", 2},
                                              {"remote images disabled", 1},
                                              {"unreadable image file", 1}}));
    const auto records = reader.skips().records();
    EXPECT_EQ(records[0].origin, path + ":1");
    EXPECT_NE(records[0].detail.find("images/missing.png"), std::string::npos) << records[0].detail;
  }
  {
    ObelicsOptions drop = offline();
    drop.drop_unavailable_images = true;
    ObelicsReader reader({path}, drop);
    const auto docs = read_all(reader);
    // Line 4 and 6 held nothing but the image.
    EXPECT_EQ(lines_of(docs), (std::vector<int64_t>{1, 2, 3, 5}));
    ASSERT_EQ(docs[0].items.size(), 1u);
    EXPECT_EQ(docs[0].items[0].text, "a");
    EXPECT_EQ(reader.skips().count("empty document"), 2);
  }
}

TEST(Obelics, OverlongLinesAreSkippedAndReadingGoesOn) {
  TempDir dir;
  const std::string path =
      write_jsonl(dir, {R"({"texts": [")" + std::string(5000, 'x') + R"("], "images": [null]})",
                        R"({"texts": ["short"], "images": [null]})"});
  ObelicsOptions o = offline();
  o.max_line_bytes = 1000;
  ObelicsReader reader({path}, o);
  const auto docs = read_all(reader);
  EXPECT_EQ(lines_of(docs), (std::vector<int64_t>{2}));
  EXPECT_EQ(reader.skips().count("line too long"), 1);
}

TEST(Obelics, EveryTruncationPointYieldsAPrefix) {
  const std::string text = testing::read_bytes(kSample);
  ObelicsReader whole({kSample}, offline());
  const auto expected = read_all(whole);
  TempDir dir;
  testing::write_bytes(dir.file("images/red.png"),
                       testing::read_bytes(kSampleDir + "/images/red.png"));
  testing::write_bytes(dir.file("images/blue.png"),
                       testing::read_bytes(kSampleDir + "/images/blue.png"));
  const std::string path = dir.file("cut.jsonl");
  for (size_t cut = 0; cut < text.size(); ++cut) {
    testing::write_bytes(path, text.substr(0, cut));
    ObelicsReader reader({path}, offline());
    const auto docs = read_all(reader);
    ASSERT_LE(docs.size(), expected.size());
    for (size_t i = 0; i < docs.size(); ++i) {
      EXPECT_EQ(docs[i].line, expected[i].line);
      ASSERT_EQ(docs[i].items.size(), expected[i].items.size());
      for (size_t k = 0; k < docs[i].items.size(); ++k) {
        EXPECT_EQ(docs[i].items[k].text, expected[i].items[k].text);
        EXPECT_EQ(docs[i].items[k].image_bytes, expected[i].items[k].image_bytes);
      }
    }
    // The cut line is either whole (cut after its closing brace) or a counted malformed row.
    EXPECT_LE(reader.skips().total(), 1) << "cut at " << cut;
    EXPECT_EQ(reader.skips().total(), reader.skips().count("malformed JSON")) << "cut at " << cut;
  }
}

TEST(Obelics, MissingFileIsAClearError) {
  try {
    ObelicsReader reader({kSample, "/nonexistent/obelics-0001.jsonl"});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/obelics-0001.jsonl"), std::string::npos);
  }
}

TEST(Obelics, ResumesExactlyFromEveryState) {
  TempDir dir;
  const std::string second = write_jsonl(dir, {R"({"texts": ["x"], "images": [null]})", "not json",
                                               R"({"texts": ["y"], "images": [null]})"});
  const std::vector<std::string> files = {kSample, second};
  ObelicsReader reader(files, offline());
  std::vector<Document> docs;
  std::vector<ObelicsState> states = {reader.state()};
  Document d;
  while (reader.next(d)) {
    docs.push_back(d);
    states.push_back(reader.state());
  }
  ASSERT_EQ(docs.size(), 5u);
  for (size_t n = 0; n < states.size(); ++n) {
    const auto st = ObelicsState::from_json(nlohmann::json::parse(states[n].to_json().dump()));
    EXPECT_EQ(st, states[n]);
    ObelicsReader resumed(files, offline());
    resumed.restore(st);
    const auto rest = read_all(resumed);
    ASSERT_EQ(rest.size(), docs.size() - n) << n;
    for (size_t i = 0; i < rest.size(); ++i) {
      EXPECT_EQ(rest[i].origin(), docs[n + i].origin());
      EXPECT_EQ(rest[i].items.size(), docs[n + i].items.size());
    }
  }
  ObelicsReader other({second}, offline());
  EXPECT_THROW(other.restore(states[1]), Error);
}

TEST(Obelics, FetchesHttpImagesThroughTheCache) {
  const std::string png = testing::read_bytes(kSampleDir + "/images/red.png");
  testing::LoopbackServer server;
  server.set("/red.png", {200, png, "Content-Type: image/png\r\n"});
  TempDir dir;
  const std::string path = write_jsonl(dir, {R"({"texts": ["remote", null], "images": [null, ")" +
                                             server.url("/red.png") + R"("]})"});
  ObelicsOptions o;
  o.http.cache_dir = dir.file("cache");
  o.http.use_env_proxy = false;
  for (int pass = 0; pass < 2; ++pass) {
    ObelicsReader reader({path}, o);
    const auto docs = read_all(reader);
    ASSERT_EQ(docs.size(), 1u) << reader.skips().summary();
    EXPECT_EQ(docs[0].items[1].image_bytes, png);
    EXPECT_EQ(reader.fetcher().cache_hits(), pass);
    EXPECT_EQ(reader.fetcher().downloads(), 1 - pass);
  }
  EXPECT_EQ(server.requests("/red.png"), 1);
}

TEST(Obelics, UnreachableUrlIsASkipNotAHang) {
  testing::LoopbackServer silent(/*silent=*/true);
  TempDir dir;
  const std::string path = write_jsonl(
      dir, {R"({"texts": [null, "t"], "images": [")" + silent.url("/slow.png") + R"(", null]})",
            R"({"texts": ["next"], "images": [null]})"});
  ObelicsOptions o;
  o.http.use_env_proxy = false;
  o.http.connect_timeout_ms = 1000;
  o.http.timeout_ms = 1000;
  o.http.max_attempts = 2;
  o.http.retry_backoff_ms = 0;
  ObelicsReader reader({path}, o);
  EXPECT_EQ(lines_of(read_all(reader)), (std::vector<int64_t>{2}));
  EXPECT_EQ(reader.skips().count("image fetch failed"), 1);
  const auto records = reader.skips().records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_NE(records[0].detail.find("2 attempts"), std::string::npos) << records[0].detail;
  silent.stop();
  EXPECT_EQ(silent.connections(), 2);
}

}  // namespace
}  // namespace qv::data
