// Model behaviour beyond the fixtures: packing, padding, videos, mixed image/video DeepStack
// order, input validation, parameter counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "model/qwen3vl.h"
#include "model_test_utils.h"

namespace qv {
namespace {

using model::Grid;
using model::ModelInputs;

std::unique_ptr<model::Qwen3VLModel> tiny_model(uint64_t seed = 7) {
  auto m = std::make_unique<model::Qwen3VLModel>(testing::tiny_config());
  model::init_params(m->config(), m->store(), seed);
  // Perturb norms and biases too, so no weight is a neutral 1 or 0.
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.1f);
  for (const auto& e : m->store().entries())
    if (!e.is_matrix)
      for (int64_t i = 0; i < e.ref.numel; ++i) m->store().value(e.ref)[i] += n(rng);
  return m;
}

model::ForwardResult run(model::Qwen3VLModel& m, const ModelInputs& in, bool backward = false) {
  model::ForwardOptions o;
  o.want_logits = true;
  o.backward = backward;
  if (backward) m.store().zero_grads();
  auto r = m.forward(in, o);
  if (backward) m.backward();
  return r;
}

double max_diff(const float* a, const float* b, int64_t n) {
  double d = 0;
  for (int64_t i = 0; i < n; ++i) d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
  return d;
}

TEST(Model, PackedRowEqualsSeparateRows) {
  auto m = tiny_model();
  const int64_t V = m->config().text.vocab_size;
  const std::vector<int64_t> a = {3, 9, 27, 81, 15, 45}, b = {2, 4, 8, 16, 32, 64};
  ModelInputs sep;
  sep.batch = 2;
  sep.seq = 6;
  sep.input_ids = a;
  sep.input_ids.insert(sep.input_ids.end(), b.begin(), b.end());
  sep.labels = sep.input_ids;
  ModelInputs packed = sep;
  packed.batch = 1;
  packed.seq = 12;
  packed.document_ids = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1};
  const auto rs = run(*m, sep, true);
  const std::vector<float> grads_sep = m->store().grads().to_vector();
  const auto rp = run(*m, packed, true);
  EXPECT_LT(max_diff(rs.logits.data<float>(), rp.logits.data<float>(), 12 * V), 1e-5);
  EXPECT_EQ(rs.kept_tokens, rp.kept_tokens);  // no target crosses the document boundary
  EXPECT_NEAR(rs.loss, rp.loss, 1e-6);
  EXPECT_LT(max_diff(grads_sep.data(), m->store().grads().data(), m->store().total()), 1e-6);
}

TEST(Model, RightPaddingDoesNotChangeValidTokens) {
  auto m = tiny_model();
  const int64_t V = m->config().text.vocab_size;
  ModelInputs plain;
  plain.batch = 1;
  plain.seq = 4;
  plain.input_ids = {5, 6, 7, 8};
  ModelInputs padded = plain;
  padded.seq = 7;
  padded.input_ids = {5, 6, 7, 8, 0, 0, 0};
  padded.attention_mask = {1, 1, 1, 1, 0, 0, 0};
  const auto r1 = run(*m, plain), r2 = run(*m, padded);
  EXPECT_LT(max_diff(r1.logits.data<float>(), r2.logits.data<float>(), 4 * V), 1e-5);
}

ModelInputs image_then_text(const model::ModelConfig& c, bool as_video, const Tensor& pixels) {
  ModelInputs in;
  in.input_ids = {11, 12};
  testing::append_vision(in.input_ids, c, 2, as_video);  // grid 1 x 2 x 4 -> 2 merged tokens
  in.input_ids.push_back(13);
  in.batch = 1;
  in.seq = static_cast<int64_t>(in.input_ids.size());
  in.labels = in.input_ids;
  (as_video ? in.pixel_values_videos : in.pixel_values) = pixels;
  (as_video ? in.video_grids : in.image_grids) = {Grid{1, 2, 4}};
  return in;
}

TEST(Model, SingleFrameVideoEqualsImage) {
  auto m = tiny_model();
  const auto& c = m->config();
  const Tensor px = testing::random_pixels(8, c.vision.patch_dim(), 1);
  const auto ri = run(*m, image_then_text(c, false, px));
  const auto rv = run(*m, image_then_text(c, true, px));
  EXPECT_LT(max_diff(ri.logits.data<float>(), rv.logits.data<float>(), ri.logits.numel()), 1e-6);
}

