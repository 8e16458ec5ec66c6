// The model's unit hooks, in one process: a unit's parameters are read only between gather()
// and release() (the embedding table's only the rows its lookup asks for with gather_rows()), its
// gradient is final at grads_ready(), and a rank without images makes the same
// vision-unit calls as one with images (each call is a collective under sharding).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "model/qwen3vl.h"
#include "model_test_utils.h"

namespace qv {
namespace {

using model::Grid;
using model::ModelInputs;

// Poisons a released unit's parameters with NaN (restoring them on gather), and records calls
// and each unit's gradient at its last grads_ready().
class PoisoningHooks final : public model::UnitHooks {
 public:
  explicit PoisoningHooks(model::ParamStore& s) : s_(s), saved_(s.units().size()) {
    for (size_t u = 0; u < s.units().size(); ++u) release(static_cast<int>(u));
    calls.clear();
    grads_at_ready.assign(s.units().size(), {});
  }
  void gather(int u) override {
    calls.push_back("g" + std::to_string(u));
    const auto& unit = s_.units()[u];
    ASSERT_FALSE(saved_[u].empty()) << "unit " << unit.name << " gathered twice";
    std::copy(saved_[u].begin(), saved_[u].end(), s_.values().data() + unit.begin);
    saved_[u].clear();
    rows_only_.erase(u);
  }
  // Only the rows asked for come back; the rest of the unit stays NaN.
  void gather_rows(int u, int64_t table, int64_t rows, int64_t cols, const int64_t* ids,
                   int64_t n) override {
    calls.push_back("g" + std::to_string(u));
    const auto& unit = s_.units()[u];
    ASSERT_FALSE(saved_[u].empty()) << "unit " << unit.name << " gathered twice";
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_TRUE(ids[i] >= 0 && ids[i] < rows);
      const int64_t at = table + ids[i] * cols - unit.begin;
      std::copy_n(saved_[u].begin() + at, cols, s_.values().data() + unit.begin + at);
    }
    rows_only_.insert(u);
  }
  void release(int u) override {
    calls.push_back("r" + std::to_string(u));
    const auto& unit = s_.units()[u];
    float* v = s_.values().data() + unit.begin;
    if (rows_only_.erase(u) == 0) saved_[u].assign(v, v + (unit.end - unit.begin));
    std::fill(v, v + (unit.end - unit.begin), std::numeric_limits<float>::quiet_NaN());
  }
  void grads_ready(int u) override {
    calls.push_back("d" + std::to_string(u));
    const auto& unit = s_.units()[u];
    const float* g = s_.grads().data() + unit.begin;
    grads_at_ready[u].assign(g, g + (unit.end - unit.begin));
  }
  bool all_released() const {
    for (const auto& v : saved_)
      if (v.empty()) return false;
    return true;
  }
  std::vector<std::string> calls;
  std::vector<std::vector<float>> grads_at_ready;

