#include "data/tokenizer/tokenizer.h"

#include <unordered_map>

#include "core/error.h"
#include "data/tokenizer/added_tokens.h"
#include "data/tokenizer/bpe.h"
#include "data/tokenizer/byte_level.h"
#include "data/tokenizer/pretokenize.h"
#include "data/tokenizer/string_hash.h"
#include "data/tokenizer/tokenizer_json.h"
#include "data/tokenizer/unicode.h"
#include "data/utf8.h"
#include "io/atomic_file.h"

namespace qv::data {

struct Tokenizer::Impl {
  std::string origin;
  std::unique_ptr<BpeModel> bpe;
  bool nfc = false;
  std::vector<AddedToken> added;
  AddedTokenMatcher raw_matcher;         // added tokens with normalized = false
  AddedTokenMatcher normalized_matcher;  // added tokens with normalized = true (NFC patterns)
  StringMap<int32_t> added_ids;          // content -> id
  std::vector<std::string> bytes_of;     // id -> raw bytes (decode)
  std::vector<uint8_t> kind_of;          // id -> Kind
  enum Kind : uint8_t { kNone, kVocab, kAdded, kSpecial };

  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  void encode_section(std::string_view text, bool allow_special, std::vector<int32_t>& out) const;
};

// BPE over each piece of the pre-tokenizer's split of (already normalized) text.
void Tokenizer::Impl::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = pretoken_end(text, begin);
    bpe->encode_word(text.substr(begin, end - begin), out);
    begin = end;
  }
}

// Text between raw-matched added tokens: normalize, find normalized added tokens, BPE the rest.
void Tokenizer::Impl::encode_section(std::string_view text, bool allow_special,
                                     std::vector<int32_t>& out) const {
  std::string normalized;
  if (nfc && unicode::nfc(text, normalized)) text = normalized;
  if (normalized_matcher.empty()) {
    encode_text(text, out);
    return;
  }
  std::vector<TextSegment> segments;
  normalized_matcher.split(text, allow_special, segments);
  for (const TextSegment& s : segments) {
    if (s.token >= 0)
      out.push_back(normalized_matcher.token(s.token).id);
    else
      encode_text(text.substr(s.begin, s.end - s.begin), out);
  }
}

Tokenizer Tokenizer::load(const std::string& path, size_t word_cache_capacity) {
  std::string text;
  try {
    text = io::read_file(path);
  } catch (const std::exception& e) {
    fail("cannot read tokenizer file '", path, "': ", e.what());
  }
  return from_json(text, path, word_cache_capacity);
}

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& origin,
                               size_t word_cache_capacity) {
  return Tokenizer(build(parse_tokenizer_json(json_text, origin), origin, word_cache_capacity));
}

