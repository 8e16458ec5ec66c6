// Added tokens (special tokens such as <|im_start|>, and plain added ones such as <think>): found
// in the text before normalization and BPE, leftmost first and longest among those, with the
// lstrip/rstrip/single_word flags of Hugging Face's AddedToken.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qv::data {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;      // skipped by decode(skip_special); not matched when specials are off
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches when not inside a word
  bool normalized = false;   // matched in the NFC text rather than the raw text
};

// A piece of text: either an added token (token >= 0, index into the matcher's list) or plain text.
struct TextSegment {
  size_t begin, end;
  int token;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns[k]` is what token k must match (its content, or its NFC for normalized tokens).
  AddedTokenMatcher(std::vector<const AddedToken*> tokens, std::vector<std::string> patterns);

  bool empty() const { return tokens_.empty(); }
  const AddedToken& token(int k) const { return *tokens_[k]; }

  // Splits `text` (valid UTF-8) into segments that tile it. With allow_special false, special
  // tokens are not looked for and stay plain text.
  void split(std::string_view text, bool allow_special, std::vector<TextSegment>& out) const;

 private:
  std::vector<const AddedToken*> tokens_;
  std::vector<std::string> patterns_;
  std::array<std::vector<int>, 256> by_first_byte_;  // candidates, longest pattern first
  int only_first_byte_ = -1;  // the first byte of every pattern when they share one (memchr)
};

}  // namespace qv::data
