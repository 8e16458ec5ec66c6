#include "train/hf_export.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace qv::train {

namespace {

using json = nlohmann::ordered_json;  // the files we write keep their keys in this order
using tjson = nlohmann::json;         // tokenizer.json as read (a 150k-entry vocab: map lookups)

// Qwen's ids of <|endoftext|> and <|im_end|>, used only when no tokenizer.json is exported.
constexpr int kQwenEndOfText = 151643, kQwenImEnd = 151645;

// The tokenizer.json's "added_tokens": content -> entry.
std::map<std::string, tjson> added_tokens(const tjson& tok) {
  std::map<std::string, tjson> out;
  if (!tok.contains("added_tokens") || !tok["added_tokens"].is_array()) return out;
  for (const auto& t : tok["added_tokens"])
    if (t.is_object() && t.contains("content") && t["content"].is_string())
      out[t["content"].get<std::string>()] = t;
  return out;
}

int token_id(const std::map<std::string, tjson>& added, const std::string& content,
             const std::string& origin) {
  auto it = added.find(content);
  QV_CHECK(it != added.end() && it->second.contains("id") && it->second["id"].is_number_integer(),
           origin, ": tokenizer.json has no added token ", content);
  return it->second["id"].get<int>();
}

// Read by transformers' GenerationConfig (generation/configuration_utils.py): greedy decoding
// that stops at <|im_end|> or <|endoftext|>, as `qwen3vl generate` does by default.
std::string generation_config(int endoftext, int im_end) {
  json j = {{"bos_token_id", endoftext},
            {"eos_token_id", {im_end, endoftext}},
            {"pad_token_id", endoftext},
            {"do_sample", false}};
  return j.dump(2) + "\n";
}

// Read by Qwen2VLImageProcessor(Fast): min_pixels / max_pixels are written both inside `size`
// (what transformers >= 4.58 reads) and as top-level keys (what 4.57 honours; it ignores `size`
// passed to the constructor).
std::string preprocessor_config(const data::ImageProcessorConfig& c) {
  json j = {{"image_processor_type", "Qwen2VLImageProcessor"},
            {"processor_class", "Qwen3VLProcessor"},
            {"do_resize", true},
            {"resample", 3},  // PIL bicubic
            {"do_rescale", c.do_rescale},
            {"rescale_factor", c.rescale_factor},
            {"do_normalize", c.do_normalize},
            {"image_mean", c.image_mean},
            {"image_std", c.image_std},
            {"do_convert_rgb", true},
            {"patch_size", c.patch_size},
            {"temporal_patch_size", c.temporal_patch_size},
            {"merge_size", c.merge_size},
            {"size", {{"shortest_edge", c.min_pixels}, {"longest_edge", c.max_pixels}}},
            {"min_pixels", c.min_pixels},
            {"max_pixels", c.max_pixels}};
  return j.dump(2) + "\n";
}

// Read by Qwen3VLVideoProcessor: the released video budget with the model's patch geometry.
std::string video_preprocessor_config(const model::ModelConfig& m) {
  const data::VideoProcessorConfig v;
  const data::ImageProcessorConfig& f = v.frames;
  json j = {{"video_processor_type", "Qwen3VLVideoProcessor"},
            {"processor_class", "Qwen3VLProcessor"},
            {"do_resize", true},
            {"resample", 3},
            {"do_rescale", f.do_rescale},
            {"rescale_factor", f.rescale_factor},
            {"do_normalize", f.do_normalize},
            {"image_mean", f.image_mean},
            {"image_std", f.image_std},
            {"do_convert_rgb", true},
            {"patch_size", m.vision.patch_size},
            {"temporal_patch_size", m.vision.temporal_patch_size},
            {"merge_size", m.vision.spatial_merge_size},
            {"size", {{"shortest_edge", f.min_pixels}, {"longest_edge", f.max_pixels}}},
            {"fps", v.fps},
            {"min_frames", v.min_frames},
            {"max_frames", v.max_frames},
            {"do_sample_frames", true}};
  return j.dump(2) + "\n";
}

// Read by PreTrainedTokenizerBase / Qwen2Tokenizer(Fast): the special tokens, the chat template,
// the added-token table, and Qwen2's byte-level settings.
std::string tokenizer_config(const model::ModelConfig& m,
                             const std::map<std::string, tjson>& added) {
  json decoder = json::object();
  json additional = json::array();
  std::vector<std::pair<int, tjson>> by_id;
  for (const auto& [content, t] : added) by_id.emplace_back(t.value("id", -1), t);
  std::sort(by_id.begin(), by_id.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [id, t] : by_id) {
    const bool special = t.value("special", false);
    decoder[std::to_string(id)] = {{"content", t.value("content", "")},
                                   {"lstrip", t.value("lstrip", false)},
                                   {"normalized", t.value("normalized", false)},
                                   {"rstrip", t.value("rstrip", false)},
                                   {"single_word", t.value("single_word", false)},
                                   {"special", special}};
    if (special && t.value("content", "") != "<|endoftext|>")
      additional.push_back(t.value("content", ""));
  }
  json j = {{"tokenizer_class", "Qwen2Tokenizer"},
            {"processor_class", "Qwen3VLProcessor"},
            {"added_tokens_decoder", decoder},
            {"additional_special_tokens", additional},
            {"bos_token", nullptr},
            {"eos_token", "<|im_end|>"},
            {"pad_token", "<|endoftext|>"},
            {"unk_token", nullptr},
            {"chat_template", export_chat_template()},
            {"clean_up_tokenization_spaces", false},
            {"errors", "replace"},
            {"model_max_length", m.text.max_position_embeddings},
            {"split_special_tokens", false}};
  return j.dump(2) + "\n";
}

// vocab.json and merges.txt (the slow Qwen2Tokenizer's files) from tokenizer.json's BPE model.
void slow_tokenizer_files(const tjson& tok, std::vector<std::pair<std::string, std::string>>& out,
                          const std::string& origin) {
  QV_CHECK(tok.contains("model") && tok["model"].is_object() && tok["model"].contains("vocab") &&
               tok["model"]["vocab"].is_object() && tok["model"].contains("merges") &&
               tok["model"]["merges"].is_array(),
           origin, ": tokenizer.json has no BPE model.vocab / model.merges");
  // vocab.json lists the pieces in id order, as the released files do.
  std::vector<std::pair<int64_t, std::string>> vocab;
  for (const auto& [piece, id] : tok["model"]["vocab"].items()) {
    QV_CHECK(id.is_number_integer(), origin, ": tokenizer.json vocab id of '", piece,
             "' is not an integer");
    vocab.emplace_back(id.get<int64_t>(), piece);
  }
  std::sort(vocab.begin(), vocab.end());
  std::string v = "{";
  for (const auto& [id, piece] : vocab)
    v += (v.size() > 1 ? ", " : "") + tjson(piece).dump() + ": " + std::to_string(id);
  out.emplace_back("vocab.json", v + "}\n");
  std::string merges = "#version: 0.2\n";
  for (const auto& m : tok["model"]["merges"]) {
    if (m.is_string()) {
      merges += m.get<std::string>() + "\n";
    } else {
      QV_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), origin,
               ": tokenizer.json merge entries must be \"a b\" or [\"a\", \"b\"]");
      merges += m[0].get<std::string>() + " " + m[1].get<std::string>() + "\n";
    }
  }
  out.emplace_back("merges.txt", merges);
}

}  // namespace

