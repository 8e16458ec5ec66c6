// The files of a Hugging Face export besides config.json and the weights, so that
// transformers' AutoProcessor / AutoTokenizer / GenerationConfig .from_pretrained(export) work and
// reproduce what training used: generation_config.json, preprocessor_config.json (the pixel
// limits trained with), video_preprocessor_config.json, tokenizer_config.json with the chat
// template and special tokens, chat_template.jinja, and the tokenizer (tokenizer.json,
// vocab.json, merges.txt).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "data/image/image_processor_config.h"
#include "model/config.h"

namespace qv::train {

// The chat template written into the export (Jinja, the Qwen chat format of infer::user_turn:
// one <|vision_start|><|image_pad|><|vision_end|> per image item, the processor expanding the
// pad to the image's merged token count).
const std::string& export_chat_template();

// {file name, content} of every file above. `tokenizer_json` is the text of the tokenizer.json
// trained with ("" when there is none: then only the generation and processor configs, with
// Qwen's token ids). `image` is the image preprocessing trained with.
std::vector<std::pair<std::string, std::string>> hf_export_files(
    const model::ModelConfig& model, const data::ImageProcessorConfig& image,
    const std::string& tokenizer_json, const std::string& origin);

}  // namespace qv::train
