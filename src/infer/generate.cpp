#include "infer/generate.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/image/image_preprocess.h"
#include "infer/chat_template.h"
#include "io/atomic_file.h"

namespace qv::infer {

data::ImageProcessorConfig image_config_for_model(const std::string& model_dir,
                                                  const model::ModelConfig& config) {
  data::ImageProcessorConfig c = data::image_processor_config_for_model(model_dir);
  c.patch_size = static_cast<int>(config.vision.patch_size);
  c.temporal_patch_size = static_cast<int>(config.vision.temporal_patch_size);
  c.merge_size = static_cast<int>(config.vision.spatial_merge_size);
  return c;
}

PreparedImage prepare_image(const data::RgbImage& image,
                            const data::ImageProcessorConfig& image_config) {
  data::VisionItem v = data::preprocess_image(image, image_config);
  PreparedImage p;
  p.grid = {v.grid.t, v.grid.h, v.grid.w};
  p.pixels = std::move(v.pixels);
  p.merged_tokens = data::merged_token_count(v.grid, image_config.merge_size);
  return p;
}

model::ModelInputs inputs_for(const std::vector<int32_t>& ids,
                              const std::vector<PreparedImage>& images,
                              const model::ModelConfig& config) {
  model::ModelInputs in;
  in.input_ids.assign(ids.begin(), ids.end());
  in.batch = 1;
  in.seq = static_cast<int64_t>(ids.size());
  if (images.empty()) return in;
  const int64_t patch_dim = config.vision.patch_dim();
  int64_t rows = 0;
  for (const PreparedImage& p : images) rows += p.grid.patches();
  in.pixel_values = Tensor(DType::kF32, {rows, patch_dim});
  float* dst = in.pixel_values.data<float>();
  for (const PreparedImage& p : images) {
    QV_CHECK(static_cast<int64_t>(p.pixels.size()) == p.grid.patches() * patch_dim,
             "image pixels do not match the model's patch size");
    std::memcpy(dst, p.pixels.data(), p.pixels.size() * sizeof(float));
    dst += p.pixels.size();
    in.image_grids.push_back(p.grid);
  }
  return in;
}

model::ModelInputs build_prompt(const std::string& text, PromptStyle style,
                                const std::vector<data::RgbImage>& images,
                                const data::Tokenizer& tokenizer,
                                const data::ImageProcessorConfig& image_config,
                                const model::ModelConfig& config) {
  std::vector<PreparedImage> prepared;
  std::vector<int64_t> image_tokens;
  for (const data::RgbImage& image : images) {
    prepared.push_back(prepare_image(image, image_config));
    image_tokens.push_back(prepared.back().merged_tokens);
  }
  const std::string prompt =
      style == PromptStyle::kRaw ? raw_prompt(text, image_tokens) : user_turn(text, image_tokens);
  return inputs_for(tokenizer.encode(prompt), prepared, config);
}

bool checkpoint_is_bf16(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  if (!std::filesystem::exists(path)) return false;
  const nlohmann::json j = nlohmann::json::parse(io::read_file(path), nullptr, false);
  if (!j.is_object()) return false;
  auto says_bf16 = [](const nlohmann::json& o) {
    for (const char* key : {"torch_dtype", "dtype"})
      if (o.contains(key) && o[key].is_string() && o[key].get<std::string>() == "bfloat16")
        return true;
    return false;
  };
  return says_bf16(j) ||
         (j.contains("text_config") && j["text_config"].is_object() && says_bf16(j["text_config"]));
}

GenerateConfig generation_config_for_model(const std::string& model_dir, GenerateConfig base) {
  const std::string path = (std::filesystem::path(model_dir) / "generation_config.json").string();
  if (!std::filesystem::exists(path)) return base;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(io::read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": invalid JSON: ", e.what());
  }
  QV_CHECK(j.is_object(), path, ": expected a JSON object");
  auto number = [&](const char* key, auto& out) {
    if (!j.contains(key) || j[key].is_null()) return;
    QV_CHECK(j[key].is_number(), path, ": ", key, " must be a number");
    out = j[key].get<std::remove_reference_t<decltype(out)>>();
  };
  SamplingConfig& s = base.sampling;
  number("temperature", s.temperature);
  number("top_k", s.top_k);
  number("top_p", s.top_p);
  number("repetition_penalty", s.repetition_penalty);
  number("max_new_tokens", base.max_new_tokens);
  if (j.contains("do_sample") && j["do_sample"].is_boolean() && !j["do_sample"].get<bool>())
    s.temperature = 0;
  return base;
}

StopTokens StopTokens::qwen(const data::Tokenizer& tokenizer) {
  const data::SpecialTokens special = data::SpecialTokens::lookup(tokenizer);
  return {{special.im_end, special.endoftext}};
}