TEST(Model, MixedVideoAndImageKeepSequenceOrderForDeepStack) {
  auto m = tiny_model();
  const auto& c = m->config();
  const Tensor p1 = testing::random_pixels(8, c.vision.patch_dim(), 2);
  const Tensor p2 = testing::random_pixels(8, c.vision.patch_dim(), 3);
  // Reference: two images in order (p1, p2).
  ModelInputs ref;
  ref.input_ids = {11};
  testing::append_vision(ref.input_ids, c, 2);
  ref.input_ids.push_back(12);
  testing::append_vision(ref.input_ids, c, 2);
  ref.batch = 1;
  ref.seq = static_cast<int64_t>(ref.input_ids.size());
  Tensor both(DType::kF32, {16, c.vision.patch_dim()});
  std::memcpy(both.data<float>(), p1.data<float>(), p1.nbytes());
  std::memcpy(both.data<float>() + p1.numel(), p2.data<float>(), p2.nbytes());
  ref.pixel_values = both;
  ref.image_grids = {{1, 2, 4}, {1, 2, 4}};
  // Same content with the first block a (single-frame) video: video features come first in the
  // sequence although HF concatenates image features before video features.
  ModelInputs mixed = ref;
  for (int64_t i = 2; i < 4; ++i) mixed.input_ids[i] = c.video_token_id;
  mixed.pixel_values_videos = p1;
  mixed.video_grids = {{1, 2, 4}};
  mixed.pixel_values = p2;
  mixed.image_grids = {{1, 2, 4}};
  const auto r1 = run(*m, ref), r2 = run(*m, mixed);
  EXPECT_LT(max_diff(r1.logits.data<float>(), r2.logits.data<float>(), r1.logits.numel()), 1e-5);
  // Control: with the video's and image's pixels swapped the outputs must differ clearly.
  std::swap(mixed.pixel_values_videos, mixed.pixel_values);
  const auto r3 = run(*m, mixed);
  EXPECT_GT(max_diff(r1.logits.data<float>(), r3.logits.data<float>(), r1.logits.numel()), 1e-3);
}

TEST(Model, BackwardThroughVideoTowerRuns) {
  auto m = tiny_model();
  const auto& c = m->config();
  ModelInputs in;
  in.input_ids = {1};
  testing::append_vision(in.input_ids, c, 2, true);
  in.input_ids.push_back(2);
  testing::append_vision(in.input_ids, c, 2, true);
  in.batch = 1;
  in.seq = static_cast<int64_t>(in.input_ids.size());
  in.labels = in.input_ids;
  in.pixel_values_videos = testing::random_pixels(16, c.vision.patch_dim(), 4);
  in.video_grids = {{2, 2, 4}};  // two temporal patches, each its own frame block
  const auto r = run(*m, in, true);
  EXPECT_TRUE(std::isfinite(r.loss));
  const auto* e = m->store().find("model.visual.patch_embed.proj.weight");
  double norm = 0;
  for (int64_t i = 0; i < e->ref.numel; ++i)
    norm += std::fabs(m->store().grads()[e->ref.offset + i]);
  EXPECT_GT(norm, 0);
}

TEST(Model, PlaceholderCountMismatchIsAClearError) {
  auto m = tiny_model();
  const auto& c = m->config();
  ModelInputs in = image_then_text(c, false, testing::random_pixels(8, c.vision.patch_dim(), 1));
  in.input_ids[3] = 50;  // one placeholder fewer than the grid's 2 merged tokens
  try {
    run(*m, in);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("image tokens do not match"), std::string::npos)
        << e.what();
  }
}

TEST(Model, GridNotDivisibleByMergeIsAClearError) {
  auto m = tiny_model();
  const auto& c = m->config();
  ModelInputs in = image_then_text(c, false, testing::random_pixels(6, c.vision.patch_dim(), 1));
  in.image_grids = {{1, 2, 3}};
  try {
    run(*m, in);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not divisible by spatial_merge_size"), std::string::npos)
        << e.what();
  }
}

TEST(Model, PatchWidthMismatchIsAClearError) {
  auto m = tiny_model();
  const auto& c = m->config();
  ModelInputs in =
      image_then_text(c, false, testing::random_pixels(8, c.vision.patch_dim() + 1, 1));
  try {
    run(*m, in);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("C*T*P*P"), std::string::npos) << e.what();
  }
}

TEST(Model, TokenOutsideVocabularyIsAClearError) {
  auto m = tiny_model();
  ModelInputs in;
  in.batch = 1;
  in.seq = 2;
  in.input_ids = {1, 100000};
  EXPECT_THROW(run(*m, in), Error);
}

