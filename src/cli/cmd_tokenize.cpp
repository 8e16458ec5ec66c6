// `qwen3vl tokenize`: encode text to token ids or decode ids to text with a tokenizer.json.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/error.h"
#include "data/tokenizer/tokenizer.h"

namespace qv::cli {
namespace {

constexpr const char* kUsage =
    "usage: qwen3vl tokenize --tokenizer PATH [--jsonl | --decode] [--no-special] "
    "[--skip-special]\n"
    "  (default)       encode all of stdin as one text; print one JSON array of ids\n"
    "  --jsonl         each stdin line is a JSON string; print one JSON array of ids per line\n"
    "  --decode        each stdin line is a JSON array of ids; print one JSON string per line\n"
    "  --no-special    encode special-token text such as <|im_start|> as plain text\n"
    "  --skip-special  leave special tokens out when decoding\n";

void print_ids(const std::vector<int32_t>& ids, std::string& buf) {
  buf.clear();
  buf.push_back('[');
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) buf.push_back(',');
    buf += std::to_string(ids[i]);
  }
  buf += "]\n";
  std::fwrite(buf.data(), 1, buf.size(), stdout);
}

std::vector<int32_t> parse_ids(const nlohmann::json& j) {
  QV_CHECK(j.is_array(), "expected a JSON array of token ids, got ", j.dump());
  std::vector<int32_t> ids;
  ids.reserve(j.size());
  for (const auto& v : j) {
    QV_CHECK(
        v.is_number_integer() && v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= INT32_MAX,
        v.dump(), " is not an integer token id");
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return ids;
}

int run(const Args& args) {
  const Flags flags(args, {"jsonl", "decode", "no-special", "skip-special", "help"});
  if (flags.has("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  flags.allow_only({"tokenizer", "jsonl", "decode", "no-special", "skip-special", "help"});
  QV_CHECK(!(flags.has("jsonl") && flags.has("decode")), "--jsonl and --decode exclude each other");
  const auto tokenizer = data::Tokenizer::load(flags.require("tokenizer"));
  const bool allow_special = !flags.has("no-special");
  const bool skip_special = flags.has("skip-special");
  std::ios::sync_with_stdio(false);
  std::string out;

  if (!flags.has("jsonl") && !flags.has("decode")) {
    const std::string text((std::istreambuf_iterator<char>(std::cin)),
                           std::istreambuf_iterator<char>());
    print_ids(tokenizer.encode(text, allow_special), out);
    return 0;
  }
  std::string line;
  for (size_t line_no = 1; std::getline(std::cin, line); ++line_no) {
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      if (flags.has("decode")) {
        out = nlohmann::json(tokenizer.decode(parse_ids(j), skip_special)).dump();
        out.push_back('\n');
        std::fwrite(out.data(), 1, out.size(), stdout);
      } else {
        QV_CHECK(j.is_string(), "expected a JSON string, got ", j.dump());
        print_ids(tokenizer.encode(j.get_ref<const std::string&>(), allow_special), out);
      }
    } catch (const nlohmann::json::exception& e) {
      fail("stdin line ", line_no, ": invalid JSON: ", e.what());
    } catch (const Error& e) {
      fail("stdin line ", line_no, ": ", e.what());
    }
  }
  return 0;
}

const Registration kRegistration({"tokenize", "encode text to token ids or decode ids (JSON lines)",
                                  run});

}  // namespace
}  // namespace qv::cli
