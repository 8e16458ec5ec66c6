#include "data/tokenizer/tokenizer_json.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/tokenizer/pretokenize.h"
#include "io/json_depth.h"

namespace qv::data {
namespace {

using nlohmann::json;

struct Reader {
  const std::string& origin;

  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) const {
    qv::fail(origin, ": ", args...);
  }

  const json& field(const json& obj, const char* key, const std::string& where) const {
    auto it = obj.find(key);
    if (it == obj.end()) fail("missing field ", where, ".", key);
    return *it;
  }
  bool is_null_or_missing(const json& obj, const char* key) const {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null();
  }
  bool boolean(const json& obj, const char* key, const std::string& where, bool fallback) const {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) fail(where, ".", key, " must be true or false");
    return it->get<bool>();
  }
  std::string string(const json& obj, const char* key, const std::string& where) const {
    const json& v = field(obj, key, where);
    if (!v.is_string()) fail(where, ".", key, " must be a string");
    return v.get<std::string>();
  }
  std::string type_of(const json& obj, const std::string& where) const {
    if (!obj.is_object()) fail(where, " must be an object");
    return string(obj, "type", where);
  }
  int32_t id(const json& v, const std::string& where) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      fail(where, " must be a non-negative integer id");
    return static_cast<int32_t>(v.get<int64_t>());
  }
};

// model.vocab and model.merges hold ~150k entries each in Qwen's file. Building a DOM for them
// (a std::map of 150k keys, 150k small arrays) dominated loading, so the parser hands them to
// this callback, which copies them into the spec and leaves empty containers in the DOM.
class VocabAndMergesStreamer {
 public:
  VocabAndMergesStreamer(const Reader& r, TokenizerSpec& spec) : r_(r), spec_(spec) {}

  bool operator()(int depth, json::parse_event_t event, json& parsed) {
    using E = json::parse_event_t;
    if (event == E::key) {
      if (keys_.size() <= static_cast<size_t>(depth)) keys_.resize(depth + 1);
      keys_[depth] = parsed.get<std::string>();
      if (in_vocab_ && depth == 3) return false;  // keeps the key out of the DOM; value comes next
    }
    if (depth < 2) return true;
    const bool at_model = keys_.size() > 2 && keys_[1] == "model";
    if (depth == 2) {
      if (event == json::parse_event_t::object_start)
        in_vocab_ = at_model && keys_[2] == "vocab";
      else if (event == json::parse_event_t::array_start)
        in_merges_ = at_model && keys_[2] == "merges";
      else
        in_vocab_ = in_merges_ = false;
      return true;
    }
    if (in_vocab_) return vocab_event(depth, event, parsed);
    if (in_merges_) return merges_event(depth, event, parsed);
    return true;
  }

 private:
  bool vocab_event(int depth, json::parse_event_t event, json& parsed) {
    if (depth == 3 && event == json::parse_event_t::value) {
      spec_.vocab.emplace_back(keys_[3], r_.id(parsed, "model.vocab[\"" + keys_[3] + "\"]"));
      return false;
    }
    if (depth == 3 && event != json::parse_event_t::key)  // a nested object or array
      r_.fail("model.vocab[\"", keys_[3], "\"] must be a non-negative integer id");
    return true;
  }

  bool merges_event(int depth, json::parse_event_t event, json& parsed) {
    using E = json::parse_event_t;
    const size_t i = spec_.merges.size();
    auto bad = [&] { r_.fail("model.merges[", i, "] must be \"a b\" or [\"a\", \"b\"]"); };
    if (depth == 3 && event == E::value) {
      if (!parsed.is_string()) bad();
      const std::string& m = parsed.get_ref<const std::string&>();
      const size_t space = m.find(' ');
      if (space == std::string::npos || m.find(' ', space + 1) != std::string::npos)
        r_.fail("model.merges[", i, "] = \"", m, "\" is not two tokens separated by one space");
      spec_.merges.emplace_back(m.substr(0, space), m.substr(space + 1));
      return false;
    }
    if (depth == 3 && event == E::array_start) {
      pair_.clear();
      return true;
    }
    if (depth == 4 && event == E::value) {
      if (!parsed.is_string() || pair_.size() == 2) bad();
      pair_.push_back(parsed.get<std::string>());
      return false;
    }
    if (depth == 3 && event == E::array_end) {
      if (pair_.size() != 2) bad();
      spec_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      return false;
    }
    bad();
    return false;
  }

  const Reader& r_;
  TokenizerSpec& spec_;
  std::vector<std::string> keys_;
  bool in_vocab_ = false, in_merges_ = false;
  std::vector<std::string> pair_;
};

void read_model(const Reader& r, const json& model, TokenizerSpec& spec) {
  if (!model.is_object()) r.fail("model must be an object");
  if (!r.is_null_or_missing(model, "type") && r.string(model, "type", "model") != "BPE")
    r.fail("unsupported model.type '", r.string(model, "type", "model"), "' (only BPE)");
  if (!r.is_null_or_missing(model, "dropout") && model["dropout"] != 0)
    r.fail("unsupported model.dropout (BPE dropout is not implemented)");
  if (r.boolean(model, "byte_fallback", "model", false))
    r.fail("unsupported model.byte_fallback = true");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (!r.is_null_or_missing(model, key) && r.string(model, key, "model") != "")
      r.fail("unsupported model.", key, " (must be empty)");
  spec.ignore_merges = r.boolean(model, "ignore_merges", "model", false);

  // The entries themselves were taken by VocabAndMergesStreamer while parsing.
  if (!r.field(model, "vocab", "model").is_object())
    r.fail("model.vocab must be an object of token -> id");
  if (!r.field(model, "merges", "model").is_array()) r.fail("model.merges must be an array");
}

