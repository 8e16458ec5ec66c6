// Unit tests of the tokenizer's text helpers: UTF-8 validation and repair, the character classes
// and NFC shortcut against utf8proc, and the byte-level alphabet.
#include <gtest/gtest.h>
#include <utf8proc.h>

#include <cstdlib>
#include <set>

#include "data/byte_level.h"
#include "data/unicode.h"
#include "data/utf8.h"

namespace qv::data {
namespace {

TEST(Utf8, FindsTheFirstIllFormedSequence) {
  EXPECT_EQ(utf8::find_invalid(""), std::string_view::npos);
  EXPECT_EQ(utf8::find_invalid("plain ascii text, long enough to use the fast path"),
            std::string_view::npos);
  EXPECT_EQ(utf8::find_invalid("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF"),
            std::string_view::npos);                      // é € 😀 U+10FFFF
  EXPECT_EQ(utf8::find_invalid("abcdefghij\x80"), 10u);   // stray continuation
  EXPECT_EQ(utf8::find_invalid("\xE0\x80\xAF"), 0u);      // overlong
  EXPECT_EQ(utf8::find_invalid("ab\xED\xBF\xBF"), 2u);    // surrogate
  EXPECT_EQ(utf8::find_invalid("\xF5\x80\x80\x80"), 0u);  // beyond Unicode
  EXPECT_EQ(utf8::find_invalid("a\xF0\x9F\x98"), 1u);     // truncated
  EXPECT_EQ(utf8::find_invalid(std::string_view("a\0b", 3)), std::string_view::npos);
}

TEST(Utf8, LossyRepairReplacesMaximalSubparts) {
  // The example of "U+FFFD Substitution of Maximal Subparts" in chapter 3 of the Unicode
  // Standard: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 -> a FFFD FFFD FFFD b FFFD c FFFD FFFD d.
  EXPECT_EQ(utf8::to_valid_lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd");
  EXPECT_EQ(utf8::to_valid_lossy("caf\xC3\xA9"), "caf\xC3\xA9");
}

TEST(Utf8, DecodeAndEncodeRoundTrip) {
  for (char32_t cp : {0x0u, 0x41u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xFFFDu, 0x10000u, 0x10FFFFu}) {
    std::string s;
    utf8::append(s, cp);
    EXPECT_EQ(utf8::find_invalid(s), std::string_view::npos) << uint32_t(cp);
    size_t pos = 0;
    EXPECT_EQ(utf8::next(s, pos), cp);
    EXPECT_EQ(pos, s.size());
  }
}

unicode::CharClass class_by_utf8proc(char32_t cp) {
  using unicode::CharClass;
  if (cp == '\r' || cp == '\n') return CharClass::kNewline;
  if (unicode::is_white_space(cp)) return CharClass::kSpace;
  const auto c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  if (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) return CharClass::kLetter;
  if (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO) return CharClass::kNumber;
  return CharClass::kOther;
}

TEST(Unicode, AsciiTableAgreesWithUtf8proc) {
  for (char32_t cp = 0; cp < 128; ++cp)
    EXPECT_EQ(unicode::classify(cp), class_by_utf8proc(cp)) << uint32_t(cp);
}

TEST(Unicode, WhiteSpaceIsTheUnicodeProperty) {
  // Every Zs/Zl/Zp character is White_Space; so are the controls \t..\r and U+0085 (NEL).
  for (char32_t cp = 0; cp < 0x110000; ++cp) {
    const auto c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
    const bool separator =
        c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
    const bool control = (cp >= 0x09 && cp <= 0x0D) || cp == 0x85;
    EXPECT_EQ(unicode::is_white_space(cp), separator || control) << std::hex << uint32_t(cp);
  }
  EXPECT_FALSE(
      unicode::is_white_space(0xFEFF));  // the BOM is not whitespace (JavaScript's \s says it is)
}

std::string nfc_by_utf8proc(const std::string& s) {
  utf8proc_uint8_t* out = utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(s.c_str()));
  std::string r(reinterpret_cast<const char*>(out));
  std::free(out);
  return r;
}

TEST(Unicode, NfcShortcutHoldsBelowU0300) {
  // The shortcut in unicode::nfc assumes text of code points below U+0300 is already NFC,
  // including any pair of them (composition needs a second character at or above U+0300).
  for (char32_t a = 1; a < 0x300; ++a) {
    std::string one;
    utf8::append(one, a);
    ASSERT_EQ(nfc_by_utf8proc(one), one) << std::hex << uint32_t(a);
    for (char32_t b = 1; b < 0x300; ++b) {
      std::string two = one;
      utf8::append(two, b);
      ASSERT_EQ(nfc_by_utf8proc(two), two) << std::hex << uint32_t(a) << " " << uint32_t(b);
    }
  }
  std::string out;
  EXPECT_TRUE(unicode::nfc("e\xCC\x81", out));  // e + U+0301
  EXPECT_EQ(out, "\xC3\xA9");
}

TEST(ByteLevel, AlphabetIsABijection) {
  std::set<char32_t> seen;
  std::string all;
  for (int b = 0; b < 256; ++b) {
    seen.insert(byte_level::char_of_byte(static_cast<uint8_t>(b)));
    all.push_back(static_cast<char>(b));
  }
  EXPECT_EQ(seen.size(), 256u);
  EXPECT_EQ(byte_level::char_of_byte(' '), U'\u0120');   // 'Ġ', as in every GPT-2 vocabulary
  EXPECT_EQ(byte_level::char_of_byte('\n'), U'\u010A');  // 'Ċ'
  EXPECT_EQ(byte_level::char_of_byte('a'), U'a');
  EXPECT_EQ(byte_level::to_bytes(byte_level::from_bytes(all)), all);
  EXPECT_EQ(byte_level::to_bytes("\xE4\xBD\xA0"), std::nullopt);  // 你 is not in the alphabet
}

}  // namespace
}  // namespace qv::data