void Tokenizer::encode_into(std::string_view text, std::vector<int32_t>& out,
                            bool allow_special) const {
  const size_t bad = utf8::find_invalid(text);
  QV_CHECK(bad == std::string_view::npos, "cannot tokenize: invalid UTF-8 at byte offset ", bad,
           " of the text (byte 0x", std::hex,
           static_cast<int>(static_cast<unsigned char>(text[bad])), ")");
  const Impl& im = *impl_;
  if (im.raw_matcher.empty()) {
    im.encode_section(text, allow_special, out);
    return;
  }
  thread_local std::vector<TextSegment> segments;
  segments.clear();
  im.raw_matcher.split(text, allow_special, segments);
  for (const TextSegment& s : segments) {
    if (s.token >= 0)
      out.push_back(im.raw_matcher.token(s.token).id);
    else
      im.encode_section(text.substr(s.begin, s.end - s.begin), allow_special, out);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  encode_into(text, ids, allow_special);
  return ids;
}

std::string Tokenizer::decode_bytes(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& im = *impl_;
  std::string out;
  for (const int32_t id : ids) {
    QV_CHECK(id >= 0 && id < vocab_size() && im.kind_of[id] != Impl::kNone, "cannot decode: id ",
             id, " is not in the vocabulary of ", im.origin);
    if (skip_special && im.kind_of[id] == Impl::kSpecial) continue;
    out += im.bytes_of[id];
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  return utf8::to_valid_lossy(decode_bytes(ids, skip_special));
}

std::optional<int32_t> Tokenizer::token_id(std::string_view content) const {
  const Impl& im = *impl_;
  if (auto it = im.added_ids.find(content); it != im.added_ids.end()) return it->second;
  if (auto bytes = byte_level::to_bytes(content))
    if (const int32_t id = im.bpe->token_of_bytes(*bytes); id >= 0) return id;
  return std::nullopt;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->kind_of[id] == Impl::kSpecial;
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->kind_of.size());
}

SpecialTokens SpecialTokens::lookup(const Tokenizer& tokenizer) {
  auto get = [&](std::string_view content) {
    const auto id = tokenizer.token_id(content);
    QV_CHECK(id.has_value(), "the tokenizer has no token ", content,
             " (needed by the Qwen3-VL data path)");
    return *id;
  };
  return {get("<|image_pad|>"),  get("<|video_pad|>"), get("<|vision_start|>"),
          get("<|vision_end|>"), get("<|endoftext|>"), get("<|im_start|>"),
          get("<|im_end|>")};
}

std::shared_ptr<const Tokenizer::Impl> Tokenizer::build(TokenizerSpec spec,
                                                        const std::string& origin,
                                                        size_t cache_capacity) {
  auto im = std::make_shared<Impl>();
  im->origin = origin;
  im->nfc = spec.nfc;

  int32_t max_id = -1;
  for (const auto& [_, id] : spec.vocab) max_id = std::max(max_id, id);
  for (const auto& t : spec.added_tokens) max_id = std::max(max_id, t.id);
  im->bytes_of.resize(static_cast<size_t>(max_id) + 1);
  im->kind_of.assign(static_cast<size_t>(max_id) + 1, Impl::kNone);

  // Vocabulary: byte-level spellings -> raw bytes.
  std::unordered_map<std::string_view, int32_t, StringHash> by_spelling;  // views into spec.vocab
  StringMap<int32_t> by_bytes;
  by_spelling.reserve(spec.vocab.size());
  by_bytes.reserve(spec.vocab.size());
  for (const auto& [spelling, id] : spec.vocab) {
    auto bytes = byte_level::to_bytes(spelling);
    QV_CHECK(bytes.has_value(), origin, ": model.vocab entry \"", spelling, "\" (id ", id,
             ") is not written in the byte-level alphabet");
    QV_CHECK(im->kind_of[id] == Impl::kNone, origin, ": model.vocab has id ", id, " twice");
    im->kind_of[id] = Impl::kVocab;
    im->bytes_of[id] = *bytes;
    by_bytes.emplace(std::move(*bytes), id);
    by_spelling.emplace(spelling, id);
  }
  std::vector<int32_t> byte_token(256);
  for (int b = 0; b < 256; ++b) {
    const char byte = static_cast<char>(b);
    auto it = by_bytes.find(std::string_view(&byte, 1));
    QV_CHECK(it != by_bytes.end(), origin, ": model.vocab lacks the token for byte 0x", std::hex, b,
             " (a byte-level BPE needs all 256)");
    byte_token[b] = it->second;
  }

  std::vector<MergeRule> merges;
  merges.reserve(spec.merges.size());
  std::string joined;
  for (size_t i = 0; i < spec.merges.size(); ++i) {
    const auto& [a, b] = spec.merges[i];
    joined.assign(a).append(b);
    auto ia = by_spelling.find(a), ib = by_spelling.find(b), ij = by_spelling.find(joined);
    QV_CHECK(ia != by_spelling.end() && ib != by_spelling.end() && ij != by_spelling.end(), origin,
             ": model.merges[", i, "] = (\"", a, "\", \"", b,
             "\") uses a token missing from model.vocab");
    merges.push_back({ia->second, ib->second, ij->second});
  }
  by_spelling.clear();
  spec.vocab.clear();
  by_spelling.clear();
  im->bpe = std::make_unique<BpeModel>(byte_token, merges, std::move(by_bytes), spec.ignore_merges,
                                       cache_capacity);

  // Added tokens: decode to their content; matched raw or after NFC per their flag.
  im->added = std::move(spec.added_tokens);
  std::vector<const AddedToken*> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (const AddedToken& t : im->added) {
    QV_CHECK(utf8::find_invalid(t.content) == std::string_view::npos, origin, ": added token id ",
             t.id, " is not valid UTF-8");
    im->bytes_of[t.id] = t.content;
    im->kind_of[t.id] = t.special ? Impl::kSpecial : Impl::kAdded;
    im->added_ids[t.content] = t.id;
    if (t.normalized) {  // matched in a second pass over the normalized text, as in HF
      std::string pattern = t.content;
      if (im->nfc) unicode::nfc(t.content, pattern);
      normalized.push_back(&t);
      normalized_patterns.push_back(std::move(pattern));
    } else {
      raw.push_back(&t);
      raw_patterns.push_back(t.content);
    }
  }
  im->raw_matcher = AddedTokenMatcher(std::move(raw), std::move(raw_patterns));
  im->normalized_matcher = AddedTokenMatcher(std::move(normalized), std::move(normalized_patterns));
  return im;
}

}  // namespace qv::data
