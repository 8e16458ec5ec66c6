// Text generation with a KV cache, as a library a command, a server or a test can call:
// the prompt (a chat turn or raw text, with images) built into model inputs, one prefill forward,
// then a decode loop that samples one token at a time and stops at a stop token or after
// max_new_tokens; ChatSession keeps a multi-turn conversation and its cache, so each turn feeds
// the model only its new tokens; TextStream turns the generated ids into text pieces that never
// end inside a UTF-8 character.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "data/image/image_processor_config.h"
#include "data/image/rgb_image.h"
#include "data/tokenizer/tokenizer.h"
#include "infer/sampler.h"
#include "model/config.h"
#include "model/inputs.h"
#include "model/qwen3vl.h"

namespace qv::infer {

enum class PromptStyle {
  kChat,  // one user turn in Qwen's chat format (infer/chat_template.h: user_turn)
  kRaw,   // the vision blocks followed by the text, for base models (raw_prompt)
};

// A model folder's preprocessor_config.json (or the defaults), with the patch, temporal patch
// and merge sizes the model itself uses.
data::ImageProcessorConfig image_config_for_model(const std::string& model_dir,
                                                  const model::ModelConfig& config);

// A batch of one: the prompt's token ids with one vision block per image (in order), and the
// images' patches.
model::ModelInputs build_prompt(const std::string& text, PromptStyle style,
                                const std::vector<data::RgbImage>& images,
                                const data::Tokenizer& tokenizer,
                                const data::ImageProcessorConfig& image_config,
                                const model::ModelConfig& config);

// Token ids that end generation (not part of the output).
struct StopTokens {
  std::vector<int64_t> ids;
  // <|im_end|> (end of the assistant's turn) and <|endoftext|>; throws qv::Error when the
  // tokenizer lacks one of Qwen's special tokens.
  static StopTokens qwen(const data::Tokenizer& tokenizer);
  bool contains(int64_t id) const;
};

struct GenerateConfig {
  int64_t max_new_tokens = 64;
  SamplingConfig sampling;
};

// `base` with the sampling settings of the model folder's generation_config.json, when it has
// one: temperature, top_k, top_p, repetition_penalty, max_new_tokens (do_sample = false means
// greedy, as in transformers). Keys it lacks keep base's values.
GenerateConfig generation_config_for_model(const std::string& model_dir, GenerateConfig base);

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids, the stop token excluded
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;  // the prompt's forward, up to the first logits
  double decode_seconds = 0;   // sampling and decode steps, on_token included
};

// Prefill over `prompt` (a batch of one), then up to max_new_tokens sampled tokens; on_token is
// called with each one as soon as it is chosen (before the next decode step).
GenerateResult generate(model::Qwen3VLModel& model, const model::ModelInputs& prompt,
                        const GenerateConfig& config, const StopTokens& stop,
                        const std::function<void(int32_t)>& on_token = {});

// True when the model folder's config.json says its weights are bfloat16 (torch_dtype or dtype,
// at the top level or in text_config), as the Qwen3-VL checkpoints on the Hub are.
bool checkpoint_is_bf16(const std::string& model_dir);

// One image of a conversation, preprocessed for the model.
struct PreparedImage {
  model::Grid grid;
  std::vector<float> pixels;  // [grid.patches(), patch_dim]
  int64_t merged_tokens = 0;  // <|image_pad|> tokens it takes in the prompt
};
PreparedImage prepare_image(const data::RgbImage& image,
                            const data::ImageProcessorConfig& image_config);

// A batch of one over `ids` with `images` (in the order of their vision blocks in ids).
model::ModelInputs inputs_for(const std::vector<int32_t>& ids,
                              const std::vector<PreparedImage>& images,
                              const model::ModelConfig& config);

// A multi-turn chat in Qwen's format: an optional system turn, then user turns (text and images)
// each answered by generate's decode loop. The KV cache lives across turns: a text-only turn
// feeds the model only the tokens not yet cached (the previous answer's closing and the new
// user turn, one decode step each); a turn with images prefills the whole conversation again
// (the cache has no batched append for vision tokens). The history keeps the generated ids as
// they were sampled (not re-tokenized), so the cache always equals a prefill of history().
class ChatSession {
 public:
  ChatSession(model::Qwen3VLModel& model, const data::Tokenizer& tokenizer,
              data::ImageProcessorConfig image_config, GenerateConfig config,
              std::string system = "");
  // Adds a user turn and generates the answer; on_token as in generate().
  GenerateResult reply(const std::string& text, const std::vector<data::RgbImage>& images,
                       const std::function<void(int32_t)>& on_token = {});
  // Every token of the conversation so far (ends with the last answer, whose closing
  // <|im_end|> the next turn adds).
  const std::vector<int32_t>& history() const { return ids_; }
  const std::vector<PreparedImage>& images() const { return images_; }
  int64_t cached_tokens() const { return cache_.length; }
  // The logits that chose the last answer's first token (to compare with a fresh prefill).
  const std::vector<float>& first_logits() const { return first_logits_; }
  // Prefill forwards run so far (a turn with images, or the first turn, runs one).
  int64_t full_prefills() const { return full_prefills_; }

 private:
  model::Qwen3VLModel& model_;
  const data::Tokenizer& tok_;
  data::ImageProcessorConfig image_config_;
  GenerateConfig config_;
  StopTokens stop_;
  std::string system_;
  model::KvCache cache_;
  std::vector<int32_t> ids_;
  std::vector<PreparedImage> images_;
  std::vector<float> first_logits_;
  int64_t full_prefills_ = 0;
};

// UTF-8 holdback for streaming: given the whole text decoded so far, returns the part not yet
// handed out, or nothing while the text ends in U+FFFD (what a character split between tokens
// decodes to, until the token that completes it arrives).
class Utf8Holdback {
 public:
  std::string_view next(std::string_view text);
  // At the end: whatever is left, a trailing U+FFFD included.
  std::string_view finish(std::string_view text);

 private:
  size_t emitted_ = 0;
};

// Generated ids -> text pieces for `out`, in whole characters; the pieces concatenated equal
// tokenizer.decode(all ids) once finish() has run.
class TextStream {
 public:
  TextStream(const data::Tokenizer& tokenizer, std::function<void(std::string_view)> out)
      : tok_(tokenizer), out_(std::move(out)) {}
  void push(int32_t id);
  void finish();
  const std::vector<int32_t>& ids() const { return ids_; }

 private:
  const data::Tokenizer& tok_;
  std::function<void(std::string_view)> out_;
  std::vector<int32_t> ids_;
  std::string text_;
  Utf8Holdback holdback_;
};

}  // namespace qv::infer
