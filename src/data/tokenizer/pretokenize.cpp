#include "data/tokenizer/pretokenize.h"

#include "data/tokenizer/unicode.h"
#include "data/utf8.h"

namespace qv::data {
namespace {

using unicode::CharClass;

// One character of the text: its class, code point, and the byte offset just past it. The
// scanner decodes on the fly, so memory stays constant however long the text or its runs.
struct Char {
  CharClass cls;
  char32_t cp;
  size_t end;
};

[[gnu::noinline]] Char char_at_non_ascii(std::string_view text, size_t pos) {
  const char32_t cp = utf8::next(text, pos);
  return {unicode::classify_non_ascii(cp), cp, pos};
}

inline Char char_at(std::string_view text, size_t pos) {
  const auto b = static_cast<unsigned char>(text[pos]);
  if (b < 0x80) return {unicode::kAsciiClass[b], b, pos + 1};
  return char_at_non_ascii(text, pos);
}

bool is_whitespace(CharClass c) {
  return c == CharClass::kNewline || c == CharClass::kSpace;
}

// End of the run of characters of class `cls` that starts at `pos`.
size_t run_end(std::string_view text, size_t pos, CharClass cls) {
  while (pos < text.size()) {
    const Char c = char_at(text, pos);
    if (c.cls != cls) break;
    pos = c.end;
  }
  return pos;
}

bool is_ascii_letter(char32_t c, char lower) {
  return c == char32_t(lower) || c == char32_t(lower - 32);
}

// End of the match of (?i:'s|'t|'re|'ve|'m|'ll|'d) for an apostrophe ending at `pos`, or 0.
// Case-insensitive matching in the reference engines also lets U+017F (long s) match 's'.
size_t contraction_end(std::string_view text, size_t pos) {
  if (pos >= text.size()) return 0;
  const Char a = char_at(text, pos);
  if (is_ascii_letter(a.cp, 's') || a.cp == 0x017F || is_ascii_letter(a.cp, 't') ||
      is_ascii_letter(a.cp, 'm') || is_ascii_letter(a.cp, 'd'))
    return a.end;
  if (a.end >= text.size()) return 0;
  const Char b = char_at(text, a.end);
  if ((is_ascii_letter(a.cp, 'r') && is_ascii_letter(b.cp, 'e')) ||
      (is_ascii_letter(a.cp, 'v') && is_ascii_letter(b.cp, 'e')) ||
      (is_ascii_letter(a.cp, 'l') && is_ascii_letter(b.cp, 'l')))
    return b.end;
  return 0;
}

// End of the match of the whole pattern at byte `i` (it always matches at least one character).
// The branches follow the alternatives in order, since the regex takes the first that matches.
size_t match_end(std::string_view text, size_t i) {
  const size_t n = text.size();
  const Char c0 = char_at(text, i);
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c0.cp == '\'')
    if (const size_t end = contraction_end(text, c0.end)) return end;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c0.cls == CharClass::kLetter) return run_end(text, c0.end, CharClass::kLetter);
  if (c0.cls != CharClass::kNumber && c0.cls != CharClass::kNewline && c0.end < n) {
    const Char c1 = char_at(text, c0.end);
    if (c1.cls == CharClass::kLetter) return run_end(text, c1.end, CharClass::kLetter);
  }
  // \p{N}
  if (c0.cls == CharClass::kNumber) return c0.end;
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  Char first = c0;
  if (c0.cp == ' ' && c0.end < n) {
    const Char c1 = char_at(text, c0.end);
    if (c1.cls == CharClass::kOther) first = c1;
  }
  if (first.cls == CharClass::kOther)
    return run_end(text, run_end(text, first.end, CharClass::kOther), CharClass::kNewline);
  // Only whitespace is left: scan its run, noting the end of its last newline and the start of
  // its last character.
  size_t pos = i, last_newline_end = 0, last_start = i;
  while (pos < n) {
    const Char c = char_at(text, pos);
    if (!is_whitespace(c.cls)) break;
    if (c.cls == CharClass::kNewline) last_newline_end = c.end;
    last_start = pos;
    pos = c.end;
  }
  // \s*[\r\n]+ : backtracking makes it end after the run's last newline.
  if (last_newline_end > 0) return last_newline_end;
  // \s+(?!\S) : the whole run at the end of the text, else the run but its last character.
  if (pos == n) return n;
  if (last_start > i) return last_start;
  // \s+ : a single whitespace character before a non-space.
  return c0.end;
}

}  // namespace

size_t pretoken_end(std::string_view text, size_t begin) {
  return match_end(text, begin);
}

void split_pretokens(std::string_view text, std::vector<ByteSpan>& pieces) {
  for (size_t i = 0; i < text.size();) {
    const size_t end = match_end(text, i);
    pieces.push_back({i, end});
    i = end;
  }
}

}  // namespace qv::data
