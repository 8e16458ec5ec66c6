// End-to-end tests of `qwen3vl tokenize` on the tiny tokenizer: JSON lines in, JSON lines out,
// results equal to the reference's, and bad input lines reported by number.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tokenizer_test_data.h"

namespace qv {
namespace {

struct RunResult {
  int exit_code;
  std::string out, err;
};

// Runs `qwen3vl tokenize <flags>` with `input` on stdin.
RunResult run_tokenize(const std::string& flags, const std::string& input) {
  // A fresh folder per run: ctest runs tests in parallel processes.
  std::string templ = (std::filesystem::temp_directory_path() / "qwen3vl_tokenize_XXXXXX").string();
  const std::filesystem::path dir = mkdtemp(templ.data());
  const auto in = dir / "in", out = dir / "out", err = dir / "err";
  std::ofstream(in, std::ios::binary) << input;
  const std::string cmd = std::string("'") + QWEN3VL_BINARY + "' tokenize --tokenizer '" +
                          test::source_path("tests/data/tokenizer_tiny.json") + "' " + flags +
                          " < '" + in.string() + "' > '" + out.string() + "' 2> '" + err.string() +
                          "'";
  const int status = std::system(cmd.c_str());
  RunResult r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, test::read_text(out.string()),
              test::read_text(err.string())};
  std::filesystem::remove_all(dir);
  return r;
}

std::string jsonl(const std::vector<nlohmann::json>& lines) {
  std::string s;
  for (const auto& l : lines) s += l.dump() + "\n";
  return s;
}

TEST(CmdTokenize, EncodesJsonLinesLikeTheReference) {
  const auto corpus = test::read_jsonl(test::source_path("tests/data/tokenizer_tiny_corpus.jsonl"));
  const auto expected =
      test::read_jsonl(test::source_path("tests/data/tokenizer_tiny_expected.jsonl"));
  std::vector<nlohmann::json> want;
  for (const auto& e : expected) want.push_back(e["ids"]);
  const RunResult r = run_tokenize("--jsonl", jsonl(corpus));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, jsonl(want));
}

TEST(CmdTokenize, DecodesJsonLinesLikeTheReference) {
  const auto lines =
      test::read_jsonl(test::source_path("tests/data/tokenizer_tiny_decode_expected.jsonl"));
  std::vector<nlohmann::json> ids, want, want_skip;
  for (const auto& l : lines) {
    ids.push_back(l["ids"]);
    want.push_back(l["decoded"]);
    want_skip.push_back(l["decoded_skip"]);
  }
  RunResult r = run_tokenize("--decode", jsonl(ids));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, jsonl(want));
  r = run_tokenize("--decode --skip-special", jsonl(ids));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, jsonl(want_skip));
}

TEST(CmdTokenize, WholeInputModeAndNoSpecial) {
  const auto corpus = test::read_jsonl(test::source_path("tests/data/tokenizer_tiny_corpus.jsonl"));
  const auto expected =
      test::read_jsonl(test::source_path("tests/data/tokenizer_tiny_expected.jsonl"));
  for (size_t i = 0; i < corpus.size(); ++i) {
    if (corpus[i] != "x<|im_start|>y<|im_end|>") continue;
    RunResult r = run_tokenize("", corpus[i].get<std::string>());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, expected[i]["ids"].dump() + "\n");
    r = run_tokenize("--no-special", corpus[i].get<std::string>());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.find(expected[i]["ids"][1].dump()), std::string::npos)
        << "the <|im_start|> id should not appear: " << r.out;
  }
}

TEST(CmdTokenize, BadLinesAreReportedByNumber) {
  RunResult r = run_tokenize("--jsonl", "\"ok\"\n{not json\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("stdin line 2: invalid JSON"), std::string::npos) << r.err;

  r = run_tokenize("--jsonl", "\"ok\"\n\"fine\"\n[1, 2]\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("stdin line 3: expected a JSON string"), std::string::npos) << r.err;

  r = run_tokenize("--jsonl", "\"bad \xC3\x28 utf8\"\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("stdin line 1"), std::string::npos) << r.err;

  r = run_tokenize("--decode", "[1, 2]\n[1, \"x\"]\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("stdin line 2"), std::string::npos) << r.err;

  r = run_tokenize("--decode", "[999999]\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("stdin line 1: cannot decode: id 999999"), std::string::npos) << r.err;

  r = run_tokenize("--jsonl --bogus=1", "");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("unknown flag --bogus"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace qv