const std::string& export_chat_template() {
  // Each message: <|im_start|>role\n, its content (a string, or a list of items where an image
  // or video item becomes one vision block and a text item its text), <|im_end|>\n.
  static const std::string kTemplate =
      "{%- for message in messages -%}\n"
      "{{- '<|im_start|>' + message['role'] + '\\n' -}}\n"
      "{%- if message['content'] is string -%}\n"
      "{{- message['content'] -}}\n"
      "{%- else -%}\n"
      "{%- for item in message['content'] -%}\n"
      "{%- if item['type'] == 'image' or 'image' in item or 'image_url' in item -%}\n"
      "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}\n"
      "{%- elif item['type'] == 'video' or 'video' in item -%}\n"
      "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}\n"
      "{%- elif 'text' in item -%}\n"
      "{{- item['text'] -}}\n"
      "{%- endif -%}\n"
      "{%- endfor -%}\n"
      "{%- endif -%}\n"
      "{{- '<|im_end|>\\n' -}}\n"
      "{%- endfor -%}\n"
      "{%- if add_generation_prompt -%}\n"
      "{{- '<|im_start|>assistant\\n' -}}\n"
      "{%- endif -%}\n";
  return kTemplate;
}

std::vector<std::pair<std::string, std::string>> hf_export_files(
    const model::ModelConfig& model, const data::ImageProcessorConfig& image,
    const std::string& tokenizer_json, const std::string& origin) {
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back("preprocessor_config.json", preprocessor_config(image));
  out.emplace_back("video_preprocessor_config.json", video_preprocessor_config(model));
  if (tokenizer_json.empty()) {
    out.emplace_back("generation_config.json", generation_config(kQwenEndOfText, kQwenImEnd));
    return out;
  }
  tjson tok;
  try {
    tok = tjson::parse(tokenizer_json);
  } catch (const tjson::exception& e) {
    fail(origin, ": tokenizer.json is not valid JSON: ", e.what());
  }
  const auto added = added_tokens(tok);
  out.emplace_back("generation_config.json",
                   generation_config(token_id(added, "<|endoftext|>", origin),
                                     token_id(added, "<|im_end|>", origin)));
  out.emplace_back("tokenizer_config.json", tokenizer_config(model, added));
  out.emplace_back("chat_template.jinja", export_chat_template());
  out.emplace_back("tokenizer.json", tokenizer_json);
  slow_tokenizer_files(tok, out, origin);
  return out;
}

}  // namespace qv::train