 private:
  model::ParamStore& s_;
  std::vector<std::vector<float>> saved_;
  std::set<int> rows_only_;  // units gathered by rows (their saved values are still whole)
};

std::unique_ptr<model::Qwen3VLModel> tiny_model(bool tied) {
  auto c = testing::tiny_config();
  c.tie_word_embeddings = tied;
  auto m = std::make_unique<model::Qwen3VLModel>(c);
  model::init_params(m->config(), m->store(), 11);
  return m;
}

// Text, an image (4 merged tokens) and a video (8), with labels.
ModelInputs vision_batch(const model::ModelConfig& c, bool image, bool video) {
  ModelInputs in;
  std::vector<int64_t> ids = {5, 6, 7};
  if (image) testing::append_vision(ids, c, 4);
  ids.push_back(8);
  if (video) testing::append_vision(ids, c, 8, true);
  ids.push_back(9);
  in.batch = 1;
  in.seq = static_cast<int64_t>(ids.size());
  in.input_ids = ids;
  in.labels = ids;
  if (image) {
    in.pixel_values = testing::random_pixels(16, c.vision.patch_dim(), 1);
    in.image_grids = {Grid{1, 4, 4}};
  }
  if (video) {
    in.pixel_values_videos = testing::random_pixels(32, c.vision.patch_dim(), 2);
    in.video_grids = {Grid{2, 4, 4}};
  }
  return in;
}

double train_pass(model::Qwen3VLModel& m, const ModelInputs& in, const std::string& ac,
                  int64_t vision_passes = 0) {
  model::ForwardOptions o;
  o.backward = true;
  o.checkpointing = model::Checkpointing::parse(ac, "2");
  o.vision_passes = vision_passes;
  m.store().zero_grads();
  const double loss = m.forward(in, o).loss;
  m.backward();
  return loss;
}

class DistUnitHooks : public ::testing::TestWithParam<std::tuple<bool, const char*>> {};

TEST_P(DistUnitHooks, ParametersAreReadOnlyWhileGatheredAndGradientsAreFinalWhenReady) {
  const auto [tied, ac] = GetParam();
  auto plain = tiny_model(tied), hooked = tiny_model(tied);
  const ModelInputs in = vision_batch(plain->config(), true, true);
  const double want = train_pass(*plain, in, ac);
  PoisoningHooks hooks(hooked->store());
  hooked->set_unit_hooks(&hooks);
  const double got = train_pass(*hooked, in, ac);
  EXPECT_EQ(got, want);  // a NaN read anywhere would show here
  EXPECT_TRUE(hooks.all_released());
  const auto& units = hooked->store().units();
  for (size_t u = 0; u < units.size(); ++u) {
    const float* g = hooked->store().grads().data() + units[u].begin;
    const float* w = plain->store().grads().data() + units[u].begin;
    ASSERT_EQ(hooks.grads_at_ready[u].size(), static_cast<size_t>(units[u].end - units[u].begin))
        << "no grads_ready for unit " << units[u].name;
    for (int64_t i = 0; i < units[u].end - units[u].begin; ++i) {
      ASSERT_EQ(g[i], w[i]) << units[u].name << " " << i;
      ASSERT_EQ(hooks.grads_at_ready[u][i], w[i]) << units[u].name << " changed after grads_ready";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TiedAndCheckpointing, DistUnitHooks,
                         ::testing::Combine(::testing::Bool(),
                                            ::testing::Values("none", "selective", "full")));

// The calls on vision units only.
std::vector<std::string> vision_calls(const model::Qwen3VLModel& m,
                                      const std::vector<std::string>& calls) {
  std::vector<std::string> out;
  for (const auto& c : calls)
    if (m.store().units()[std::stoi(c.substr(1))].name.rfind("visual.", 0) == 0) out.push_back(c);
  return out;
}

TEST(DistUnitHooksIdle, ARankWithoutImagesMakesTheSameVisionCalls) {
  auto m = tiny_model(false);
  PoisoningHooks hooks(m->store());
  m->set_unit_hooks(&hooks);
  const auto& c = m->config();
  train_pass(*m, vision_batch(c, true, true), "none");
  const auto both = vision_calls(*m, hooks.calls);
  hooks.calls.clear();
  train_pass(*m, vision_batch(c, true, false), "none", 2);
  EXPECT_EQ(vision_calls(*m, hooks.calls), both) << "image + one idle pass";
  hooks.calls.clear();
  train_pass(*m, vision_batch(c, false, false), "none", 2);
  EXPECT_EQ(vision_calls(*m, hooks.calls), both) << "two idle passes";
  EXPECT_FALSE(m->used_vision());
  EXPECT_TRUE(hooks.all_released());
}

TEST(DistParamUnits, UnitsAreAlignedAndRelayoutKeepsValues) {
  auto m = tiny_model(false);
  const std::vector<float> before = m->store().values().to_vector();
  const auto& e0 = m->store().entries();
  std::vector<std::vector<float>> per_param;
  for (const auto& e : e0)
    per_param.emplace_back(m->store().value(e.ref), m->store().value(e.ref) + e.ref.numel);
  m->store().set_frozen_prefix("model.visual.", true);
  const int64_t align = 3 * PageBuffer::floats_per_page();
  m->relayout(align);
  const auto& s = m->store();
  EXPECT_EQ(s.total() % align, 0);
  for (const auto& u : s.units()) {
    EXPECT_EQ(u.begin % align, 0) << u.name;
    EXPECT_EQ(u.end % align, 0) << u.name;
  }
  for (size_t i = 0; i < s.entries().size(); ++i) {
    const auto& e = s.entries()[i];
    EXPECT_EQ(s.frozen(i), e.is_vision);
    for (int64_t j = 0; j < e.ref.numel; ++j) ASSERT_EQ(s.value(e.ref)[j], per_param[i][j]);
  }
}

TEST(DistPageBuffer, DiscardedPagesReadAsZero) {
  const int64_t fpp = PageBuffer::floats_per_page();
  PageBuffer b(4 * fpp);
  for (int64_t i = 0; i < b.size(); ++i) b[i] = 1.0f;
  b.discard(fpp, 2 * fpp);
  EXPECT_EQ(b[fpp - 1], 1.0f);
  EXPECT_EQ(b[fpp], 0.0f);
  EXPECT_EQ(b[3 * fpp - 1], 0.0f);
  EXPECT_EQ(b[3 * fpp], 1.0f);
  EXPECT_THROW(b.discard(1, fpp), Error);
}

}  // namespace
}  // namespace qv
