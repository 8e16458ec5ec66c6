// infer::generate and its pieces: the KV-cached decode loop against greedy decoding by full
// forwards, stop tokens and the token limit, UTF-8 holdback on characters split between tokens,
// and the library giving exactly what `qwen3vl generate` prints (dense and mixture-of-experts
// checkpoints).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_test_utils.h"
#include "data/image/image_decode.h"
#include "data/tokenizer/tokenizer.h"
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

namespace fs = std::filesystem;

const std::string kFixtures = std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures";
constexpr std::string_view kFffd = "\xEF\xBF\xBD";  // U+FFFD

model::ModelInputs one_row(const std::vector<int64_t>& ids) {
  model::ModelInputs in;
  in.batch = 1;
  in.seq = static_cast<int64_t>(ids.size());
  in.input_ids = ids;
  return in;
}

// Greedy decoding without a cache: a full forward over prompt + tokens so far for every new
// token. Also returns the smallest gap between the chosen logit and the runner-up.
std::vector<int32_t> greedy_by_full_forward(model::Qwen3VLModel& m, std::vector<int64_t> ids,
                                            int64_t steps, float& min_gap) {
  const int64_t V = m.config().text.vocab_size;
  std::vector<int32_t> out;
  min_gap = 1e30f;
  for (int64_t s = 0; s < steps; ++s) {
    model::ForwardOptions o;
    o.want_logits = true;
    const model::ForwardResult r = m.forward(one_row(ids), o);
    const float* row = r.logits.data<float>() + (static_cast<int64_t>(ids.size()) - 1) * V;
    std::vector<float> sorted(row, row + V);
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
    min_gap = std::min(min_gap, sorted[0] - sorted[1]);
    const int32_t next = static_cast<int32_t>(std::max_element(row, row + V) - row);
    out.push_back(next);
    ids.push_back(next);
  }
  return out;
}

TEST(Generate, GreedyEqualsFullForwardGreedyOnTheTinyFixture) {
  auto m = model::Qwen3VLModel::from_pretrained(kFixtures + "/hf-tiny-text");
  const std::vector<int64_t> prompt = {3, 141, 59, 265, 35, 89, 79, 323};
  constexpr int64_t kSteps = 8;  // eight different tokens (the ninth repeats the eighth)
  float min_gap = 0;
  const std::vector<int32_t> want = greedy_by_full_forward(*m, prompt, kSteps, min_gap);
  // Cached decode logits match a full forward to 1e-5 (Model.IncrementalDecodeMatchesFullForward);
  // with every choice here ahead of the runner-up by more than 1e-3 the tokens must be equal.
  ASSERT_GT(min_gap, 1e-3f);

  infer::GenerateConfig gc;
  gc.max_new_tokens = kSteps;
  std::vector<int32_t> streamed;
  const infer::GenerateResult r = infer::generate(*m, one_row(prompt), gc, infer::StopTokens{},
                                                  [&](int32_t id) { streamed.push_back(id); });
  EXPECT_EQ(r.tokens, want);
  EXPECT_EQ(streamed, want);
  EXPECT_EQ(r.prompt_tokens, static_cast<int64_t>(prompt.size()));
}