void read_normalizer(const Reader& r, const json& root, TokenizerSpec& spec) {
  if (r.is_null_or_missing(root, "normalizer")) return;
  const json& n = root["normalizer"];
  const std::string type = r.type_of(n, "normalizer");
  if (type == "NFC") {
    spec.nfc = true;
    return;
  }
  if (type == "Sequence") {
    const json& list = r.field(n, "normalizers", "normalizer");
    if (list.is_array() && list.empty()) return;
    if (list.is_array() && list.size() == 1 && r.type_of(list[0], "normalizer[0]") == "NFC") {
      spec.nfc = true;
      return;
    }
  }
  r.fail("unsupported normalizer ", n.dump(), " (only NFC or none)");
}

void read_pre_tokenizer(const Reader& r, const json& root) {
  const json& p = r.field(root, "pre_tokenizer", "tokenizer");
  const std::string supported =
      " (supported: Sequence of Split with the Qwen regex, behavior Isolated, then ByteLevel "
      "without prefix space or regex)";
  if (p.is_null() || r.type_of(p, "pre_tokenizer") != "Sequence")
    r.fail("unsupported pre_tokenizer", supported);
  const json& list = r.field(p, "pretokenizers", "pre_tokenizer");
  if (!list.is_array() || list.size() != 2) r.fail("unsupported pre_tokenizer", supported);

  const json& split = list[0];
  if (r.type_of(split, "pre_tokenizer[0]") != "Split")
    r.fail("unsupported pre_tokenizer", supported);
  const json& pattern = r.field(split, "pattern", "pre_tokenizer[0]");
  if (!pattern.is_object() || !pattern.contains("Regex") || !pattern["Regex"].is_string() ||
      pattern["Regex"].get<std::string>() != kQwenSplitPattern)
    r.fail("unsupported Split pattern ", pattern.dump(), " (only the Qwen regex ",
           kQwenSplitPattern, ")");
  if (r.string(split, "behavior", "pre_tokenizer[0]") != "Isolated" ||
      r.boolean(split, "invert", "pre_tokenizer[0]", false))
    r.fail("unsupported Split behavior (only Isolated, not inverted)");

  const json& bl = list[1];
  if (r.type_of(bl, "pre_tokenizer[1]") != "ByteLevel" ||
      r.boolean(bl, "add_prefix_space", "pre_tokenizer[1]", true) ||
      r.boolean(bl, "use_regex", "pre_tokenizer[1]", true))
    r.fail("unsupported pre_tokenizer", supported);
}

void read_decoder_and_post_processor(const Reader& r, const json& root) {
  if (!r.is_null_or_missing(root, "decoder") &&
      r.type_of(root["decoder"], "decoder") != "ByteLevel")
    r.fail("unsupported decoder ", root["decoder"].dump(), " (only ByteLevel)");
  // A ByteLevel post-processor only adjusts offsets; anything else (e.g. TemplateProcessing
  // adding BOS/EOS) would change the ids, so refuse it rather than ignore it.
  if (!r.is_null_or_missing(root, "post_processor") &&
      r.type_of(root["post_processor"], "post_processor") != "ByteLevel")
    r.fail("unsupported post_processor ", root["post_processor"].dump(), " (only ByteLevel)");
}

void read_added_tokens(const Reader& r, const json& root, TokenizerSpec& spec) {
  if (r.is_null_or_missing(root, "added_tokens")) return;
  const json& list = root["added_tokens"];
  if (!list.is_array()) r.fail("added_tokens must be an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = cat("added_tokens[", i, "]");
    const json& t = list[i];
    if (!t.is_object()) r.fail(where, " must be an object");
    AddedToken tok;
    tok.id = r.id(r.field(t, "id", where), where + ".id");
    tok.content = r.string(t, "content", where);
    if (tok.content.empty()) r.fail(where, ".content is empty");
    tok.special = r.boolean(t, "special", where, false);
    tok.lstrip = r.boolean(t, "lstrip", where, false);
    tok.rstrip = r.boolean(t, "rstrip", where, false);
    tok.single_word = r.boolean(t, "single_word", where, false);
    tok.normalized = r.boolean(t, "normalized", where, !tok.special);
    spec.added_tokens.push_back(std::move(tok));
  }
}

}  // namespace

TokenizerSpec parse_tokenizer_json(std::string_view json_text, const std::string& origin) {
  const Reader r{origin};
  TokenizerSpec spec;
  io::check_json_depth(json_text, origin);
  json root;
  try {
    root = json::parse(json_text, VocabAndMergesStreamer(r, spec));
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    r.fail("invalid JSON: ", e.what());
  }
  if (!root.is_object()) r.fail("top level must be a JSON object");
  read_model(r, r.field(root, "model", "tokenizer"), spec);
  read_normalizer(r, root, spec);
  read_pre_tokenizer(r, root);
  read_decoder_and_post_processor(r, root);
  read_added_tokens(r, root, spec);
  return spec;
}

}  // namespace qv::data
