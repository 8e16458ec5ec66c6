// Multi-turn chat (infer::ChatSession, `qwen3vl generate` without --prompt): a later turn served
// from the kept KV cache equals generating the whole conversation from scratch, with and after
// an image turn; the CLI's scripted stdin session prints what the library answers (/image and
// --system included); the repetition penalty against a hand example; generation_config.json
// defaults; the bf16 weight-copy path.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_test_utils.h"
#include "data/image/image_decode.h"
#include "data/tokenizer/tokenizer.h"
#include "infer/chat_template.h"
#include "infer/generate.h"
#include "io/atomic_file.h"
#include "loader_test_utils.h"
#include "model/hf_weights.h"
#include "model/params.h"
#include "model/qwen3vl.h"
#include "model_test_utils.h"
#include "train_test_utils.h"

namespace qv {
namespace {

const std::string kImage = std::string(QWEN3VL_SOURCE_DIR) + "/tests/data/images/000000001.jpg";

// A tiny random model with the real vocabulary, saved as an HF folder the CLI can load.
std::string save_tiny_model(const std::string& name, DType dtype = DType::kF32) {
  const std::string dir = testing::fresh_dir("ChatSession", name);
  const model::ModelConfig c = testing::small_real_vocab_config();
  model::Qwen3VLModel m(c);
  model::init_params(c, m.store(), 23);
  model::save_hf_checkpoint(dir, c, m.store(), dtype);
  return dir;
}

data::RgbImage read_image(const std::string& path) {
  const std::string bytes = io::read_file(path);
  return data::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), {}, path);
}

