// The Qwen pre-tokenizer: splits text into the pieces that the regex below matches, with a
// hand-written scanner over Unicode character classes instead of a regex engine.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

namespace qv::data {

// The Split pattern of Qwen2/2.5/3 tokenizer.json files (also used by Qwen3-VL). The scanner
// implements exactly this pattern with the semantics of the engines Hugging Face uses
// (Oniguruma/Rust regex): \s is Unicode White_Space and (?i:'s) also matches "'\u017F" (long s).
inline constexpr std::string_view kQwenSplitPattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

struct ByteSpan {
  size_t begin, end;
};

// End (byte offset) of the piece that starts at byte `begin` < text.size() of valid UTF-8 text.
size_t pretoken_end(std::string_view text, size_t begin);

// Appends to `pieces` the byte spans of the successive matches of kQwenSplitPattern in `text`
// (valid UTF-8). Every character belongs to some match, so the spans tile the text.
void split_pretokens(std::string_view text, std::vector<ByteSpan>& pieces);

}  // namespace qv::data
