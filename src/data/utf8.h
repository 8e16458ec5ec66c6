// UTF-8 helpers shared by the data path: strict validation (the tokenizer, caption checks),
// code point decoding and encoding, and the lossy conversion that decoding token ids needs
// (byte-level BPE can yield partial characters).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qv::data::utf8 {

// Byte offset of the first ill-formed sequence in `text` (overlong forms, surrogates, code
// points above U+10FFFF, truncated or stray bytes), or std::string_view::npos when all is valid.
size_t find_invalid(std::string_view text);

// Decodes the code point starting at text[pos] of text already known to be valid UTF-8 and
// advances pos past it.
inline char32_t next(std::string_view text, size_t& pos) {
  const auto b0 = static_cast<unsigned char>(text[pos]);
  if (b0 < 0x80) {
    ++pos;
    return b0;
  }
  auto cont = [&](size_t k) { return static_cast<unsigned char>(text[pos + k]) & 0x3Fu; };
  char32_t cp;
  if (b0 < 0xE0) {
    cp = ((b0 & 0x1Fu) << 6) | cont(1);
    pos += 2;
  } else if (b0 < 0xF0) {
    cp = ((b0 & 0x0Fu) << 12) | (cont(1) << 6) | cont(2);
    pos += 3;
  } else {
    cp = ((b0 & 0x07u) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3);
    pos += 4;
  }
  return cp;
}

// Appends the UTF-8 encoding of a valid code point.
void append(std::string& out, char32_t cp);

// Returns `bytes` with every ill-formed subsequence replaced by U+FFFD, one replacement per
// maximal subpart (the W3C/WHATWG practice that Rust's from_utf8_lossy and JS TextDecoder follow).
std::string to_valid_lossy(std::string_view bytes);

}  // namespace qv::data::utf8
