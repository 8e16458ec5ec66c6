// Differential tests of the Qwen tokenizer against Hugging Face `tokenizers`: the expected ids,
// decoded text and pre-tokenizer pieces in tests/data were produced by the reference
// (tests/tools/regenerate_tokenizer_data.sh). Needs the real tokenizer.json from
// scripts/fetch_tokenizer.sh; without it these tests fail (they never skip).
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <random>
#include <thread>

#include "core/error.h"
#include "data/tokenizer/byte_level.h"
#include "data/tokenizer/pretokenize.h"
#include "data/tokenizer/tokenizer.h"
#include "data/tokenizer/unicode.h"
#include "data/utf8.h"
#include "tokenizer_test_data.h"

namespace qv::data {
namespace {

using nlohmann::json;

class QwenTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = test::qwen_tokenizer_path();
    if (!std::filesystem::exists(path)) return;  // each test reports the missing file
    tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::load(path));
    corpus_ = test::read_jsonl(test::source_path("tests/data/tokenizer_corpus.jsonl"));
    expected_ = test::read_jsonl(test::source_path("tests/data/tokenizer_expected.jsonl"));
  }
  static void TearDownTestSuite() { tokenizer_.reset(); }

  void SetUp() override {
    ASSERT_TRUE(tokenizer_) << "the Qwen tokenizer is missing at " << test::qwen_tokenizer_path()
                            << ": run scripts/fetch_tokenizer.sh";
    ASSERT_EQ(corpus_.size(), expected_.size()) << "corpus and expected ids are out of step";
    ASSERT_GT(corpus_.size(), 90u);
  }

  static std::string text(size_t i) { return corpus_[i].get<std::string>(); }

  static std::unique_ptr<Tokenizer> tokenizer_;
  static std::vector<json> corpus_, expected_;
};

std::unique_ptr<Tokenizer> QwenTokenizer::tokenizer_;
std::vector<json> QwenTokenizer::corpus_, QwenTokenizer::expected_;

