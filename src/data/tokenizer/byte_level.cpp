#include "data/tokenizer/byte_level.h"

#include <array>

#include "data/utf8.h"

namespace qv::data::byte_level {
namespace {

struct Tables {
  std::array<char32_t, 256> char_of{};
  std::array<int16_t, 324> byte_of{};  // indexed by character (all below U+0144); -1: none
};

constexpr bool stands_for_itself(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

constexpr Tables make_tables() {
  Tables t;
  for (auto& v : t.byte_of) v = -1;
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const char32_t c = stands_for_itself(b) ? char32_t(b) : char32_t(next++);
    t.char_of[b] = c;
    t.byte_of[c] = static_cast<int16_t>(b);
  }
  return t;
}

constexpr Tables kTables = make_tables();

}  // namespace

char32_t char_of_byte(uint8_t b) {
  return kTables.char_of[b];
}

std::optional<std::string> to_bytes(std::string_view token) {
  if (utf8::find_invalid(token) != std::string_view::npos) return std::nullopt;
  std::string out;
  out.reserve(token.size());
  size_t pos = 0;
  while (pos < token.size()) {
    const char32_t c = utf8::next(token, pos);
    if (c >= kTables.byte_of.size() || kTables.byte_of[c] < 0) return std::nullopt;
    out.push_back(static_cast<char>(kTables.byte_of[c]));
  }
  return out;
}

std::string from_bytes(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) utf8::append(out, kTables.char_of[b]);
  return out;
}

}  // namespace qv::data::byte_level
