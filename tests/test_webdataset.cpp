#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "data/image/image_decode.h"
#include "data/sources/cc12m.h"
#include "data/sources/tar_reader.h"
#include "data/sources/webdataset.h"
#include "data_test_utils.h"

namespace qv::data {
namespace {

using testing::TarBuilder;
using testing::TempDir;

const std::string kShard = testing::source_path("data/cc12m-train-0000.tar");

std::vector<RawSample> read_all(WebDatasetReader& reader) {
  std::vector<RawSample> out;
  RawSample s;
  while (reader.next(s)) out.push_back(s);
  return out;
}

std::vector<std::string> keys_of(const std::vector<RawSample>& samples) {
  std::vector<std::string> keys;
  for (const auto& s : samples) keys.push_back(s.key);
  return keys;
}

// Every entry of a tar, read cleanly (used to find where to damage the real shard).
std::vector<TarEntry> entries_of(const std::string& path) {
  TarReader tar(path);
  std::vector<TarEntry> out;
  TarEntry e;
  while (tar.next(e) == TarStatus::kOk) out.push_back(e);
  EXPECT_EQ(tar.damage(), TarDamage::kNone) << tar.error();
  return out;
}

// Writes the first `bytes` bytes of the real shard into `dir`.
std::string truncated_shard(const TempDir& dir, int64_t bytes) {
  const std::string path = dir.file("truncated.tar");
  testing::write_bytes(path, testing::read_bytes(kShard).substr(0, static_cast<size_t>(bytes)));
  return path;
}

// A tar of cc12m-like samples: key -> {ext -> bytes}, in the given order.
std::string write_tar(const TempDir& dir, const std::string& name,
                      const std::vector<std::pair<std::string, std::string>>& members) {
  TarBuilder tb;
  for (const auto& [n, data] : members) tb.add(n, data);
  tb.finish();
  testing::write_bytes(dir.file(name), tb.bytes());
  return dir.file(name);
}

TEST(WebDataset, ReadsTheRealShard) {
  WebDatasetReader reader({kShard});
  const auto samples = read_all(reader);
  ASSERT_EQ(samples.size(), 32u);
  std::set<std::string> keys;
  for (const auto& s : samples) {
    EXPECT_TRUE(keys.insert(s.key).second) << "duplicate key " << s.key;
    EXPECT_EQ(s.shard, kShard);
    ASSERT_EQ(s.members.size(), 3u) << s.key;
    // The json member is an independent reference written by img2dataset: its key, caption and
    // image size must match what the other members hold.
    const auto meta = nlohmann::json::parse(s.members.at("json"));
    EXPECT_EQ(meta.at("key").get<std::string>(), s.key);
    EXPECT_EQ(meta.at("caption").get<std::string>(), s.members.at("txt"));
    const std::string& jpg = s.members.at("jpg");
    const ImageInfo info =
        read_image_info(reinterpret_cast<const uint8_t*>(jpg.data()), jpg.size(), s.key);
    EXPECT_EQ(info.format, ImageFormat::kJpeg);
    EXPECT_EQ(info.width, meta.at("width").get<int>()) << s.key;
    EXPECT_EQ(info.height, meta.at("height").get<int>()) << s.key;
    const Cc12mPair pair = cc12m_pair(s);
    ASSERT_TRUE(pair.ok()) << s.key << ": " << pair.skip_reason;
    EXPECT_FALSE(pair.caption.empty());
    EXPECT_EQ(pair.image_ext, "jpg");
    EXPECT_EQ(pair.image.size(), jpg.size());
  }
  EXPECT_EQ(reader.skips().total(), 0) << reader.skips().summary();
  EXPECT_EQ(reader.ignored_members(), 0);
  RawSample after;
  EXPECT_FALSE(reader.next(after));  // stays at the end
}

TEST(WebDataset, SplitsMemberNamesLikeWebdataset) {
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(split_member_name("000001.jpg"), (P{"000001", "jpg"}));
  EXPECT_EQ(split_member_name("dir.v1/000001.seg.PNG"), (P{"dir.v1/000001", "seg.png"}));
  EXPECT_EQ(split_member_name("README"), (P{"README", ""}));
}

TEST(WebDataset, TruncatedMidMemberYieldsTheCompleteSamples) {
  const auto entries = entries_of(kShard);
  ASSERT_EQ(entries.size(), 96u);
  TempDir dir;
  // Entries come in threes (jpg, json, txt). Cut inside the jpg data of sample 3 (0-based).
  const TarEntry& jpg = entries[9];
  ASSERT_EQ(split_member_name(jpg.name).second, "jpg");
  const std::string path = truncated_shard(dir, jpg.data_offset + jpg.size / 2);
  WebDatasetReader reader({path});
  const auto samples = read_all(reader);
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(reader.skips().count(skip::kTruncatedShard), 1);
  EXPECT_EQ(reader.skips().total(), 1);
  const auto records = reader.skips().records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].origin, path + ":" + split_member_name(jpg.name).first);
  EXPECT_NE(records[0].detail.find("file ends inside entry"), std::string::npos)
      << records[0].detail;
}

