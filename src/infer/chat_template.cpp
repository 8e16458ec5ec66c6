#include "infer/chat_template.h"

namespace qv::infer {

std::string raw_prompt(const std::string& text, const std::vector<int64_t>& image_tokens) {
  std::string s;
  for (int64_t n : image_tokens) {
    s += "<|vision_start|>";
    for (int64_t i = 0; i < n; ++i) s += "<|image_pad|>";
    s += "<|vision_end|>";
  }
  return s + text;
}

std::string user_turn(const std::string& text, const std::vector<int64_t>& image_tokens) {
  return "<|im_start|>user\n" + raw_prompt(text, image_tokens) +
         "<|im_end|>\n<|im_start|>assistant\n";
}

}  // namespace qv::infer
