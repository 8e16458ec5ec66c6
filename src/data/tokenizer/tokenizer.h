// Qwen's byte-level BPE tokenizer, loaded from a Hugging Face tokenizer.json (model BPE with the
// GPT-2 byte alphabet, NFC normalizer, the Qwen Split regex + ByteLevel pre-tokenizer, added
// tokens). Matches Hugging Face `tokenizers` id for id (tests/test_tokenizer.cpp).
//
// Encoding: added tokens are found in the raw text first (leftmost, longest); the text between
// them is NFC-normalized, split by the Qwen pre-tokenizer, and each piece's UTF-8 bytes are
// merged by BPE. Input must be valid UTF-8: otherwise encode throws qv::Error naming the byte
// offset of the first bad sequence (callers that prefer replacement can pass the text through
// utf8::to_valid_lossy first).
//
// Thread safety: a loaded Tokenizer is immutable apart from an internal, locked word cache, so one
// instance may be shared by any number of threads. Copies are cheap and share everything.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qv::data {

struct TokenizerSpec;

class Tokenizer {
 public:
  static constexpr size_t kDefaultWordCacheCapacity = 1 << 16;

  // Throws qv::Error naming the file and what is wrong or unsupported in it.
  static Tokenizer load(const std::string& tokenizer_json_path,
                        size_t word_cache_capacity = kDefaultWordCacheCapacity);
  // Same, from the JSON text; `origin` names it in error messages.
  static Tokenizer from_json(std::string_view json_text, const std::string& origin,
                             size_t word_cache_capacity = kDefaultWordCacheCapacity);

  // allow_special = false leaves special added tokens' text (e.g. "<|im_start|>" in a caption)
  // to be tokenized as ordinary text; non-special added tokens are still matched.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = true) const;
  // Appends the ids of `text` to `out`.
  void encode_into(std::string_view text, std::vector<int32_t>& out,
                   bool allow_special = true) const;

  // Text of the ids; byte sequences that do not form valid UTF-8 (e.g. a character cut between
  // two ids) become U+FFFD, as in Hugging Face. Throws qv::Error on an id outside the vocabulary.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The raw bytes of the ids, without the UTF-8 repair (for streaming output).
  std::string decode_bytes(std::span<const int32_t> ids, bool skip_special = false) const;

  // Id of an added token by its content ("<|im_start|>"), else of a vocabulary entry by its
  // tokenizer.json spelling in the byte-level alphabet ("Ġworld"), like HF's token_to_id.
  std::optional<int32_t> token_id(std::string_view content) const;
  // True for ids of added tokens marked special.
  bool is_special(int32_t id) const;
  // One past the largest id (vocabulary and added tokens).
  int32_t vocab_size() const;

 private:
  struct Impl;
  static std::shared_ptr<const Impl> build(TokenizerSpec spec, const std::string& origin,
                                           size_t word_cache_capacity);
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Ids of the special tokens the Qwen3-VL data path needs, looked up by content.
struct SpecialTokens {
  int32_t image_pad, video_pad, vision_start, vision_end, endoftext, im_start, im_end;
  // Throws qv::Error naming the first token that the tokenizer lacks.
  static SpecialTokens lookup(const Tokenizer& tokenizer);
};

}  // namespace qv::data