TEST(WebDataset, TruncatedMidHeaderYieldsTheCompleteSamples) {
  const auto entries = entries_of(kShard);
  TempDir dir;
  // Inside the header of sample 3's second member: samples 0..2 are known complete.
  {
    const TarEntry& json = entries[10];
    WebDatasetReader reader({truncated_shard(dir, json.header_offset + 100)});
    EXPECT_EQ(read_all(reader).size(), 3u);
    EXPECT_EQ(reader.skips().count(skip::kTruncatedShard), 1) << reader.skips().summary();
  }
  // Inside the ustar header after the pax header of sample 3's first member.
  {
    const TarEntry& jpg = entries[9];
    WebDatasetReader reader({truncated_shard(dir, jpg.data_offset - 512 + 100)});
    // Sample 2 was being read when the damage came: it cannot be known complete, so it is
    // dropped with the rest.
    EXPECT_EQ(read_all(reader).size(), 2u);
    const auto records = reader.skips().records();
    ASSERT_EQ(records.size(), 1u);
    EXPECT_EQ(records[0].reason, skip::kTruncatedShard);
    EXPECT_EQ(records[0].origin,
              dir.file("truncated.tar") + ":" + split_member_name(entries[8].name).first);
  }
  // Exactly at an entry boundary, without the end-of-archive marker.
  {
    WebDatasetReader reader({truncated_shard(dir, entries[9].header_offset)});
    EXPECT_EQ(read_all(reader).size(), 2u);
    EXPECT_EQ(reader.skips().count(skip::kTruncatedShard), 1);
  }
  // Inside the very first header.
  {
    WebDatasetReader reader({truncated_shard(dir, 300)});
    EXPECT_EQ(read_all(reader).size(), 0u);
    EXPECT_EQ(reader.skips().count(skip::kTruncatedShard), 1);
  }
}

// A small shard mixing plain and pax entries, and the samples it holds.
std::string mixed_shard(std::vector<RawSample>& expected) {
  TarBuilder tb;
  for (int i = 0; i < 6; ++i) {
    const std::string key = cat("s", i);
    const std::string jpg(100 + 300 * i, static_cast<char>('a' + i));
    const std::string txt = cat("caption ", i);
    if (i % 2) {
      tb.add_pax(key + ".jpg", jpg);
    } else {
      tb.add(key + ".jpg", jpg);
    }
    tb.add(key + ".txt", txt);
    expected.push_back(RawSample{"", key, {{"jpg", jpg}, {"txt", txt}}});
  }
  tb.finish();
  return tb.bytes();
}

// Whatever the damage, what comes out is a prefix of the clean samples, byte for byte, and the
// damage is one counted skip.
void expect_prefix_and_one_skip(WebDatasetReader& reader, const std::vector<RawSample>& expected,
                                std::string_view reason, const std::string& what) {
  const auto samples = read_all(reader);
  ASSERT_LE(samples.size(), expected.size()) << what;
  for (size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(samples[i].key, expected[i].key) << what;
    EXPECT_EQ(samples[i].members, expected[i].members) << what;
  }
  EXPECT_EQ(reader.skips().total(), 1) << what << ": " << reader.skips().summary();
  EXPECT_EQ(reader.skips().count(reason), 1) << what << ": " << reader.skips().summary();
}

TEST(WebDataset, EveryTruncationPointYieldsAPrefix) {
  std::vector<RawSample> expected;
  const std::string bytes = mixed_shard(expected);
  TempDir dir;
  const std::string path = dir.file("cut.tar");
  {
    testing::write_bytes(path, bytes);
    WebDatasetReader whole({path});
    ASSERT_EQ(read_all(whole).size(), expected.size());
  }
  // Cut at, just after and just before every block boundary up to the end-of-archive marker.
  const size_t end = bytes.size() - 1024;
  std::vector<size_t> cuts;
  for (size_t block = 0; block <= end; block += 512)
    for (size_t c : {block, block + 100, block + 511})
      if (c > 0 && c <= end) cuts.push_back(c);
  ASSERT_GT(cuts.size(), 100u);
  for (size_t cut : cuts) {
    testing::write_bytes(path, bytes.substr(0, cut));
    WebDatasetReader reader({path});
    expect_prefix_and_one_skip(reader, expected, skip::kTruncatedShard,
                               "cut at " + std::to_string(cut));
  }
}

