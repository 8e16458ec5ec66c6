#include "data/tokenizer/unicode.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>
#include <vector>

#include "core/error.h"
#include "data/utf8.h"

namespace qv::data::unicode {
namespace {

bool is_letter_category(utf8proc_category_t c) {
  return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
}
bool is_number_category(utf8proc_category_t c) {
  return c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO;
}

}  // namespace

bool is_white_space(char32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

CharClass classify_non_ascii(char32_t cp) {
  if (is_white_space(cp)) return CharClass::kSpace;
  const utf8proc_category_t c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  if (is_letter_category(c)) return CharClass::kLetter;
  if (is_number_category(c)) return CharClass::kNumber;
  return CharClass::kOther;
}

bool is_word_char(char32_t cp) {
  if (cp == 0x200C || cp == 0x200D) return true;
  const utf8proc_category_t c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return is_letter_category(c) || (c >= UTF8PROC_CATEGORY_MN && c <= UTF8PROC_CATEGORY_ME) ||
         c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_PC;
}

namespace {

utf8proc_int32_t as_utf8proc(char32_t cp) {
  return static_cast<utf8proc_int32_t>(cp);
}

std::string nfc_by_utf8proc(std::string_view text) {
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                   static_cast<utf8proc_ssize_t>(text.size()), &result,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(result, &std::free);
  QV_CHECK(n >= 0, "NFC normalization failed: ", utf8proc_errmsg(n));
  return std::string(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
}

// Code points whose NFC_Quick_Check is not Yes, over-approximated: characters that NFC replaces,
// and characters that can be the second of a composing pair (any non-first character of a
// canonical decomposition, and the Hangul vowel and trailing jamo). Over-marking only costs speed.
class NfcUnstable {
 public:
  NfcUnstable() : bits_((0x110000 + 63) / 64, 0) {
    for (char32_t cp = 0; cp < 0x110000; ++cp) {
      if (cp >= 0xD800 && cp < 0xE000) continue;
      const utf8proc_property_t* p = utf8proc_get_property(as_utf8proc(cp));
      if (p->decomp_seqindex == UINT16_MAX) continue;  // no decomposition of any kind
      utf8proc_int32_t parts[32];
      int boundclass = 0;
      const utf8proc_ssize_t n =
          utf8proc_decompose_char(as_utf8proc(cp), parts, 32, UTF8PROC_DECOMPOSE, &boundclass);
      if (n == 1 && parts[0] == as_utf8proc(cp)) continue;  // compatibility-only decomposition
      for (utf8proc_ssize_t k = 1; k < n; ++k) mark(static_cast<char32_t>(parts[k]));
      std::string one;
      utf8::append(one, cp);
      if (nfc_by_utf8proc(one) != one) mark(cp);
    }
    for (char32_t cp = 0x1161; cp <= 0x1175; ++cp) mark(cp);  // Hangul vowel jamo
    for (char32_t cp = 0x11A8; cp <= 0x11C2; ++cp) mark(cp);  // Hangul trailing jamo
  }
  bool operator()(char32_t cp) const { return (bits_[cp >> 6] >> (cp & 63)) & 1; }

 private:
  void mark(char32_t cp) { bits_[cp >> 6] |= uint64_t{1} << (cp & 63); }
  std::vector<uint64_t> bits_;
};

}  // namespace

bool nfc(std::string_view text, std::string& out) {
  // Every code point below U+0300 is NFC-stable, and in UTF-8 their bytes are all below 0xCC:
  // the common case needs no decoding.
  size_t pos = 0;
  while (pos < text.size() && static_cast<unsigned char>(text[pos]) < 0xCC) ++pos;
  if (pos == text.size()) return false;
  // The UAX #15 quick check: the text is NFC if every character is NFC_Quick_Check=Yes and the
  // combining classes of each run of marks are in canonical order.
  static const NfcUnstable not_quick_yes;  // built on first use (~1.1M property lookups)
  // text[pos] is a lead byte (continuation bytes are below 0xCC) and follows a starter.
  int last_class = 0;
  bool may_change = false;
  while (pos < text.size() && !may_change) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      last_class = 0;
      continue;
    }
    const char32_t cp = utf8::next(text, pos);
    const int cls = utf8proc_get_property(as_utf8proc(cp))->combining_class;
    may_change = not_quick_yes(cp) || (cls != 0 && last_class > cls);
    last_class = cls;
  }
  if (!may_change) return false;
  out = nfc_by_utf8proc(text);
  return true;
}

}  // namespace qv::data::unicode
