#include "data/unicode.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "core/error.h"

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

bool nfc(std::string_view text, std::string& out) {
  // Every code point below U+0300 is NFC_Quick_Check=Yes and none of them composes with a
  // following one below U+0300, so such text is already NFC. In UTF-8 those code points are
  // exactly the ones whose bytes are all below 0xCC.
  bool may_change = false;
  for (unsigned char b : text) {
    if (b >= 0xCC) {
      may_change = true;
      break;
    }
  }
  if (!may_change) return false;
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                   static_cast<utf8proc_ssize_t>(text.size()), &result,
                   static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(result, &std::free);
  QV_CHECK(n >= 0, "NFC normalization failed: ", utf8proc_errmsg(n));
  out.assign(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
  return true;
}

}  // namespace qv::data::unicode