TEST(WebDataset, EveryHeaderByteChangeIsDetected) {
  std::vector<RawSample> expected;
  const std::string bytes = mixed_shard(expected);
  std::vector<size_t> headers;
  for (const TarEntry& e : [&] {
         TempDir d;
         testing::write_bytes(d.file("m.tar"), bytes);
         return entries_of(d.file("m.tar"));
       }()) {
    headers.push_back(static_cast<size_t>(e.header_offset));
    if (e.data_offset - e.header_offset > 512)
      headers.push_back(static_cast<size_t>(e.data_offset - 512));
  }
  ASSERT_EQ(headers.size(), 15u);  // 12 entries, 3 of them behind a pax header
  TempDir dir;
  const std::string path = dir.file("flip.tar");
  for (size_t h : {headers[0], headers[3], headers[4], headers[14]}) {
    for (size_t i = 0; i < 512; i += 7) {
      std::string damaged = bytes;
      damaged[h + i] = static_cast<char>(damaged[h + i] ^ 0x5a);
      testing::write_bytes(path, damaged);
      WebDatasetReader reader({path});
      expect_prefix_and_one_skip(reader, expected, skip::kCorruptTarHeader,
                                 "header at " + std::to_string(h) + ", byte " + std::to_string(i));
    }
  }
}

TEST(WebDataset, CorruptHeaderChecksumStopsTheShardAndTheNextShardIsRead) {
  TempDir dir;
  TarBuilder tb;
  tb.add("a.jpg", "A");
  tb.add("a.txt", "caption a");
  tb.add("b.jpg", "B");
  const size_t b_txt = tb.add("b.txt", "caption b");
  tb.add("c.jpg", "C");
  tb.add("c.txt", "caption c");
  tb.finish();
  tb.bytes()[b_txt] = 'x';  // name changes, checksum does not
  testing::write_bytes(dir.file("bad.tar"), tb.bytes());
  const std::string good = write_tar(dir, "good.tar", {{"d.jpg", "D"}, {"d.txt", "caption d"}});
  WebDatasetReader reader({dir.file("bad.tar"), good});
  EXPECT_EQ(keys_of(read_all(reader)), (std::vector<std::string>{"a", "d"}));
  const auto records = reader.skips().records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].reason, skip::kCorruptTarHeader);
  EXPECT_EQ(records[0].origin, dir.file("bad.tar") + ":b");
  EXPECT_NE(records[0].detail.find("checksum at byte " + std::to_string(b_txt)), std::string::npos)
      << records[0].detail;
}

TEST(WebDataset, CorruptFirstHeaderAndBadSizeField) {
  TempDir dir;
  TarBuilder tb;
  tb.add("a.jpg", "A");
  tb.finish();
  std::string bytes = tb.bytes();
  bytes[0] = 'z';
  testing::write_bytes(dir.file("first.tar"), bytes);
  bytes = tb.bytes();
  std::memcpy(bytes.data() + 124, "0000000009x", 11);  // not octal
  TarBuilder::set_checksum(bytes.data());
  testing::write_bytes(dir.file("size.tar"), bytes);
  WebDatasetReader reader({dir.file("first.tar"), dir.file("size.tar")});
  EXPECT_TRUE(read_all(reader).empty());
  EXPECT_EQ(reader.skips().count(skip::kCorruptTarHeader), 2) << reader.skips().summary();
}

TEST(WebDataset, EmptyShardsYieldNothingAndAreCounted) {
  TempDir dir;
  testing::write_bytes(dir.file("zero.tar"), "");
  TarBuilder tb;
  tb.finish();
  testing::write_bytes(dir.file("marker.tar"), tb.bytes());
  const std::string good = write_tar(dir, "good.tar", {{"k.jpg", "J"}, {"k.txt", "t"}});
  WebDatasetReader reader({dir.file("zero.tar"), dir.file("marker.tar"), good});
  EXPECT_EQ(keys_of(read_all(reader)), (std::vector<std::string>{"k"}));
  EXPECT_EQ(reader.skips().count(skip::kEmptyShard), 2);
}

