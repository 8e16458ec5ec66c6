// `qwen3vl tokenize`: encode text to token ids or decode ids to text with a tokenizer.json.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "data/pipeline/chat_sample.h"
#include "data/tokenizer/tokenizer.h"

namespace qv::cli {
namespace {

constexpr const char* kUsage =
    "usage: qwen3vl tokenize --tokenizer PATH [--jsonl | --decode | --chat --jsonl] [--no-special] "
    "[--skip-special]\n"
    "  (default)       encode all of stdin as one text; print one JSON array of ids\n"
    "  --jsonl         each stdin line is a JSON string; print one JSON array of ids per line\n"
    "  --decode        each stdin line is a JSON array of ids; print one JSON string per line\n"
    "  --no-special    encode special-token text such as <|im_start|> as plain text\n"
    "  --skip-special  leave special tokens out when decoding\n"
    "  --chat --jsonl  each stdin line is a conversation {\"messages\": [...], \"tools\": [...]};\n"
    "                  print {\"input_ids\": [...], \"labels\": [...]} per line: the Qwen3-VL\n"
    "                  Instruct chat template, no generation prompt, one pad per image or video,\n"
    "                  labels -100 outside assistant turns\n";

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

void append_list(const std::vector<int32_t>& v, std::string& buf) {
  buf.push_back('[');
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) buf.push_back(',');
    buf += std::to_string(v[i]);
  }
  buf.push_back(']');
}

void print_chat(const data::ChatTokens& t, std::string& buf) {
  buf = "{\"input_ids\": ";
  append_list(t.ids, buf);
  buf += ", \"labels\": ";
  append_list(t.labels, buf);
  buf += "}\n";
  std::fwrite(buf.data(), 1, buf.size(), stdout);
}

// --chat --jsonl: one conversation per line; a malformed one is an error naming the line.
int run_chat(const data::Tokenizer& tokenizer, const std::string& tokenizer_path) {
  const std::string mismatch =
      data::chat_template_mismatch(std::filesystem::path(tokenizer_path).parent_path().string());
  if (!mismatch.empty()) log::warn(mismatch);
  std::string line, out;
  for (int64_t line_no = 1; std::getline(std::cin, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const data::ChatRow row = data::parse_chat_row(line, "stdin", line_no);
    QV_CHECK(row.skip_reason.empty(), "stdin line ", line_no, ": ", row.skip_reason, ": ",
             row.detail);
    print_chat(data::tokenize_chat(row.conv, tokenizer), out);
  }
  return 0;
}

int run(const Args& args) {
  const Flags flags(args, {"jsonl", "decode", "chat", "no-special", "skip-special", "help"});
  if (flags.has("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  flags.allow_only({"tokenizer", "jsonl", "decode", "chat", "no-special", "skip-special", "help"});
  QV_CHECK(!(flags.has("jsonl") && flags.has("decode")), "--jsonl and --decode exclude each other");
  QV_CHECK(!flags.has("chat") || (flags.has("jsonl") && !flags.has("no-special")),
           "--chat needs --jsonl (one conversation per line) and takes no --no-special");
  const auto tokenizer = data::Tokenizer::load(flags.require("tokenizer"));
  std::ios::sync_with_stdio(false);
  if (flags.has("chat")) return run_chat(tokenizer, flags.require("tokenizer"));
  const bool allow_special = !flags.has("no-special");
  const bool skip_special = flags.has("skip-special");
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

const Registration kRegistration({"tokenize",
                                  "encode text or chat conversations to token ids, or decode ids",
                                  run});

}  // namespace
}  // namespace qv::cli