// Exactly n tokens per answer: end tokens are masked for n tokens, so every turn hits the limit
// and its last token reaches the cache only with the next turn.
infer::GenerateConfig n_tokens(int64_t n) {
  infer::GenerateConfig gc;
  gc.max_new_tokens = n;
  gc.sampling.min_new_tokens = n;
  return gc;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float worst = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

// The logits of a fresh prefill over `ids` (with `images`) at the last position.
std::vector<float> fresh_last_logits(model::Qwen3VLModel& m, const std::vector<int32_t>& ids,
                                     const std::vector<infer::PreparedImage>& images) {
  model::ForwardOptions o;
  o.want_logits = true;
  const auto r = m.forward(infer::inputs_for(ids, images, m.config()), o);
  const int64_t V = m.config().text.vocab_size;
  const float* row = r.logits.data<float>() + (static_cast<int64_t>(ids.size()) - 1) * V;
  return std::vector<float>(row, row + V);
}

// After a reply: the conversation before that reply's tokens, generated from scratch, gives the
// same tokens, and the cached path's first logits equal a fresh prefill's. Tolerance: cached
// decode logits match a full forward to 1e-5 (Model.IncrementalDecodeMatchesFullForward); the
// turn's tokens go through several decode steps, so 1e-4 here.
void expect_same_as_from_scratch(model::Qwen3VLModel& m, const infer::ChatSession& s,
                                 const infer::GenerateResult& reply, const data::Tokenizer& tok,
                                 const infer::GenerateConfig& gc) {
  const std::vector<int32_t>& h = s.history();
  ASSERT_GE(h.size(), reply.tokens.size());
  const std::vector<int32_t> before(h.begin(), h.end() - reply.tokens.size());
  EXPECT_LT(max_abs_diff(s.first_logits(), fresh_last_logits(m, before, s.images())), 1e-4f);
  infer::GenerateConfig fresh = gc;
  fresh.sampling.end_ids = infer::StopTokens::qwen(tok).ids;
  const auto r = infer::generate(m, infer::inputs_for(before, s.images(), m.config()), fresh,
                                 infer::StopTokens::qwen(tok));
  EXPECT_EQ(r.tokens, reply.tokens);
}

std::vector<int32_t> encode(const data::Tokenizer& tok, const std::string& text) {
  return tok.encode(text);
}

TEST(ChatSession, LaterTurnsFromTheCacheEqualTheWholeConversationFromScratch) {
  const std::string dir = save_tiny_model("text");
  auto m = model::Qwen3VLModel::from_pretrained(dir);
  const auto tok = data::Tokenizer::load(testing::kTokenizer);
  const infer::GenerateConfig gc = n_tokens(5);
  infer::ChatSession s(*m, tok, infer::image_config_for_model(dir, m->config()), gc, "Be brief.");
  const auto r1 = s.reply("Hello there", {});
  ASSERT_EQ(r1.tokens.size(), 5u);
  EXPECT_EQ(s.cached_tokens(), static_cast<int64_t>(s.history().size()) - 1);
  const auto r2 = s.reply("And then?", {});
  ASSERT_EQ(r2.tokens.size(), 5u);
  EXPECT_EQ(s.full_prefills(), 1);  // the second turn came from the cache
  // Only the new tokens went through the model: the first answer's last token and the turn.
  const std::vector<int32_t> turn2 =
      encode(tok, "<|im_end|>\n" + infer::user_turn("And then?", {}));
  EXPECT_EQ(r2.prompt_tokens, static_cast<int64_t>(turn2.size()) + 1);
  // The history is the rendered conversation with the answers' ids as sampled.
  std::vector<int32_t> want = encode(
      tok, "<|im_start|>system\nBe brief.<|im_end|>\n" + infer::user_turn("Hello there", {}));
  want.insert(want.end(), r1.tokens.begin(), r1.tokens.end());
  want.insert(want.end(), turn2.begin(), turn2.end());
  want.insert(want.end(), r2.tokens.begin(), r2.tokens.end());
  EXPECT_EQ(s.history(), want);
  expect_same_as_from_scratch(*m, s, r2, tok, gc);
}

TEST(ChatSession, ImageTurnAndTheTurnAfterItEqualTheConversationFromScratch) {
  const std::string dir = save_tiny_model("image");
  auto m = model::Qwen3VLModel::from_pretrained(dir);
  const auto tok = data::Tokenizer::load(testing::kTokenizer);
  const infer::GenerateConfig gc = n_tokens(4);
  infer::ChatSession s(*m, tok, infer::image_config_for_model(dir, m->config()), gc);
  s.reply("Hi", {});
  const auto r2 = s.reply("What is this?", {read_image(kImage)});
  EXPECT_EQ(s.full_prefills(), 2);  // a turn with an image prefills the conversation again
  ASSERT_EQ(s.images().size(), 1u);
  expect_same_as_from_scratch(*m, s, r2, tok, gc);
  // A text turn after the image: cached decode with the image's rope offset.
  const auto r3 = s.reply("Tell me more.", {});
  EXPECT_EQ(s.full_prefills(), 2);
  expect_same_as_from_scratch(*m, s, r3, tok, gc);
}

TEST(ChatSession, CliChatOnStdinPrintsWhatTheLibraryAnswers) {
  const std::string dir = save_tiny_model("cli");
  auto m = model::Qwen3VLModel::from_pretrained(dir);
  const auto tok = data::Tokenizer::load(testing::kTokenizer);
  infer::GenerateConfig gc = n_tokens(6);
  gc.sampling.end_ids = infer::StopTokens::qwen(tok).ids;
  gc.sampling.repetition_penalty = 1.3;
  infer::ChatSession s(*m, tok, infer::image_config_for_model(dir, m->config()), gc, "Be brief.");
  std::string want;
  for (const auto& [text, images] :
       std::vector<std::pair<std::string, std::vector<data::RgbImage>>>{
           {"Hello there", {}}, {"What is this?", {read_image(kImage)}}, {"Thanks", {}}})
    want += tok.decode(s.reply(text, images).tokens) + "\n";
  const std::string script = testing::fresh_dir("ChatSession", "script.txt");
  std::ofstream(script) << "Hello there\n/image " << kImage << "\nWhat is this?\n\nThanks\n/exit\n"
                        << "never read\n";
  std::string cmd = QWEN3VL_BINARY;
  cmd += " generate --model " + dir + " --tokenizer " + testing::kTokenizer;
  const auto cli = testing::run_shell("(" + cmd +
                                      " --system 'Be brief.' --max-new-tokens 6 --min-new-tokens 6 "
                                      "--repetition-penalty 1.3 < " +
                                      script + " 2>/dev/null)");
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_EQ(cli.output, want);
  // stderr says when an image is attached.
  const auto err =
      testing::run_shell("(" + cmd + " --max-new-tokens 2 < " + script + " 2>&1 >/dev/null)");
  EXPECT_NE(err.output.find("attached to the next turn"), std::string::npos) << err.output;
}

TEST(RepetitionPenalty, MatchesAHandExampleWithTransformersSemantics) {
  // Positive logits are divided, negative ones multiplied, once per distinct id in the context
  // (id 1 appears twice); ids not in the context keep their logits.
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f};
  infer::apply_repetition_penalty(logits, {0, 1, 1}, 2.0);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -2.0f, 0.5f, 3.0f}));
  // Greedy: 3.0 (id 0, in the context) / 1.5 = 2.0 loses to 2.9 (id 1).
  infer::SamplingConfig c;
  c.repetition_penalty = 1.5;
  infer::Sampler sampler(c);
  EXPECT_EQ(sampler.next({3.0f, 2.9f}, {0}), 1);
  EXPECT_EQ(sampler.next({3.0f, 2.9f}, {}), 0);
  c.repetition_penalty = 1.0;  // off
  infer::Sampler off(c);
  EXPECT_EQ(off.next({3.0f, 2.9f}, {0}), 0);
}