TEST(Generate, StopsAtAStopTokenAndAtTheLimit) {
  auto m = model::Qwen3VLModel::from_pretrained(kFixtures + "/hf-tiny-text");
  const std::vector<int64_t> prompt = {3, 141, 59, 265, 35, 89, 79, 323};
  infer::GenerateConfig gc;
  gc.max_new_tokens = 8;
  const std::vector<int32_t> all = infer::generate(*m, one_row(prompt), gc, {}).tokens;
  ASSERT_EQ(all.size(), 8u);
  // The first token that differs from the ones before it, so the stop falls exactly there.
  size_t k = 1;
  while (k < all.size() && std::find(all.begin(), all.begin() + k, all[k]) != all.begin() + k) ++k;
  ASSERT_LT(k, all.size()) << "greedy output repeats one token";
  infer::StopTokens stop;
  stop.ids = {all[k]};
  std::vector<int32_t> streamed;
  const auto stopped =
      infer::generate(*m, one_row(prompt), gc, stop, [&](int32_t id) { streamed.push_back(id); });
  EXPECT_EQ(stopped.tokens, std::vector<int32_t>(all.begin(), all.begin() + k));
  EXPECT_EQ(streamed, stopped.tokens);
  gc.max_new_tokens = 3;
  EXPECT_EQ(infer::generate(*m, one_row(prompt), gc, {}).tokens,
            std::vector<int32_t>(all.begin(), all.begin() + 3));
  gc.max_new_tokens = 0;
  EXPECT_TRUE(infer::generate(*m, one_row(prompt), gc, {}).tokens.empty());
}

TEST(Generate, HoldbackWaitsForTheRestOfASplitCharacter) {
  infer::Utf8Holdback h;
  EXPECT_EQ(h.next("a"), "a");
  EXPECT_EQ(h.next(std::string("a") + std::string(kFffd)), "");  // the start of a character
  EXPECT_EQ(h.next("a\xC3\xA9"), "\xC3\xA9");                    // completed: é
  EXPECT_EQ(h.next("a\xC3\xA9"), "");                            // nothing new
  const std::string tail = std::string("a\xC3\xA9") + std::string(kFffd);
  EXPECT_EQ(h.next(tail), "");
  EXPECT_EQ(h.finish(tail), kFffd);  // never completed: handed out at the end
  EXPECT_EQ(h.finish(tail), "");
}

// Ids whose tokens are the single bytes of `bytes`, from the tiny byte-level tokenizer.
std::vector<int32_t> byte_ids(const data::Tokenizer& tok, std::string_view bytes) {
  std::vector<int32_t> ids;
  for (char b : bytes) {
    int32_t found = -1;
    for (int32_t id = 0; id < tok.vocab_size() && found < 0; ++id) {
      const int32_t one[] = {id};
      if (tok.decode_bytes(one) == std::string(1, b)) found = id;
    }
    EXPECT_GE(found, 0) << "no token for byte " << static_cast<int>(static_cast<uint8_t>(b));
    ids.push_back(found);
  }
  return ids;
}

TEST(Generate, TextStreamHandsOutWholeCharacters) {
  const auto tok =
      data::Tokenizer::load(std::string(QWEN3VL_SOURCE_DIR) + "/tests/data/tokenizer_tiny.json");
  // "你" is E4 BD A0: three tokens of one byte each, then "a".
  std::vector<int32_t> ids = byte_ids(tok, "\xE4\xBD\xA0");
  ids.push_back(byte_ids(tok, "a")[0]);
  std::vector<std::string> pieces;
  infer::TextStream stream(tok, [&](std::string_view p) { pieces.emplace_back(p); });
  for (int i = 0; i < 3; ++i) {
    stream.push(ids[i]);
    EXPECT_EQ(pieces.size(), i < 2 ? 0u : 1u) << "after byte " << i;
  }
  stream.push(ids[3]);
  stream.finish();
  EXPECT_EQ(pieces, (std::vector<std::string>{"\xE4\xBD\xA0", "a"}));

  // A character that never completes is handed out as U+FFFD, at the latest by finish().
  pieces.clear();
  infer::TextStream cut(tok, [&](std::string_view p) { pieces.emplace_back(p); });
  cut.push(ids[0]);
  cut.push(ids[1]);
  EXPECT_TRUE(pieces.empty());
  cut.finish();
  EXPECT_EQ(pieces, (std::vector<std::string>{std::string(kFffd)}));
  std::string joined;
  for (const auto& p : pieces) joined += p;
  EXPECT_EQ(joined, tok.decode(cut.ids()));
}

