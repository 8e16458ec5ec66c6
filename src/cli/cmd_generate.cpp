// qwen3vl generate: text (and images) in, text out, with a KV cache. The work is infer::generate;
// this file reads the flags and images, and prints the text as it comes.
#include <cstdio>
#include <filesystem>

#include "cli/command.h"
#include "core/error.h"
#include "data/image/image_decode.h"
#include "data/tokenizer/tokenizer.h"
#include "infer/generate.h"
#include "io/atomic_file.h"
#include "model/qwen3vl.h"

namespace qv::cli {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string part = s.substr(start, comma - start);
    if (!part.empty()) out.push_back(part);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::vector<data::RgbImage> read_images(const std::string& comma_list) {
  std::vector<data::RgbImage> images;
  for (const std::string& path : split_commas(comma_list)) {
    const std::string bytes = io::read_file(path);
    images.push_back(
        data::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), {}, path));
  }
  return images;
}

int run_generate(const Args& args) {
  Flags f(args, {"raw"});
  f.allow_only({"model", "tokenizer", "prompt", "image", "max-new-tokens", "min-new-tokens",
                "temperature", "top-k", "top-p", "seed", "raw", "adapter"});
  const std::string dir = f.require("model");
  auto model = model::Qwen3VLModel::from_pretrained(dir);
  if (f.has("adapter")) model->load_lora_adapter(f.get("adapter"));  // docs/LORA.md
  const data::Tokenizer tok =
      data::Tokenizer::load(f.get("tokenizer", (fs::path(dir) / "tokenizer.json").string()));
  const infer::StopTokens stop = infer::StopTokens::qwen(tok);

  const std::vector<data::RgbImage> images = read_images(f.get("image"));
  const model::ModelInputs prompt = infer::build_prompt(
      f.require("prompt"), f.has("raw") ? infer::PromptStyle::kRaw : infer::PromptStyle::kChat,
      images, tok, infer::image_config_for_model(dir, model->config()), model->config());

  infer::GenerateConfig gc;
  gc.sampling.temperature = f.get_double("temperature", 0.0);
  gc.sampling.top_k = f.get_int("top-k", 0);
  gc.sampling.top_p = f.get_double("top-p", 1.0);
  gc.sampling.seed = static_cast<uint64_t>(f.get_int("seed", 0));
  gc.sampling.min_new_tokens = f.get_int("min-new-tokens", 0);
  gc.sampling.end_ids = stop.ids;
  gc.max_new_tokens = f.get_int("max-new-tokens", 64);

  infer::TextStream stream(tok, [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });
  const infer::GenerateResult r =
      infer::generate(*model, prompt, gc, stop, [&](int32_t id) { stream.push(id); });
  stream.finish();
  const double n = static_cast<double>(r.tokens.size());
  std::fprintf(stderr,
               "\n[generate] prompt %lld tokens in %.2f s (%.1f tok/s); %zu new tokens in %.2f s "
               "(%.1f tok/s)\n",
               static_cast<long long>(r.prompt_tokens), r.prefill_seconds,
               r.prompt_tokens / r.prefill_seconds, r.tokens.size(), r.decode_seconds,
               r.tokens.empty() ? 0.0 : n / r.decode_seconds);
  if (r.tokens.empty())
    std::fprintf(stderr,
                 "[generate] the model ended its answer at once (its first token was an end "
                 "token); --min-new-tokens N makes it write N tokens first\n");
  std::printf("\n");
  return 0;
}

const Registration kRegistration(
    {"generate",
     "generate text (--model DIR --prompt TEXT [--image A.jpg,B.png] "
     "[--max-new-tokens N] [--min-new-tokens N] [--temperature T --top-k K --top-p P --seed S])",
     run_generate});

}  // namespace
}  // namespace qv::cli