bool StopTokens::contains(int64_t id) const {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

namespace {

// Samples up to max_new_tokens tokens starting from `logits` (the last cached position's),
// appending each chosen token to `context` and, except the last, to the cache.
void decode_loop(model::Qwen3VLModel& model, model::KvCache& cache, std::vector<float> logits,
                 std::vector<int32_t>& context, const GenerateConfig& config,
                 const StopTokens& stop, const std::function<void(int32_t)>& on_token,
                 GenerateResult& r) {
  Sampler sampler(config.sampling);
  for (int64_t i = 0; i < config.max_new_tokens; ++i) {
    const int64_t next = sampler.next(std::move(logits), context);
    if (stop.contains(next)) break;
    r.tokens.push_back(static_cast<int32_t>(next));
    context.push_back(static_cast<int32_t>(next));
    if (on_token) on_token(static_cast<int32_t>(next));
    if (i + 1 < config.max_new_tokens) logits = model.decode(next, cache);
  }
}

// Prefill of `prompt` into a fresh `cache`; returns the last position's logits.
std::vector<float> prefill(model::Qwen3VLModel& model, const model::ModelInputs& prompt,
                           model::KvCache& cache) {
  cache = {};
  model::ForwardOptions opt;
  opt.want_logits = true;
  opt.kv_cache = &cache;
  const model::ForwardResult r = model.forward(prompt, opt);
  const int64_t V = model.config().text.vocab_size;
  const float* last_row = r.logits.data<float>() + (prompt.seq - 1) * V;
  return std::vector<float>(last_row, last_row + V);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

GenerateResult generate(model::Qwen3VLModel& model, const model::ModelInputs& prompt,
                        const GenerateConfig& config, const StopTokens& stop,
                        const std::function<void(int32_t)>& on_token) {
  QV_CHECK(prompt.batch == 1 && prompt.seq > 0, "generate: the prompt must be one non-empty row");
  GenerateResult r;
  r.prompt_tokens = prompt.seq;
  const auto t0 = std::chrono::steady_clock::now();
  model::KvCache cache;
  std::vector<float> logits = prefill(model, prompt, cache);
  r.prefill_seconds = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  std::vector<int32_t> context(prompt.input_ids.begin(), prompt.input_ids.end());
  decode_loop(model, cache, std::move(logits), context, config, stop, on_token, r);
  r.decode_seconds = seconds_since(t1);
  return r;
}

ChatSession::ChatSession(model::Qwen3VLModel& model, const data::Tokenizer& tokenizer,
                         data::ImageProcessorConfig image_config, GenerateConfig config,
                         std::string system)
    : model_(model),
      tok_(tokenizer),
      image_config_(std::move(image_config)),
      config_(std::move(config)),
      stop_(StopTokens::qwen(tokenizer)),
      system_(std::move(system)) {
  if (config_.sampling.end_ids.empty()) config_.sampling.end_ids = stop_.ids;
}

GenerateResult ChatSession::reply(const std::string& text,
                                  const std::vector<data::RgbImage>& images,
                                  const std::function<void(int32_t)>& on_token) {
  // The new turn's text: the system turn first, else the previous answer's closing.
  std::string turn;
  if (ids_.empty() && !system_.empty()) turn = "<|im_start|>system\n" + system_ + "<|im_end|>\n";
  if (!ids_.empty()) turn = "<|im_end|>\n";
  std::vector<int64_t> image_tokens;
  for (const data::RgbImage& image : images) {
    images_.push_back(prepare_image(image, image_config_));
    image_tokens.push_back(images_.back().merged_tokens);
  }
  turn += user_turn(text, image_tokens);
  for (int32_t id : tok_.encode(turn)) ids_.push_back(id);

  GenerateResult r;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits;
  if (cache_.length == 0 || !images.empty()) {
    logits = prefill(model_, inputs_for(ids_, images_, model_.config()), cache_);
    r.prompt_tokens = static_cast<int64_t>(ids_.size());
    ++full_prefills_;
  } else {
    // Tokens not yet cached: the last answer's final token when it hit the limit, then the turn.
    r.prompt_tokens = static_cast<int64_t>(ids_.size()) - cache_.length;
    for (size_t i = static_cast<size_t>(cache_.length); i < ids_.size(); ++i)
      logits = model_.decode(ids_[i], cache_);
  }
  first_logits_ = logits;
  r.prefill_seconds = seconds_since(t0);
  const auto t1 = std::chrono::steady_clock::now();
  decode_loop(model_, cache_, std::move(logits), ids_, config_, stop_, on_token, r);
  r.decode_seconds = seconds_since(t1);
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
