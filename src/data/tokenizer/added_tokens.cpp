#include "data/tokenizer/added_tokens.h"

#include <algorithm>
#include <cstring>

#include "data/tokenizer/unicode.h"
#include "data/utf8.h"

namespace qv::data {
namespace {

bool is_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// The code point that ends just before byte `pos` of valid UTF-8 text (pos > 0).
char32_t char_before(std::string_view text, size_t pos) {
  size_t start = pos - 1;
  while (start > 0 && is_continuation(text[start])) --start;
  return utf8::next(text, start);
}

// Start of the run of whitespace that ends at `pos`, not going below `floor`.
size_t whitespace_start_before(std::string_view text, size_t pos, size_t floor) {
  while (pos > floor) {
    size_t start = pos - 1;
    while (start > floor && is_continuation(text[start])) --start;
    size_t p = start;
    if (!unicode::is_white_space(utf8::next(text, p))) break;
    pos = start;
  }
  return pos;
}

size_t whitespace_end_after(std::string_view text, size_t pos) {
  while (pos < text.size()) {
    size_t p = pos;
    if (!unicode::is_white_space(utf8::next(text, p))) break;
    pos = p;
  }
  return pos;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<const AddedToken*> tokens,
                                     std::vector<std::string> patterns)
    : tokens_(std::move(tokens)), patterns_(std::move(patterns)) {
  for (size_t k = 0; k < patterns_.size(); ++k)
    if (!patterns_[k].empty())
      by_first_byte_[static_cast<unsigned char>(patterns_[k][0])].push_back(static_cast<int>(k));
  int distinct = 0;
  for (int b = 0; b < 256; ++b) {
    auto& list = by_first_byte_[b];
    std::stable_sort(list.begin(), list.end(),
                     [&](int x, int y) { return patterns_[x].size() > patterns_[y].size(); });
    if (!list.empty()) ++distinct, only_first_byte_ = b;
  }
  if (distinct != 1) only_first_byte_ = -1;
}

void AddedTokenMatcher::split(std::string_view text, bool allow_special,
                              std::vector<TextSegment>& out) const {
  size_t done = 0;  // end of the last segment emitted
  size_t pos = 0;
  while (pos < text.size()) {
    if (only_first_byte_ >= 0) {  // e.g. every Qwen added token starts with '<'
      const void* hit = std::memchr(text.data() + pos, only_first_byte_, text.size() - pos);
      if (hit == nullptr) break;
      pos = static_cast<size_t>(static_cast<const char*>(hit) - text.data());
    }
    int found = -1;
    for (int k : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      if (!allow_special && tokens_[k]->special) continue;
      if (text.compare(pos, patterns_[k].size(), patterns_[k]) == 0) {
        found = k;
        break;
      }
    }
    if (found < 0) {
      ++pos;
      continue;
    }
    const AddedToken& tok = *tokens_[found];
    size_t start = pos, stop = pos + patterns_[found].size();
    pos = stop;  // like Hugging Face's matcher, a rejected match is not searched again
    if (tok.single_word) {
      const bool word_before = start > 0 && unicode::is_word_char(char_before(text, start));
      size_t p = stop;
      const bool word_after = stop < text.size() && unicode::is_word_char(utf8::next(text, p));
      if (word_before || word_after) continue;
    }
    if (tok.lstrip) start = whitespace_start_before(text, start, done);
    if (tok.rstrip) stop = whitespace_end_after(text, stop);
    if (done < start) out.push_back({done, start, -1});
    out.push_back({start, stop, found});
    done = pos = stop;
  }
  if (done < text.size()) out.push_back({done, text.size(), -1});
}

}  // namespace qv::data
