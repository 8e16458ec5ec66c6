// A bound on JSON nesting, checked on the raw text before nlohmann::json parses it: the parsed
// value is copied, compared and dumped (error messages) recursively, so a few kilobytes of '['
// from a hostile file would otherwise be able to overflow the stack.
#pragma once
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace qv::io {

// Deeper than any real config, tokenizer, index or dataset row (they nest under 10 levels).
constexpr int kMaxJsonDepth = 128;

// Byte offset of the bracket that first opens level max_depth + 1, or npos when the text stays
// within the bound. Brackets inside strings do not count; the text need not be valid JSON.
size_t json_depth_violation(std::string_view text, int max_depth = kMaxJsonDepth);

// Throws qv::Error naming `origin` when the text nests deeper than max_depth.
void check_json_depth(std::string_view text, const std::string& origin,
                      int max_depth = kMaxJsonDepth);

// The text parsed after check_json_depth; invalid JSON throws qv::Error "<origin>: not valid
// JSON: <parser's reason>".
nlohmann::json parse_json(std::string_view text, const std::string& origin);

}  // namespace qv::io