// A tiny random model with the real vocabulary, saved as an HF folder the CLI can load.
// moe: every decoder layer sparse (4 experts, 2 per token), as a qwen3_vl_moe checkpoint.
std::string save_tiny_model(bool moe) {
  const std::string dir = testing::fresh_dir("Generate", moe ? "tiny_moe_model" : "tiny_model");
  model::ModelConfig c = testing::small_real_vocab_config();
  if (moe) {
    c.text.num_experts = 4;
    c.text.num_experts_per_tok = 2;
    c.text.moe_intermediate_size = 24;
    c.text.decoder_sparse_step = 1;
  }
  model::Qwen3VLModel m(c);
  model::init_params(c, m.store(), 23);
  model::save_hf_checkpoint(dir, c, m.store());
  return dir;
}

void expect_cli_prints_what_the_library_gives(const std::string& dir) {
  const std::string image = std::string(QWEN3VL_SOURCE_DIR) + "/tests/data/images/000000001.jpg";
  const std::string text = "What is shown?";
  auto m = model::Qwen3VLModel::from_pretrained(dir);
  const auto tok = data::Tokenizer::load(testing::kTokenizer);
  const std::string bytes = io::read_file(image);
  const std::vector<data::RgbImage> images = {
      data::decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), {}, image)};
  const auto icfg = infer::image_config_for_model(dir, m->config());
  const model::ModelInputs prompt =
      infer::build_prompt(text, infer::PromptStyle::kChat, images, tok, icfg, m->config());
  // One vision block: merged tokens of the image's grid, as many patch rows as the grid has.
  const int64_t pads = std::count(prompt.input_ids.begin(), prompt.input_ids.end(),
                                  data::SpecialTokens::lookup(tok).image_pad);
  ASSERT_EQ(prompt.image_grids.size(), 1u);
  EXPECT_EQ(pads, prompt.image_grids[0].patches() / 4);
  EXPECT_EQ(prompt.pixel_values.dim(0), prompt.image_grids[0].patches());

  for (const double temperature : {0.0, 0.9}) {
    infer::GenerateConfig gc;
    gc.max_new_tokens = 12;
    gc.sampling.temperature = temperature;
    gc.sampling.top_k = temperature > 0 ? 50 : 0;
    gc.sampling.seed = 5;
    std::string streamed;
    infer::TextStream stream(tok, [&](std::string_view p) { streamed += p; });
    const auto r = infer::generate(*m, prompt, gc, infer::StopTokens::qwen(tok),
                                   [&](int32_t id) { stream.push(id); });
    stream.finish();
    EXPECT_EQ(streamed, tok.decode(r.tokens));
    ASSERT_FALSE(r.tokens.empty());
    // stdout only: the timing line goes to stderr.
    std::string cmd = "(";
    cmd += std::string(QWEN3VL_BINARY) + " generate --model " + dir;
    cmd += " --tokenizer " + testing::kTokenizer + " --image " + image;
    cmd += " --prompt '" + text + "' --max-new-tokens 12 --seed 5";
    cmd += " --temperature " + std::to_string(temperature);
    if (temperature > 0) cmd += " --top-k 50";
    cmd += " 2>/dev/null)";
    const auto cli = testing::run_shell(cmd);
    ASSERT_EQ(cli.exit_code, 0) << cli.output;
    EXPECT_EQ(cli.output, streamed + "\n") << "temperature " << temperature;
  }
}

TEST(Generate, LibraryGivesWhatTheCliPrints) {
  expect_cli_prints_what_the_library_gives(save_tiny_model(false));
}

// A mixture-of-experts checkpoint loads and generates through the CLI (KV-cached decoding of the
// MoE model against its full forward: MoeModel.IncrementalDecodeMatchesFullForward).
TEST(Generate, MoeCheckpointGeneratesAsTheLibrary) {
  const std::string dir = save_tiny_model(true);
  ASSERT_TRUE(model::Qwen3VLModel::from_pretrained(dir)->config().text.is_moe());
  expect_cli_prints_what_the_library_gives(dir);
}

}  // namespace
}  // namespace qv