TEST(WebDataset, MissingShardIsAClearError) {
  const std::string missing = "/nonexistent/cc12m-train-9999.tar";
  try {
    WebDatasetReader reader({kShard, missing});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
  TempDir dir;
  EXPECT_THROW(WebDatasetReader({dir.path()}), Error);  // a folder is not a shard
  EXPECT_THROW(TarReader(dir.path()), Error);
}

TEST(WebDataset, SampleSkipsAreCountedWithShardAndKey) {
  TempDir dir;
  const std::string path = write_tar(dir, "s.tar",
                                     {
                                         {"ok.jpg", "J"},
                                         {"ok.txt", "a cat"},
                                         {"nocap.jpg", "J"},
                                         {"nocap.json", "{}"},
                                         {"zero.jpg", ""},
                                         {"zero.txt", "empty image"},
                                         {"badutf.jpg", "J"},
                                         {"badutf.txt", "caf\xc3"},
                                         {"blank.png", "P"},
                                         {"blank.txt", " \n"},
                                         {"noimg.txt", "text only"},
                                         {"jsoncap.webp", "W"},
                                         {"jsoncap.json", R"({"caption": "from json"})"},
                                     });
  WebDatasetReader reader({path});
  SkipStats consumer;
  std::vector<std::pair<std::string, std::string>> pairs;  // key, caption
  RawSample s;
  while (reader.next(s)) {
    const Cc12mPair p = cc12m_pair(s);
    if (p.ok()) {
      pairs.emplace_back(s.key, p.caption);
    } else {
      consumer.add(p.skip_reason, s.origin());
    }
  }
  EXPECT_EQ(pairs, (std::vector<std::pair<std::string, std::string>>{{"ok", "a cat"},
                                                                     {"jsoncap", "from json"}}));
  EXPECT_EQ(reader.skips().total(), 0);  // the reader itself skipped nothing
  EXPECT_EQ(consumer.by_reason(), (std::map<std::string, int64_t>{{"no caption", 1},
                                                                  {"empty image", 1},
                                                                  {"caption is not valid UTF-8", 1},
                                                                  {"empty caption", 1},
                                                                  {"no image", 1}}));
  const auto records = consumer.records();
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records[0].message(), path + ":nocap: no caption");
}

TEST(WebDataset, UnknownExtensionsAndNonFilesAreIgnored) {
  TempDir dir;
  TarBuilder tb;
  tb.add("dir/", "", '5');
  tb.add("__meta__", "{}");
  tb.add("dir/k1.JPG", "J1");
  tb.add("dir/k1.cls", "7");
  tb.add("dir/k1.seg.png", "mask");
  tb.add("dir/k1.txt", "one");
  tb.add("dir/k1", "no extension");
  tb.add("dir/k2.cls", "8");
  tb.add("dir/k3.jpg", "J3");
  tb.add("dir/k3.txt", "three");
  tb.finish();
  testing::write_bytes(dir.file("u.tar"), tb.bytes());
  WebDatasetReader reader({dir.file("u.tar")});
  const auto samples = read_all(reader);
  ASSERT_EQ(keys_of(samples), (std::vector<std::string>{"dir/k1", "dir/k3"}));
  EXPECT_EQ(samples[0].members,
            (std::map<std::string, std::string>{{"jpg", "J1"}, {"txt", "one"}}));
  EXPECT_EQ(reader.ignored_members(), 6);
  // k2 held only ignored members.
  EXPECT_EQ(reader.skips().count(skip::kNoUsableMembers), 1) << reader.skips().summary();

  ReaderLimits keep_all;
  keep_all.extensions.clear();
  WebDatasetReader all({dir.file("u.tar")}, keep_all);
  const auto every = read_all(all);
  ASSERT_EQ(every.size(), 3u);
  EXPECT_EQ(every[0].members.count("seg.png"), 1u);
  EXPECT_EQ(every[1].members.at("cls"), "8");
}

TEST(WebDataset, DuplicateExtensionTooLargeAndTooManyMembersSkipTheSample) {
  TempDir dir;
  const std::string path = write_tar(dir, "d.tar",
                                     {{"dup.jpg", "J"},
                                      {"dup.txt", "t"},
                                      {"dup.JPG", "J again"},
                                      {"big.jpg", std::string(2000, 'x')},
                                      {"big.txt", "t"},
                                      {"many.jpg", "J"},
                                      {"many.png", "P"},
                                      {"many.txt", "t"},
                                      {"fine.jpg", std::string(1000, 'y')},
                                      {"fine.txt", "t"}});
  ReaderLimits limits;
  limits.max_member_bytes = 1000;
  limits.max_members_per_sample = 2;
  WebDatasetReader reader({path}, limits);
  EXPECT_EQ(keys_of(read_all(reader)), (std::vector<std::string>{"fine"}));
  EXPECT_EQ(reader.skips().by_reason(),
            (std::map<std::string, int64_t>{
                {"duplicate member", 1}, {"member too large", 1}, {"too many members", 1}}));
  for (const auto& r : reader.skips().records()) EXPECT_EQ(r.origin.rfind(path + ":", 0), 0u);
}

