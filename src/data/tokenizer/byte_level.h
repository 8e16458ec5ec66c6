// GPT-2's byte-level alphabet: each of the 256 byte values is shown as one printable Unicode
// character, so that a vocabulary of byte strings can be stored as text in tokenizer.json.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qv::data::byte_level {

// The character standing for byte b: printable Latin-1 bytes ('!'..'~', U+00A1..U+00AC,
// U+00AE..U+00FF) stand for themselves; the other 68 bytes map, in order, to U+0100 and up.
char32_t char_of_byte(uint8_t b);

// Raw bytes of a vocabulary string written in the byte-level alphabet, or nullopt when it holds
// a character outside that alphabet (or is not valid UTF-8).
std::optional<std::string> to_bytes(std::string_view token);

// The byte-level spelling (UTF-8) of raw bytes.
std::string from_bytes(std::string_view bytes);

}  // namespace qv::data::byte_level
