#include "infer/generate.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/error.h"
#include "data/image/image_preprocess.h"
#include "infer/chat_template.h"

namespace qv::infer {

data::ImageProcessorConfig image_config_for_model(const std::string& model_dir,
                                                  const model::ModelConfig& config) {
  data::ImageProcessorConfig c = data::image_processor_config_for_model(model_dir);
  c.patch_size = static_cast<int>(config.vision.patch_size);
  c.temporal_patch_size = static_cast<int>(config.vision.temporal_patch_size);
  c.merge_size = static_cast<int>(config.vision.spatial_merge_size);
  return c;
}

model::ModelInputs build_prompt(const std::string& text, PromptStyle style,
                                const std::vector<data::RgbImage>& images,
                                const data::Tokenizer& tokenizer,
                                const data::ImageProcessorConfig& image_config,
                                const model::ModelConfig& config) {
  model::ModelInputs in;
  std::vector<int64_t> image_tokens;
  std::vector<float> pixels;
  for (const data::RgbImage& image : images) {
    const data::VisionItem v = data::preprocess_image(image, image_config);
    image_tokens.push_back(data::merged_token_count(v.grid, image_config.merge_size));
    in.image_grids.push_back({v.grid.t, v.grid.h, v.grid.w});
    pixels.insert(pixels.end(), v.pixels.begin(), v.pixels.end());
  }
  if (!pixels.empty()) {
    const int64_t patch_dim = config.vision.patch_dim();
    in.pixel_values =
        Tensor(DType::kF32, {static_cast<int64_t>(pixels.size()) / patch_dim, patch_dim});
    std::memcpy(in.pixel_values.raw(), pixels.data(), pixels.size() * sizeof(float));
  }
  const std::string prompt =
      style == PromptStyle::kRaw ? raw_prompt(text, image_tokens) : user_turn(text, image_tokens);
  for (int32_t id : tokenizer.encode(prompt)) in.input_ids.push_back(id);
  in.batch = 1;
  in.seq = static_cast<int64_t>(in.input_ids.size());
  return in;
}

StopTokens StopTokens::qwen(const data::Tokenizer& tokenizer) {
  const data::SpecialTokens special = data::SpecialTokens::lookup(tokenizer);
  return {{special.im_end, special.endoftext}};
}

bool StopTokens::contains(int64_t id) const {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

GenerateResult generate(model::Qwen3VLModel& model, const model::ModelInputs& prompt,
                        const GenerateConfig& config, const StopTokens& stop,
                        const std::function<void(int32_t)>& on_token) {
  QV_CHECK(prompt.batch == 1 && prompt.seq > 0, "generate: the prompt must be one non-empty row");
  using Clock = std::chrono::steady_clock;
  GenerateResult r;
  r.prompt_tokens = prompt.seq;
  Sampler sampler(config.sampling);

  const auto t0 = Clock::now();
  model::KvCache cache;
  model::ForwardOptions opt;
  opt.want_logits = true;
  opt.kv_cache = &cache;
  const model::ForwardResult prefill = model.forward(prompt, opt);
  const int64_t V = model.config().text.vocab_size;
  const float* last_row = prefill.logits.data<float>() + (prompt.seq - 1) * V;
  std::vector<float> logits(last_row, last_row + V);
  const auto t1 = Clock::now();

  for (int64_t i = 0; i < config.max_new_tokens; ++i) {
    const int64_t next = sampler.next(logits);
    if (stop.contains(next)) break;
    r.tokens.push_back(static_cast<int32_t>(next));
    if (on_token) on_token(static_cast<int32_t>(next));
    if (i + 1 < config.max_new_tokens) logits = model.decode(next, cache);
  }
  const auto t2 = Clock::now();
  r.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  r.decode_seconds = std::chrono::duration<double>(t2 - t1).count();
  return r;
}

namespace {
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD in UTF-8
}  // namespace

std::string_view Utf8Holdback::next(std::string_view text) {
  if (text.size() <= emitted_ || text.ends_with(kReplacementChar)) return {};
  return finish(text);
}

std::string_view Utf8Holdback::finish(std::string_view text) {
  if (text.size() <= emitted_) return {};
  const std::string_view piece = text.substr(emitted_);
  emitted_ = text.size();
  return piece;
}

void TextStream::push(int32_t id) {
  ids_.push_back(id);
  text_ = tok_.decode(ids_);
  const std::string_view piece = holdback_.next(text_);
  if (!piece.empty() && out_) out_(piece);
}

void TextStream::finish() {
  text_ = tok_.decode(ids_);
  const std::string_view piece = holdback_.finish(text_);
  if (!piece.empty() && out_) out_(piece);
}

}  // namespace qv::infer
