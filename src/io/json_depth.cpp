#include "io/json_depth.h"

#include "core/error.h"

namespace qv::io {

size_t json_depth_violation(std::string_view text, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return i;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return std::string_view::npos;
}

void check_json_depth(std::string_view text, const std::string& origin, int max_depth) {
  const size_t at = json_depth_violation(text, max_depth);
  QV_CHECK(at == std::string_view::npos, origin, ": JSON nested deeper than ", max_depth,
           " levels (at byte ", at, ")");
}

nlohmann::json parse_json(std::string_view text, const std::string& origin) {
  check_json_depth(text, origin);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(origin, ": not valid JSON: ", e.what());
  }
}

}  // namespace qv::io
