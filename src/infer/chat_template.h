// Qwen chat formatting for one user turn with images, the prompt `generate` feeds the model.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qv::infer {

// "<|im_start|>user\n" + one vision block per image + text + "<|im_end|>\n<|im_start|>assistant\n",
// each vision block being <|vision_start|> + <|image_pad|> x merged_tokens + <|vision_end|>.
std::string user_turn(const std::string& text, const std::vector<int64_t>& image_tokens);

// The vision blocks followed by the text, without chat markers (for base models).
std::string raw_prompt(const std::string& text, const std::vector<int64_t>& image_tokens);

}  // namespace qv::infer