TEST(Config, ParamCountFormulaMatchesLayout) {
  for (bool tied : {false, true}) {
    auto c = testing::tiny_config();
    c.tie_word_embeddings = tied;
    model::Qwen3VLModel m(c);
    int64_t vision = 0, text = 0;
    for (const auto& e : m.store().entries()) (e.is_vision ? vision : text) += e.ref.numel;
    const auto n = model::count_params(c);
    EXPECT_EQ(n.vision, vision);
    EXPECT_EQ(n.text, text);
  }
}

TEST(Config, FlavorsAreValidAndUnknownNamesListChoices) {
  for (const auto& name : model::ModelConfig::flavor_names())
    EXPECT_NO_THROW(model::ModelConfig::flavor(name)) << name;
  try {
    model::ModelConfig::flavor("13B");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("debugmodel"), std::string::npos);
  }
}

TEST(Config, JsonRoundTripAndBadFields) {
  const auto c = model::ModelConfig::flavor("2B");
  const auto back = model::ModelConfig::from_json_text(c.to_json_text(), "roundtrip");
  EXPECT_EQ(back.to_json_text(), c.to_json_text());
  EXPECT_TRUE(back.tie_word_embeddings);
  EXPECT_THROW(model::ModelConfig::from_json_text("{\"text_config\": {}}", "x.json"), Error);
  EXPECT_THROW(
      model::ModelConfig::from_json_text(
          "{\"text_config\": {\"hidden_size\": \"big\"}, \"vision_config\": {}}", "x.json"),
      Error);
}

}  // namespace
}  // namespace qv

namespace qv {
namespace {

TEST(Model, ActivationCheckpointingGivesIdenticalGradients) {
  auto m = tiny_model();
  const auto& c = m->config();
  ModelInputs in = image_then_text(c, false, testing::random_pixels(8, c.vision.patch_dim(), 9));
  std::vector<float> reference;
  double ref_loss = 0;
  // Decoder layers and vision blocks recomputed: none; every second / third / each one counted
  // over both (torchtitan's layer counter); per-op ("op": all of both); full.
  for (const char* mode :
       {"none", "selective:2", "selective:3", "selective:1", "selective:op", "full"}) {
    const std::string m_str = mode;
    const size_t colon = m_str.find(':');
    model::ForwardOptions o;
    o.backward = true;
    o.checkpointing = model::Checkpointing::parse(
        m_str.substr(0, colon), colon != std::string::npos ? m_str.substr(colon + 1) : "2");
    m->store().zero_grads();
    const auto r = m->forward(in, o);
    m->backward();
    if (reference.empty()) {
      reference = m->store().grads().to_vector();
      ref_loss = r.loss;
      // The vision tower took part: its gradients are in the comparison.
      const auto& blk = m->params().vision.blocks[0].fc1_w;
      const float* g = m->store().grad(blk);
      EXPECT_NE(std::count(g, g + blk.numel, 0.0f), blk.numel);
      continue;
    }
    EXPECT_EQ(r.loss, ref_loss) << mode;
    EXPECT_EQ(m->store().grads().to_vector(), reference) << mode;  // recomputation is bit-identical
  }
}

}  // namespace
}  // namespace qv

namespace qv {
namespace {

TEST(Model, IncrementalDecodeMatchesFullForward) {
  auto m = tiny_model();
  const auto& c = m->config();
  // Prompt with an image; then three more tokens decoded one by one.
  ModelInputs full = image_then_text(c, false, testing::random_pixels(8, c.vision.patch_dim(), 5));
  full.labels.clear();
  const std::vector<int64_t> extra = {40, 41, 42};
  ModelInputs prompt = full;
  full.input_ids.insert(full.input_ids.end(), extra.begin(), extra.end());
  full.seq += 3;
  const auto ref = run(*m, full);
  model::KvCache cache;
  model::ForwardOptions o;
  o.want_logits = true;
  o.kv_cache = &cache;
  m->forward(prompt, o);
  const int64_t V = c.text.vocab_size;
  for (size_t i = 0; i < extra.size(); ++i) {
    const auto logits = m->decode(extra[i], cache);
    const float* want = ref.logits.data<float>() + (prompt.seq + i) * V;
    EXPECT_LT(max_diff(logits.data(), want, V), 1e-5) << "token " << i;
  }
}

}  // namespace
}  // namespace qv
