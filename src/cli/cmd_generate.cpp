// qwen3vl generate: text (and images) in, text out, with a KV cache. The work is infer::generate
// (one prompt) and infer::ChatSession (a conversation read from stdin when there is no
// --prompt); this file reads the flags and images, and prints the text as it comes.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli/command.h"
#include "cli/device_flag.h"
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

data::RgbImage read_image(const std::string& path) {
  const std::string bytes = io::read_file(path);
  return data::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), {}, path);
}

std::vector<data::RgbImage> read_images(const std::string& comma_list) {
  std::vector<data::RgbImage> images;
  for (const std::string& path : split_commas(comma_list)) images.push_back(read_image(path));
  return images;
}

// Defaults from the model's generation_config.json, then the flags given.
infer::GenerateConfig generate_config(const Flags& f, const std::string& dir,
                                      const infer::StopTokens& stop) {
  infer::GenerateConfig gc = infer::generation_config_for_model(dir, {});
  gc.sampling.temperature = f.get_double("temperature", gc.sampling.temperature);
  gc.sampling.top_k = f.get_int("top-k", gc.sampling.top_k);
  gc.sampling.top_p = f.get_double("top-p", gc.sampling.top_p);
  gc.sampling.repetition_penalty =
      f.get_double("repetition-penalty", gc.sampling.repetition_penalty);
  QV_CHECK(gc.sampling.repetition_penalty > 0, "--repetition-penalty must be positive");
  gc.sampling.seed = static_cast<uint64_t>(f.get_int("seed", 0));
  gc.sampling.min_new_tokens = f.get_int("min-new-tokens", 0);
  gc.sampling.end_ids = stop.ids;
  gc.max_new_tokens = f.get_int("max-new-tokens", gc.max_new_tokens);
  return gc;
}

void print_piece(std::string_view piece) {
  std::fwrite(piece.data(), 1, piece.size(), stdout);
  std::fflush(stdout);
}

void report(const infer::GenerateResult& r) {
  const double n = static_cast<double>(r.tokens.size());
  std::fprintf(stderr,
               "\n[generate] prompt %lld tokens in %.2f s (%.1f tok/s); %zu new tokens in %.2f s "
               "(%.1f tok/s)\n",
               static_cast<long long>(r.prompt_tokens), r.prefill_seconds,
               r.prompt_tokens / r.prefill_seconds, r.tokens.size(), r.decode_seconds,
               r.tokens.empty() ? 0.0 : n / r.decode_seconds);
}

int one_prompt(const Flags& f, model::Qwen3VLModel& model, const data::Tokenizer& tok,
               const std::string& dir, const infer::GenerateConfig& gc,
               const infer::StopTokens& stop) {
  const model::ModelInputs prompt = infer::build_prompt(
      f.require("prompt"), f.has("raw") ? infer::PromptStyle::kRaw : infer::PromptStyle::kChat,
      read_images(f.get("image")), tok, infer::image_config_for_model(dir, model.config()),
      model.config());
  infer::TextStream stream(tok, print_piece);
  const infer::GenerateResult r =
      infer::generate(model, prompt, gc, stop, [&](int32_t id) { stream.push(id); });
  stream.finish();
  report(r);
  if (r.tokens.empty())
    std::fprintf(stderr,
                 "[generate] the model ended its answer at once (its first token was an end "
                 "token); --min-new-tokens N makes it write N tokens first\n");
  std::printf("\n");
  return 0;
}

// A conversation on stdin: each line is a user turn, "/image PATH" attaches an image to the
// next turn, "/exit" (or the end of input) ends it. Answers go to stdout, one per turn.
int chat(const Flags& f, model::Qwen3VLModel& model, const data::Tokenizer& tok,
         const std::string& dir, const infer::GenerateConfig& gc) {
  infer::ChatSession session(model, tok, infer::image_config_for_model(dir, model.config()), gc,
                             f.get("system"));
  std::vector<data::RgbImage> pending = read_images(f.get("image"));
  std::fprintf(stderr,
               "[chat] one line per turn; /image PATH attaches an image to the next turn; /exit "
               "ends\n> ");
  for (std::string line; std::getline(std::cin, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line == "/exit" || line == "/quit") break;
    if (line.rfind("/image ", 0) == 0) {
      const std::string path = line.substr(7);
      pending.push_back(read_image(path));
      std::fprintf(stderr, "[chat] %s attached to the next turn\n> ", path.c_str());
      continue;
    }
    if (line.empty() && pending.empty()) {
      std::fprintf(stderr, "> ");
      continue;
    }
    infer::TextStream stream(tok, print_piece);
    const infer::GenerateResult r =
        session.reply(line, pending, [&](int32_t id) { stream.push(id); });
    stream.finish();
    pending.clear();
    std::printf("\n");
    std::fflush(stdout);
    report(r);
    std::fprintf(stderr, "> ");
  }
  std::fprintf(stderr, "\n");
  return 0;
}

int run_generate(const Args& args) {
  Flags f(args, {"raw"});
  f.allow_only({"model", "tokenizer", "prompt", "image", "max-new-tokens", "min-new-tokens",
                "temperature", "top-k", "top-p", "repetition-penalty", "seed", "raw", "system",
                "dtype", "adapter", "device"});
  const DeviceChoice device = parse_device_flag(f.get("device", "cpu"));
  // The model lives and runs on the device; the prefill's logits and each decoded step's come
  // back to the host (the sampler runs there) through the model's explicit copies.
  const DeviceScope on_device(activate_device(device));
  const std::string dir = f.require("model");
  auto model = model::Qwen3VLModel::from_pretrained(dir);
  if (f.has("adapter")) model->load_lora_adapter(f.get("adapter"));  // docs/LORA.md
  const std::string dtype = f.get("dtype", infer::checkpoint_is_bf16(dir) ? "bfloat16" : "float32");
  QV_CHECK(dtype == "float32" || dtype == "bfloat16", "--dtype must be float32 or bfloat16, got '",
           dtype, "'");
  // bf16 weight copies: every matrix product reads them (the bf16 GEMM path).
  if (dtype == "bfloat16") model->enable_bf16_matmuls();
  const data::Tokenizer tok =
      data::Tokenizer::load(f.get("tokenizer", (fs::path(dir) / "tokenizer.json").string()));
  const infer::StopTokens stop = infer::StopTokens::qwen(tok);
  const infer::GenerateConfig gc = generate_config(f, dir, stop);
  if (f.has("prompt")) return one_prompt(f, *model, tok, dir, gc, stop);
  QV_CHECK(!f.has("raw"), "--raw needs --prompt (a chat is always in the chat format)");
  return chat(f, *model, tok, dir, gc);
}

const Registration kRegistration(
    {"generate",
     "generate text (--model DIR [--prompt TEXT] [--image A.jpg,B.png] [--system TEXT] "
     "[--max-new-tokens N] [--min-new-tokens N] [--temperature T --top-k K --top-p P --seed S] "
     "[--repetition-penalty R] [--dtype float32|bfloat16] [--adapter LORA_DIR]); without --prompt, "
     "a chat on stdin "
     "(/image PATH attaches an image to the next turn); sampling defaults come from the model's "
     "generation_config.json",
     run_generate});

}  // namespace
}  // namespace qv::cli