TEST(WebDataset, LongNamesAndRepeatedKeys) {
  TempDir dir;
  const std::string deep = std::string(120, 'd') + "/" + std::string(40, 'k');
  TarBuilder tb;
  tb.add_pax(deep + ".jpg", "J");
  tb.add_gnu_long_name(deep + ".txt", "pax and gnu");
  tb.add("r.jpg", "J1");
  tb.add("r.txt", "first");
  tb.add("s.jpg", "J2");
  tb.add("s.txt", "between");
  tb.add("r.jpg", "J3");  // a key seen before starts a new sample, as in webdataset
  tb.add("r.txt", "again");
  tb.finish();
  testing::write_bytes(dir.file("l.tar"), tb.bytes());
  WebDatasetReader reader({dir.file("l.tar")});
  const auto samples = read_all(reader);
  ASSERT_EQ(keys_of(samples), (std::vector<std::string>{deep, "r", "s", "r"}));
  EXPECT_EQ(samples[0].members.at("txt"), "pax and gnu");
  EXPECT_EQ(samples[3].members.at("txt"), "again");
}

TEST(WebDataset, BaseTwoFiftySixSizesAreRead) {
  TempDir dir;
  TarBuilder tb;
  tb.add("b.txt", "hello");
  tb.finish();
  std::string bytes = tb.bytes();
  std::memset(bytes.data() + 124, 0, 12);
  bytes[124] = static_cast<char>(0x80);
  bytes[135] = 5;
  TarBuilder::set_checksum(bytes.data());
  testing::write_bytes(dir.file("b.tar"), bytes);
  ReaderLimits limits;
  limits.extensions.clear();
  WebDatasetReader reader({dir.file("b.tar")}, limits);
  const auto samples = read_all(reader);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].members.at("txt"), "hello");
}

TEST(WebDataset, ResumesExactlyFromEveryState) {
  TempDir dir;
  const std::string second = write_tar(
      dir, "second.tar", {{"x.jpg", "X"}, {"x.txt", "x"}, {"y.jpg", "Y"}, {"y.txt", "y"}});
  const std::vector<std::string> shards = {kShard, second};
  WebDatasetReader reader(shards);
  std::vector<RawSample> samples;
  std::vector<ReaderState> states = {reader.state()};
  RawSample s;
  while (reader.next(s)) {
    samples.push_back(s);
    states.push_back(reader.state());
  }
  ASSERT_EQ(samples.size(), 34u);
  EXPECT_EQ(states.back().shard_index, 2);
  EXPECT_EQ(states[32].shard, second);  // after the last sample of the first shard
  EXPECT_EQ(states[32].offset, 0);
  for (size_t n : {0, 1, 17, 31, 32, 33, 34}) {
    const ReaderState st =
        ReaderState::from_json(nlohmann::json::parse(states[n].to_json().dump()));
    EXPECT_EQ(st, states[n]);
    WebDatasetReader resumed(shards);
    resumed.restore(st);
    size_t i = n;
    RawSample r;
    while (resumed.next(r)) {
      ASSERT_LT(i, samples.size());
      EXPECT_EQ(r.key, samples[i].key) << "resumed after " << n;
      EXPECT_EQ(r.members, samples[i].members) << "resumed after " << n;
      ++i;
    }
    EXPECT_EQ(i, samples.size()) << "resumed after " << n;
  }
}

TEST(WebDataset, RestoreRejectsAStateOfOtherShards) {
  WebDatasetReader reader({kShard});
  RawSample s;
  ASSERT_TRUE(reader.next(s));
  ReaderState st = reader.state();
  TempDir dir;
  const std::string other = write_tar(dir, "o.tar", {{"a.jpg", "A"}});
  WebDatasetReader wrong({other});
  EXPECT_THROW(wrong.restore(st), Error);
  st.offset += 100;  // not a header position
  WebDatasetReader same({kShard});
  EXPECT_THROW(same.restore(st), Error);
  EXPECT_THROW(ReaderState::from_json(nlohmann::json{{"shard", 3}}), Error);
}

}  // namespace
}  // namespace qv::data
