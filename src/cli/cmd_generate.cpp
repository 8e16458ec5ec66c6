// qwen3vl generate: text (and images) in, text out, with a KV cache.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "cli/command.h"
#include "core/error.h"
#include "data/image/image_decode.h"
#include "data/image/image_preprocess.h"
#include "data/tokenizer/tokenizer.h"
#include "infer/chat_template.h"
#include "infer/sampler.h"
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

int run_generate(const Args& args) {
  Flags f(args, {"raw"});
  f.allow_only({"model", "tokenizer", "prompt", "image", "max-new-tokens", "min-new-tokens",
                "temperature", "top-k", "top-p", "seed", "raw"});
  const std::string dir = f.require("model");
  auto model = model::Qwen3VLModel::from_pretrained(dir);
  const auto& mc = model->config();
  const data::Tokenizer tok =
      data::Tokenizer::load(f.get("tokenizer", (fs::path(dir) / "tokenizer.json").string()));
  const data::SpecialTokens special = data::SpecialTokens::lookup(tok);

  data::ImageProcessorConfig icfg = data::image_processor_config_for_model(dir);
  icfg.patch_size = static_cast<int>(mc.vision.patch_size);
  icfg.temporal_patch_size = static_cast<int>(mc.vision.temporal_patch_size);
  icfg.merge_size = static_cast<int>(mc.vision.spatial_merge_size);
  model::ModelInputs in;
  std::vector<int64_t> image_tokens;
  std::vector<float> pixels;
  for (const std::string& path : split_commas(f.get("image"))) {
    const std::string bytes = io::read_file(path);
    const data::RgbImage img =
        data::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), {}, path);
    data::VisionItem v = data::preprocess_image(img, icfg);
    image_tokens.push_back(data::merged_token_count(v.grid, icfg.merge_size));
    in.image_grids.push_back({v.grid.t, v.grid.h, v.grid.w});
    pixels.insert(pixels.end(), v.pixels.begin(), v.pixels.end());
  }
  if (!pixels.empty()) {
    in.pixel_values = Tensor(
        DType::kF32,
        {static_cast<int64_t>(pixels.size()) / mc.vision.patch_dim(), mc.vision.patch_dim()});
    std::memcpy(in.pixel_values.raw(), pixels.data(), pixels.size() * sizeof(float));
  }
  const std::string text = f.require("prompt");
  const std::string prompt =
      f.has("raw") ? infer::raw_prompt(text, image_tokens) : infer::user_turn(text, image_tokens);
  for (int32_t id : tok.encode(prompt)) in.input_ids.push_back(id);
  in.batch = 1;
  in.seq = static_cast<int64_t>(in.input_ids.size());

  infer::SamplingConfig sc;
  sc.temperature = f.get_double("temperature", 0.0);
  sc.top_k = f.get_int("top-k", 0);
  sc.top_p = f.get_double("top-p", 1.0);
  sc.seed = static_cast<uint64_t>(f.get_int("seed", 0));
  sc.min_new_tokens = f.get_int("min-new-tokens", 0);
  sc.end_ids = {special.im_end, special.endoftext};
  infer::Sampler sampler(sc);
  const int64_t max_new = f.get_int("max-new-tokens", 64);

  const auto t0 = std::chrono::steady_clock::now();
  model::KvCache cache;
  model::ForwardOptions opt;
  opt.want_logits = true;
  opt.kv_cache = &cache;
  model::ForwardResult r = model->forward(in, opt);
  const int64_t V = mc.text.vocab_size;
  std::vector<float> logits(r.logits.data<float>() + (in.seq - 1) * V,
                            r.logits.data<float>() + in.seq * V);
  const auto t1 = std::chrono::steady_clock::now();
  std::vector<int32_t> out;
  std::string printed;
  for (int64_t i = 0; i < max_new; ++i) {
    const int64_t next = sampler.next(logits);
    if (next == special.im_end || next == special.endoftext) break;
    out.push_back(static_cast<int32_t>(next));
    const std::string text_so_far = tok.decode(out);
    // Print only whole characters: hold back a trailing replacement char of a split sequence.
    if (text_so_far.size() > printed.size() &&
        text_so_far.rfind("\xEF\xBF\xBD") != text_so_far.size() - 3) {
      std::fputs(text_so_far.c_str() + printed.size(), stdout);
      std::fflush(stdout);
      printed = text_so_far;
    }
    if (i + 1 < max_new) logits = model->decode(next, cache);
  }
  const std::string final_text = tok.decode(out);
  if (final_text.size() > printed.size()) std::fputs(final_text.c_str() + printed.size(), stdout);
  const auto t2 = std::chrono::steady_clock::now();
  const double prefill = std::chrono::duration<double>(t1 - t0).count();
  const double gen = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr,
               "\n[generate] prompt %lld tokens in %.2f s (%.1f tok/s); %zu new tokens in %.2f s "
               "(%.1f tok/s)\n",
               static_cast<long long>(in.seq), prefill, in.seq / prefill, out.size(), gen,
               out.empty() ? 0.0 : out.size() / gen);
  if (out.empty())
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
