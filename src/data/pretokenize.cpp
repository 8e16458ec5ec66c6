#include "data/pretokenize.h"

#include "data/unicode.h"
#include "data/utf8.h"

namespace qv::data {
namespace {

using unicode::CharClass;

// The text decoded once: class and code point of each character, and where each starts.
struct Decoded {
  std::vector<CharClass> cls;
  std::vector<char32_t> cp;
  std::vector<uint32_t> offset;  // one more entry than characters: offset[n] = text size
};

void decode(std::string_view text, Decoded& d) {
  d.cls.clear();
  d.cp.clear();
  d.offset.clear();
  size_t pos = 0;
  while (pos < text.size()) {
    d.offset.push_back(static_cast<uint32_t>(pos));
    const char32_t c = utf8::next(text, pos);
    d.cp.push_back(c);
    d.cls.push_back(unicode::classify(c));
  }
  d.offset.push_back(static_cast<uint32_t>(text.size()));
}

bool is_whitespace(CharClass c) {
  return c == CharClass::kNewline || c == CharClass::kSpace;
}

// Length in characters of the match of (?i:'s|'t|'re|'ve|'m|'ll|'d) at i, or 0.
size_t contraction_length(const Decoded& d, size_t i, size_t n) {
  if (d.cp[i] != '\'' || i + 1 >= n) return 0;
  const char32_t a = d.cp[i + 1];
  auto is = [](char32_t c, char lower) {
    return c == char32_t(lower) || c == char32_t(lower - 32);
  };
  if (is(a, 's') || a == 0x017F || is(a, 't') || is(a, 'm') || is(a, 'd')) return 2;
  if (i + 2 >= n) return 0;
  const char32_t b = d.cp[i + 2];
  if ((is(a, 'r') && is(b, 'e')) || (is(a, 'v') && is(b, 'e')) || (is(a, 'l') && is(b, 'l')))
    return 3;
  return 0;
}

// Length in characters of the match of the whole pattern at i (always at least 1). The branches
// follow the alternatives in order, since the regex takes the first alternative that matches.
size_t match_length(const Decoded& d, size_t i, size_t n) {
  const auto& cls = d.cls;
  auto run_end = [&](size_t j, auto&& pred) {
    while (j < n && pred(cls[j])) ++j;
    return j;
  };
  auto letter = [](CharClass c) { return c == CharClass::kLetter; };
  auto other = [](CharClass c) { return c == CharClass::kOther; };
  auto newline = [](CharClass c) { return c == CharClass::kNewline; };

  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (const size_t len = contraction_length(d, i, n)) return len;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (cls[i] == CharClass::kLetter) return run_end(i + 1, letter) - i;
  if (cls[i] != CharClass::kNumber && cls[i] != CharClass::kNewline && i + 1 < n &&
      cls[i + 1] == CharClass::kLetter)
    return run_end(i + 2, letter) - i;
  // \p{N}
  if (cls[i] == CharClass::kNumber) return 1;
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  size_t j = i;
  if (d.cp[i] == ' ' && i + 1 < n && cls[i + 1] == CharClass::kOther) j = i + 1;
  if (cls[j] == CharClass::kOther) return run_end(run_end(j + 1, other), newline) - i;
  // Only whitespace is left. \s*[\r\n]+ : backtracking makes it end after the last newline of
  // the whitespace run.
  const size_t ws_end = run_end(i, is_whitespace);
  for (size_t k = ws_end; k > i; --k)
    if (cls[k - 1] == CharClass::kNewline) return k - i;
  // \s+(?!\S) : the whole run at the end of text, else the run minus its last character.
  if (ws_end == n) return ws_end - i;
  if (ws_end - i >= 2) return ws_end - 1 - i;
  // \s+
  return 1;
}

}  // namespace

void split_pretokens(std::string_view text, std::vector<ByteSpan>& pieces) {
  thread_local Decoded d;
  decode(text, d);
  const size_t n = d.cls.size();
  for (size_t i = 0; i < n;) {
    const size_t len = match_length(d, i, n);
    pieces.push_back({d.offset[i], d.offset[i + len]});
    i += len;
  }
}

}  // namespace qv::data
