// Unit tests of the tokenizer on a small hand-made tokenizer.json (tests/data/tokenizer_tiny.json,
// written by tests/tools/make_tiny_tokenizer.mjs): BPE merge order, added-token flags, decoding of
// byte-level pieces, both merge formats, and clear errors for broken or unsupported files.
// Expected ids come from Hugging Face `tokenizers` (tests/tools/regenerate_tokenizer_data.sh).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "data/tokenizer/tokenizer.h"
#include "tokenizer_test_data.h"

namespace qv::data {
namespace {

using nlohmann::json;

const std::string kTinyPath = test::source_path("tests/data/tokenizer_tiny.json");

const Tokenizer& tiny() {
  static const Tokenizer t = Tokenizer::load(kTinyPath);
  return t;
}

int32_t id_of(std::string_view content) {
  const auto id = tiny().token_id(content);
  EXPECT_TRUE(id.has_value()) << content;
  return id.value_or(-1);
}

void expect_reference_ids(const Tokenizer& tok, const std::string& what) {
  const auto corpus = test::read_jsonl(test::source_path("tests/data/tokenizer_tiny_corpus.jsonl"));
  const auto expected =
      test::read_jsonl(test::source_path("tests/data/tokenizer_tiny_expected.jsonl"));
  ASSERT_EQ(corpus.size(), expected.size());
  ASSERT_GT(corpus.size(), 20u);
  for (size_t i = 0; i < corpus.size(); ++i)
    EXPECT_EQ(tok.encode(corpus[i].get<std::string>()),
              expected[i]["ids"].get<std::vector<int32_t>>())
        << what << ", tiny corpus line " << i + 1 << ": " << corpus[i].dump();
}

TEST(TinyTokenizer, IdsMatchReference) {
  expect_reference_ids(tiny(), "merges as \"a b\"");
}

TEST(TinyTokenizer, MergesAsPairsAndWithoutCacheGiveTheSameIds) {
  json file = json::parse(test::read_text(kTinyPath));
  json pairs = json::array();
  for (const auto& m : file["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  file["model"]["merges"] = pairs;
  expect_reference_ids(Tokenizer::from_json(file.dump(), "pairs.json"), "merges as [a, b]");
  expect_reference_ids(Tokenizer::from_json(test::read_text(kTinyPath), "nocache.json", 0),
                       "without word cache");
}

TEST(TinyTokenizer, BpeAppliesLowestRankFirstAndLeftmostOnTies) {
  // Merges in rank order: "b c", "a b", "a a", "aa aa", ...
  EXPECT_EQ(tiny().encode("abc"), (std::vector<int32_t>{id_of("a"), id_of("bc")}));
  EXPECT_EQ(tiny().encode("abd"), (std::vector<int32_t>{id_of("ab"), id_of("d")}));
  EXPECT_EQ(tiny().encode("aaa"), (std::vector<int32_t>{id_of("aa"), id_of("a")}));
  EXPECT_EQ(tiny().encode("aaaaa"), (std::vector<int32_t>{id_of("aaaa"), id_of("a")}));
  EXPECT_EQ(tiny().encode(" abc"), (std::vector<int32_t>{id_of("Ġabc")}));
}

TEST(TinyTokenizer, AddedTokensLongestMatchAndFlags) {
  EXPECT_EQ(tiny().encode("<|a|>bc"), (std::vector<int32_t>{id_of("<|a|>b"), id_of("c")}));
  // lstrip swallows the spaces on the left, rstrip those on the right.
  EXPECT_EQ(tiny().decode(tiny().encode("a  [L]  b")), "a[L]  b");
  EXPECT_EQ(tiny().decode(tiny().encode("a  [R]  b")), "a  [R]b");
  // single_word: not inside a word.
  EXPECT_EQ(tiny().encode("[W]"), (std::vector<int32_t>{id_of("[W]")}));
  const auto inside = tiny().encode("x[W]y");
  EXPECT_EQ(std::count(inside.begin(), inside.end(), id_of("[W]")), 0);
  // A normalized added token matches the NFC text: "e" + combining acute is "é".
  const auto nfd = tiny().encode("cafe\u0301!");
  EXPECT_EQ(nfd.back(), id_of("é!"));
}

TEST(TinyTokenizer, DecodeMatchesReference) {
  const auto lines =
      test::read_jsonl(test::source_path("tests/data/tokenizer_tiny_decode_expected.jsonl"));
  ASSERT_GT(lines.size(), 5u);
  for (const auto& l : lines) {
    const auto ids = l["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tiny().decode(ids), l["decoded"].get<std::string>()) << l.dump();
    EXPECT_EQ(tiny().decode(ids, /*skip_special=*/true), l["decoded_skip"].get<std::string>())
        << l.dump();
  }
  // decode_bytes keeps a character cut between ids as raw bytes.
  EXPECT_EQ(tiny().decode_bytes(std::vector<int32_t>{id_of("Ã")}), "\xC3");
}

TEST(TinyTokenizer, NonAsciiAddedTokenDecodesToItsContent) {
  // Deliberate difference from Hugging Face `tokenizers`, whose ByteLevel decoder reads added
  // tokens' text as byte-level characters (so "é!" would come back as "\xE9!" -> "\uFFFD!");
  // we return the content, as transformers' Python tokenizers and transformers.js do. Qwen's
  // added tokens are all ASCII, where both agree.
  EXPECT_EQ(tiny().decode(std::vector<int32_t>{id_of("é!")}), "é!");
}

// Writes `text` to a temporary tokenizer file and returns the error message of loading it.
std::string load_error(const std::string& text) {
  // Unique per process: ctest runs tests in parallel processes.
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("qwen3vl_bad_tokenizer_" + std::to_string(getpid()) + ".json"))
                               .string();
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }
  std::string message;
  try {
    Tokenizer::load(path);
  } catch (const Error& e) {
    message = e.what();
  }
  std::filesystem::remove(path);
  EXPECT_NE(message.find(path), std::string::npos) << "error does not name the file: " << message;
  return message;
}

TEST(TinyTokenizer, BrokenFilesGiveClearErrors) {
  const json good = json::parse(test::read_text(kTinyPath));
  auto with = [&](auto&& edit) {
    json j = good;
    edit(j);
    return j.dump();
  };
  auto contains = [](const std::string& message, const std::string& part) {
    EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
  };
  contains(load_error("{\"model\": "), "invalid JSON");
  contains(load_error("[1, 2]"), "top level must be a JSON object");
  contains(load_error(with([](json& j) { j.erase("model"); })), "missing field tokenizer.model");
  contains(load_error(with([](json& j) { j["model"].erase("vocab"); })), "model.vocab");
  contains(load_error(with([](json& j) { j["model"].erase("merges"); })), "model.merges");
  contains(load_error(with([](json& j) { j["model"]["vocab"]["a"] = "x"; })),
           "model.vocab[\"a\"] must be a non-negative integer id");
  contains(load_error(with([](json& j) { j["model"]["merges"][0] = "abc"; })),
           "model.merges[0] = \"abc\" is not two tokens");
  contains(load_error(with([](json& j) { j["model"]["merges"].push_back("q zz"); })),
           "uses a token missing from model.vocab");
  contains(load_error(with([](json& j) { j["model"]["vocab"].erase("Ġ"); })),
           "lacks the token for byte 0x20");
  contains(load_error(with([](json& j) { j["model"]["type"] = "Unigram"; })),
           "unsupported model.type 'Unigram'");
  contains(load_error(with([](json& j) {
             j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+";
           })),
           "unsupported Split pattern");
  contains(load_error(with([](json& j) {
             j["normalizer"] = {{"type", "NFKC"}};
           })),
           "unsupported normalizer");
  contains(load_error(with([](json& j) {
             j["post_processor"] = {{"type", "TemplateProcessing"}};
           })),
           "unsupported post_processor");
  contains(load_error(with([](json& j) { j["added_tokens"][0].erase("content"); })),
           "missing field added_tokens[0].content");

  try {
    Tokenizer::load("/nonexistent/tokenizer.json");
    ADD_FAILURE() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/tokenizer.json"), std::string::npos);
  }
}

TEST(TinyTokenizer, MissingSpecialTokenIsNamed) {
  try {
    SpecialTokens::lookup(tiny());
    ADD_FAILURE() << "tiny tokenizer has no <|video_pad|>, lookup should fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("<|video_pad|>"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qv::data
