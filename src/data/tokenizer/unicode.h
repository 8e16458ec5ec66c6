// Unicode properties the Qwen tokenizer needs, from utf8proc: the character classes its
// pre-tokenizer regex distinguishes, White_Space, "word" characters, and NFC normalization.
#pragma once
#include <array>
#include <string>
#include <string_view>

namespace qv::data::unicode {

// How the pre-tokenizer sees one code point. kNewline is '\r' or '\n'; kSpace is any other
// White_Space character (the set Rust's regex and Oniguruma use for \s); kOther is everything
// that is neither a letter (\p{L}), a number (\p{N}) nor whitespace.
enum class CharClass : unsigned char { kLetter, kNumber, kNewline, kSpace, kOther };

// The class of a code point at or above U+0080 (classify() handles ASCII inline).
CharClass classify_non_ascii(char32_t cp);

// In ASCII the only letters are A-Z and a-z, the only numbers 0-9, and the White_Space
// characters are \t..\r and ' '. Most text is mostly ASCII, so that part is a table lookup.
inline constexpr std::array<CharClass, 128> kAsciiClass = [] {
  std::array<CharClass, 128> t{};
  for (int c = 0; c < 128; ++c) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
      t[c] = CharClass::kLetter;
    else if (c >= '0' && c <= '9')
      t[c] = CharClass::kNumber;
    else if (c == '\r' || c == '\n')
      t[c] = CharClass::kNewline;
    else if ((c >= 0x09 && c <= 0x0D) || c == ' ')
      t[c] = CharClass::kSpace;
    else
      t[c] = CharClass::kOther;
  }
  return t;
}();

inline CharClass classify(char32_t cp) {
  return cp < 128 ? kAsciiClass[cp] : classify_non_ascii(cp);
}

// Unicode White_Space property (\s of the reference regex engines).
bool is_white_space(char32_t cp);

// \w as Rust's regex crate defines it (Alphabetic, marks, decimal digits, connector punctuation,
// join controls), approximated by general categories L*, M*, Nd, Nl, Pc and U+200C/U+200D.
bool is_word_char(char32_t cp);

// NFC of valid UTF-8 text. Returns false (leaving `out` untouched) when a quick check shows the
// text is already NFC (no combining mark or other character that NFC could change or compose),
// so callers can skip a copy; otherwise stores the NFC in `out` (utf8proc) and returns true.
bool nfc(std::string_view text, std::string& out);

}  // namespace qv::data::unicode
