// Reads the parts of a Hugging Face tokenizer.json that the Qwen tokenizer uses, checking that
// everything else is of the supported kind, so that an unsupported file fails loudly at load
// instead of encoding differently from Hugging Face.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/tokenizer/added_tokens.h"

namespace qv::data {

struct TokenizerSpec {
  std::vector<std::pair<std::string, int32_t>> vocab;       // byte-level spelling -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  bool ignore_merges = false;
  bool nfc = false;  // normalizer NFC (else none)
  std::vector<AddedToken> added_tokens;
};

// Throws qv::Error whose message starts with `origin` (the file name) and says what is wrong.
TokenizerSpec parse_tokenizer_json(std::string_view json_text, const std::string& origin);

}  // namespace qv::data
