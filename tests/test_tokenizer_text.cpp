// Unit tests of the tokenizer's text helpers: UTF-8 validation and repair, the character classes
// and NFC shortcut against utf8proc, and the byte-level alphabet.
#include <gtest/gtest.h>
#include <utf8proc.h>

#include <cstdlib>
#include <random>
#include <set>

#include "data/tokenizer/byte_level.h"
#include "data/tokenizer/unicode.h"
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
  utf8proc_uint8_t* out = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                              static_cast<utf8proc_ssize_t>(s.size()), &out,
                              static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  std::string r(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
  std::free(out);
  return r;
}

// unicode::nfc returns false only when its quick check finds the text already NFC; that must
// never be wrong. Returns the failure count (and reports the first few).
int check_quick_nfc(const std::string& s, int& reported) {
  std::string out;
  if (unicode::nfc(s, out)) {
    EXPECT_EQ(out, nfc_by_utf8proc(s));
    return 0;
  }
  if (nfc_by_utf8proc(s) == s) return 0;
  if (reported++ < 5) ADD_FAILURE() << "quick check calls non-NFC text NFC: " << s;
  return 1;
}

std::string utf8_of(std::initializer_list<char32_t> cps) {
  std::string s;
  for (char32_t c : cps) utf8::append(s, c);
  return s;
}

TEST(Unicode, NfcQuickCheckNeverPassesNonNfcText) {
  int failures = 0, reported = 0;
  // Every code point alone, and every code point's canonical decomposition (the sequences that
  // NFC composes), and the same after a base letter.
  for (char32_t cp = 1; cp < 0x110000; ++cp) {
    if (cp >= 0xD800 && cp < 0xE000) continue;
    failures += check_quick_nfc(utf8_of({cp}), reported);
    utf8proc_int32_t parts[32];
    int boundclass = 0;
    const auto n = utf8proc_decompose_char(static_cast<utf8proc_int32_t>(cp), parts, 32,
                                           UTF8PROC_DECOMPOSE, &boundclass);
    if (n <= 1) continue;
    std::string d;
    for (int k = 0; k < n; ++k) utf8::append(d, static_cast<char32_t>(parts[k]));
    failures += check_quick_nfc(d, reported);
    failures += check_quick_nfc("a" + d, reported);
  }
  // Hangul: L + V and LV + T compose algorithmically.
  failures += check_quick_nfc(utf8_of({0x1100, 0x1161}), reported);
  failures += check_quick_nfc(utf8_of({0xAC00, 0x11A8}), reported);
  // Random pairs of code points from the BMP.
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> bmp(0x80, 0xFFFF);
  for (int k = 0; k < 200000; ++k) {
    char32_t a = bmp(rng), b = bmp(rng);
    if (a >= 0xD800 && a < 0xE000) a = 'a';
    if (b >= 0xD800 && b < 0xE000) b = 'b';
    failures += check_quick_nfc(utf8_of({a, b}), reported);
  }
  // Random runs of combining marks (canonical order or not) after a letter.
  std::uniform_int_distribution<uint32_t> mark(0x300, 0x36F), count(1, 4);
  for (int k = 0; k < 100000; ++k) {
    std::string s = "e";
    for (uint32_t m = count(rng); m > 0; --m) utf8::append(s, mark(rng));
    failures += check_quick_nfc(s, reported);
  }
  EXPECT_EQ(failures, 0);
  std::string out;
  EXPECT_FALSE(unicode::nfc("plain ASCII", out));
  EXPECT_FALSE(unicode::nfc("\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D", out));  // नमस्
  EXPECT_FALSE(unicode::nfc("\xE4\xBD\xA0\xE5\xA5\xBD", out));  // 你好 needs no work
  EXPECT_TRUE(unicode::nfc("e\xCC\x81", out));                  // e + U+0301
  EXPECT_EQ(out, "\xC3\xA9");
}

TEST(Unicode, EveryCodePointBelowU0300IsNfcStable) {
  // unicode::nfc skips text whose bytes are all below 0xCC (code points below U+0300) unchecked.
  int failures = 0, reported = 0;
  for (char32_t a = 1; a < 0x300; ++a)
    for (char32_t b = 1; b < 0x300; b += 7) failures += check_quick_nfc(utf8_of({a, b}), reported);
  EXPECT_EQ(failures, 0);
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