TEST_F(QwenTokenizer, IdsMatchReferenceOnEveryCorpusLine) {
  for (size_t i = 0; i < corpus_.size(); ++i) {
    const auto ids = tokenizer_->encode(text(i));
    const auto want = expected_[i]["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(ids, want) << "corpus line " << i + 1 << ": " << corpus_[i].dump();
  }
}

TEST_F(QwenTokenizer, PreTokenizerPiecesMatchReference) {
  for (size_t i = 0; i < corpus_.size(); ++i) {
    const std::string t = text(i);
    std::vector<ByteSpan> spans;
    split_pretokens(t, spans);
    std::vector<std::string> pieces;
    for (const ByteSpan& s : spans)
      pieces.push_back(
          byte_level::from_bytes(std::string_view(t).substr(s.begin, s.end - s.begin)));
    EXPECT_EQ(pieces, expected_[i]["pieces"].get<std::vector<std::string>>())
        << "corpus line " << i + 1 << ": " << corpus_[i].dump();
  }
}

TEST_F(QwenTokenizer, DecodeMatchesReferenceAndInvertsEncodeUpToNfc) {
  for (size_t i = 0; i < corpus_.size(); ++i) {
    const auto ids = expected_[i]["ids"].get<std::vector<int32_t>>();
    const std::string decoded = tokenizer_->decode(ids);
    EXPECT_EQ(decoded, expected_[i]["decoded"].get<std::string>()) << "corpus line " << i + 1;
    std::string nfc = text(i);
    unicode::nfc(text(i), nfc);
    EXPECT_EQ(tokenizer_->decode(tokenizer_->encode(text(i))), nfc) << "corpus line " << i + 1;
  }
}

TEST_F(QwenTokenizer, SpecialTokensAreLookedUpByContent) {
  // Ids as the tokenizer.json file itself lists them.
  const json file = json::parse(test::read_text(test::qwen_tokenizer_path()));
  auto listed = [&](const std::string& content) {
    for (const auto& t : file["added_tokens"])
      if (t["content"] == content) return t["id"].get<int32_t>();
    ADD_FAILURE() << content << " not in tokenizer.json";
    return -1;
  };
  const SpecialTokens s = SpecialTokens::lookup(*tokenizer_);
  EXPECT_EQ(s.image_pad, listed("<|image_pad|>"));
  EXPECT_EQ(s.video_pad, listed("<|video_pad|>"));
  EXPECT_EQ(s.vision_start, listed("<|vision_start|>"));
  EXPECT_EQ(s.vision_end, listed("<|vision_end|>"));
  EXPECT_EQ(s.endoftext, listed("<|endoftext|>"));
  EXPECT_EQ(s.im_start, listed("<|im_start|>"));
  EXPECT_EQ(s.im_end, listed("<|im_end|>"));
  EXPECT_TRUE(tokenizer_->is_special(s.image_pad));
  EXPECT_FALSE(tokenizer_->is_special(*tokenizer_->token_id("<think>")));
  EXPECT_EQ(tokenizer_->token_id("Ġworld"), file["model"]["vocab"]["Ġworld"].get<int32_t>());
  EXPECT_EQ(tokenizer_->token_id("<|no_such_token|>"), std::nullopt);

  int32_t max_id = -1;
  for (const auto& [_, id] : file["model"]["vocab"].items())
    max_id = std::max(max_id, id.get<int32_t>());
  for (const auto& t : file["added_tokens"]) max_id = std::max(max_id, t["id"].get<int32_t>());
  EXPECT_EQ(tokenizer_->vocab_size(), max_id + 1);
}

TEST_F(QwenTokenizer, SpecialTokenTextCanBeEncodedAsPlainText) {
  const SpecialTokens s = SpecialTokens::lookup(*tokenizer_);
  const std::string t = "a caption that quotes <|im_start|> and <|image_pad|> <think>";
  const auto with = tokenizer_->encode(t, /*allow_special=*/true);
  const auto without = tokenizer_->encode(t, /*allow_special=*/false);
  EXPECT_NE(std::find(with.begin(), with.end(), s.im_start), with.end());
  for (int32_t id : without) EXPECT_FALSE(tokenizer_->is_special(id)) << id;
  // Non-special added tokens are still matched.
  EXPECT_NE(std::find(without.begin(), without.end(), *tokenizer_->token_id("<think>")),
            without.end());
  EXPECT_EQ(tokenizer_->decode(without), t);
  EXPECT_EQ(tokenizer_->decode(with, /*skip_special=*/true), "a caption that quotes  and  <think>");
}

TEST_F(QwenTokenizer, InvalidUtf8IsAnErrorNamingTheByteOffset) {
  const std::vector<std::pair<std::string, size_t>> cases = {
      {"ab\xC3(", 2},              // lead byte without continuation
      {"abc\xE2\x82", 3},          // truncated at the end
      {"x\xED\xA0\x80y", 1},       // UTF-16 surrogate
      {"\xC0\xAF", 0},             // overlong '/'
      {"ok \xF4\x90\x80\x80", 3},  // above U+10FFFF
      {"caf\xC3\xA9 \x80", 6},     // stray continuation byte after valid text
  };
  for (const auto& [bad, offset] : cases) {
    try {
      tokenizer_->encode(bad);
      ADD_FAILURE() << "no error for the case with offset " << offset;
    } catch (const Error& e) {
      EXPECT_NE(
          std::string(e.what()).find("invalid UTF-8 at byte offset " + std::to_string(offset)),
          std::string::npos)
          << e.what();
    }
  }
}

TEST_F(QwenTokenizer, RandomInputNeverCrashesAndRoundTrips) {
  // Random code points from all planes (no surrogates) must round-trip up to NFC; random bytes
  // must either do the same or be refused as invalid UTF-8.
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> len(0, 40), plane(0, 9), byte(0, 255);
  for (int n = 0; n < 300; ++n) {
    std::string text;
    for (int k = len(rng); k > 0; --k) {
      const uint32_t limit = plane(rng) < 5 ? 0x80 : plane(rng) < 8 ? 0x10000 : 0x110000;
      uint32_t cp = std::uniform_int_distribution<uint32_t>(0, limit - 1)(rng);
      if (cp >= 0xD800 && cp < 0xE000) cp = 'x';
      utf8::append(text, cp);
    }
    std::string nfc = text;
    unicode::nfc(text, nfc);
    EXPECT_EQ(tokenizer_->decode(tokenizer_->encode(text)), nfc) << "random text " << n;

    std::string bytes;
    for (int k = len(rng); k > 0; --k) bytes.push_back(static_cast<char>(byte(rng)));
    try {
      const auto ids = tokenizer_->encode(bytes);
      std::string want = bytes;
      unicode::nfc(bytes, want);
      EXPECT_EQ(tokenizer_->decode(ids), want) << "random bytes " << n;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("invalid UTF-8"), std::string::npos) << e.what();
    }
  }
}

TEST_F(QwenTokenizer, DecodeRejectsIdsOutsideTheVocabulary) {
  EXPECT_THROW(tokenizer_->decode(std::vector<int32_t>{tokenizer_->vocab_size()}), Error);
  EXPECT_THROW(tokenizer_->decode(std::vector<int32_t>{-1}), Error);
}

TEST_F(QwenTokenizer, ConcurrentEncodingGivesTheSameIds) {
  std::vector<std::vector<int32_t>> serial(corpus_.size());
  for (size_t i = 0; i < corpus_.size(); ++i) serial[i] = tokenizer_->encode(text(i));
  // A fresh tokenizer (cold word cache) shared by two threads.
  const Tokenizer shared = Tokenizer::load(test::qwen_tokenizer_path());
  std::vector<std::vector<int32_t>> a(corpus_.size()), b(corpus_.size());
  std::thread t1([&] {
    for (size_t i = 0; i < corpus_.size(); ++i) a[i] = shared.encode(text(i));
  });
  std::thread t2([&] {
    for (size_t i = corpus_.size(); i-- > 0;) b[i] = shared.encode(text(i));
  });
  t1.join();
  t2.join();
  EXPECT_EQ(a, serial);
  EXPECT_EQ(b, serial);
}

}  // namespace
}  // namespace qv::data
