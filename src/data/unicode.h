// Unicode properties the Qwen tokenizer needs, from utf8proc: the character classes its
// pre-tokenizer regex distinguishes, White_Space, "word" characters, and NFC normalization.
#pragma once
#include <string>
#include <string_view>

namespace qv::data::unicode {

// How the pre-tokenizer sees one code point. kNewline is '\r' or '\n'; kSpace is any other
// White_Space character (the set Rust's regex and Oniguruma use for \s); kOther is everything
// that is neither a letter (\p{L}), a number (\p{N}) nor whitespace.
enum class CharClass : unsigned char { kLetter, kNumber, kNewline, kSpace, kOther };

CharClass classify(char32_t cp);

// Unicode White_Space property (\s of the reference regex engines).
bool is_white_space(char32_t cp);

// \w as Rust's regex crate defines it (Alphabetic, marks, decimal digits, connector punctuation,
// join controls), approximated by general categories L*, M*, Nd, Nl, Pc and U+200C/U+200D.
bool is_word_char(char32_t cp);

// NFC of valid UTF-8 text. Returns false (leaving `out` untouched) when the text is already
// NFC by a cheap sufficient test (no code point at or above U+0300), so callers can skip a copy.
bool nfc(std::string_view text, std::string& out);

}  // namespace qv::data::unicode