TEST(GenerationConfig, DefaultsComeFromTheModelFolder) {
  const std::string dir = save_tiny_model("genconfig");
  // save_hf_checkpoint writes no generation_config.json: the built-in defaults stay.
  std::filesystem::remove(dir + "/generation_config.json");
  infer::GenerateConfig base;
  auto gc = infer::generation_config_for_model(dir, base);
  EXPECT_EQ(gc.max_new_tokens, 64);
  EXPECT_EQ(gc.sampling.temperature, 0.0);
  // Qwen3-VL-2B-Instruct's values (its generation_config.json), plus a token limit.
  std::ofstream(dir + "/generation_config.json")
      << R"({"bos_token_id": 151643, "do_sample": true, "eos_token_id": [151645, 151643],
            "pad_token_id": 151643, "temperature": 0.7, "top_k": 20, "top_p": 0.8,
            "repetition_penalty": 1.05, "max_new_tokens": 3})";
  gc = infer::generation_config_for_model(dir, base);
  EXPECT_DOUBLE_EQ(gc.sampling.temperature, 0.7);
  EXPECT_EQ(gc.sampling.top_k, 20);
  EXPECT_DOUBLE_EQ(gc.sampling.top_p, 0.8);
  EXPECT_DOUBLE_EQ(gc.sampling.repetition_penalty, 1.05);
  EXPECT_EQ(gc.max_new_tokens, 3);
  // The CLI uses them (3 new tokens) unless a flag says otherwise.
  const std::string cmd = std::string(QWEN3VL_BINARY) + " generate --model " + dir +
                          " --tokenizer " + testing::kTokenizer + " --prompt hi --min-new-tokens 9";
  auto r = testing::run_shell(cmd + " 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("; 3 new tokens"), std::string::npos) << r.output;
  r = testing::run_shell(cmd + " --max-new-tokens 4 2>&1");
  EXPECT_NE(r.output.find("; 4 new tokens"), std::string::npos) << r.output;
  // do_sample = false: greedy whatever the temperature.
  std::ofstream(dir + "/generation_config.json") << R"({"do_sample": false, "temperature": 0.7})";
  EXPECT_EQ(infer::generation_config_for_model(dir, base).sampling.temperature, 0.0);
  std::ofstream(dir + "/generation_config.json") << R"({"temperature": "hot"})";
  try {
    infer::generation_config_for_model(dir, base);
    ADD_FAILURE() << "a string temperature was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("temperature must be a number"), std::string::npos);
  }
}

TEST(GenerateBf16, Bf16CheckpointRunsOnTheBf16CopiesLikeTheLibrary) {
  const std::string dir = save_tiny_model("bf16", DType::kBF16);
  ASSERT_TRUE(infer::checkpoint_is_bf16(dir));
  EXPECT_FALSE(infer::checkpoint_is_bf16(save_tiny_model("f32")));
  auto m = model::Qwen3VLModel::from_pretrained(dir);
  const auto tok = data::Tokenizer::load(testing::kTokenizer);
  const model::ModelInputs prompt =
      infer::build_prompt("Hello", infer::PromptStyle::kChat, {}, tok,
                          infer::image_config_for_model(dir, m->config()), m->config());
  infer::GenerateConfig gc = n_tokens(8);
  gc.sampling.end_ids = infer::StopTokens::qwen(tok).ids;
  const auto f32 = infer::generate(*m, prompt, gc, infer::StopTokens::qwen(tok));
  std::vector<float> f32_logits =
      fresh_last_logits(*m, tok.encode(infer::user_turn("Hello", {})), {});
  m->enable_bf16_matmuls();
  const auto bf16 = infer::generate(*m, prompt, gc, infer::StopTokens::qwen(tok));
  // The bf16 path really runs: logits move (bf16 GEMM inputs), by no more than bf16 rounding
  // of activations allows on this tiny model (bound 5e-2: logits here are O(1)).
  const float moved = max_abs_diff(
      f32_logits, fresh_last_logits(*m, tok.encode(infer::user_turn("Hello", {})), {}));
  EXPECT_GT(moved, 0.0f);
  EXPECT_LT(moved, 5e-2f);
  std::string cmd = QWEN3VL_BINARY;
  cmd += " generate --model " + dir + " --tokenizer " + testing::kTokenizer;
  cmd += " --prompt Hello --max-new-tokens 8 --min-new-tokens 8";
  const auto cli = testing::run_shell("(" + cmd + " 2>/dev/null)");
  ASSERT_EQ(cli.exit_code, 0) << cli.output;
  EXPECT_EQ(cli.output, tok.decode(bf16.tokens) + "\n");
  const auto cli32 = testing::run_shell("(" + cmd + " --dtype float32 2>/dev/null)");
  EXPECT_EQ(cli32.output, tok.decode(f32.tokens) + "\n");
}

}  // namespace
}  // namespace qv
