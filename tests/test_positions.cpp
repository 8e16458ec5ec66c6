// Position ids (HF get_rope_index semantics) and rotary tables.
#include <gtest/gtest.h>

#include "model/positions.h"
#include "model_test_utils.h"

namespace qv {
namespace {

using model::Grid;
using model::ModelInputs;

std::vector<int64_t> row(const model::RopeIndex& r, int axis, int64_t tokens) {
  return std::vector<int64_t>(r.positions.begin() + axis * tokens,
                              r.positions.begin() + (axis + 1) * tokens);
}

TEST(RopeIndex, TwoImagesOfDifferentSizes) {
  const auto c = testing::tiny_config();
  ModelInputs in;
  in.input_ids = {1, 2};
  testing::append_vision(in.input_ids, c, 2);  // grid 1x2x4 -> merged 1x2
  in.input_ids.push_back(3);
  testing::append_vision(in.input_ids, c, 4);  // grid 1x4x4 -> merged 2x2
  in.batch = 1;
  in.seq = static_cast<int64_t>(in.input_ids.size());
  in.image_grids = {{1, 2, 4}, {1, 4, 4}};
  const auto r = model::compute_rope_index(c, in);
  // text 0,1; VS 2; image at base 3: (t,h,w) = (3,3,3),(3,3,4); VE 5; text 6; VS 7;
  // image at base 8: h in {8,9}, w in {8,9}; VE 10.
  EXPECT_EQ(row(r, 0, in.seq), (std::vector<int64_t>{0, 1, 2, 3, 3, 5, 6, 7, 8, 8, 8, 8, 10}));
  EXPECT_EQ(row(r, 1, in.seq), (std::vector<int64_t>{0, 1, 2, 3, 3, 5, 6, 7, 8, 8, 9, 9, 10}));
  EXPECT_EQ(row(r, 2, in.seq), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 8, 9, 10}));
  EXPECT_EQ(r.deltas[0], 11 - in.seq);
}

TEST(RopeIndex, VideoFramesAreSplitAndGetTemporalIndexZero) {
  const auto c = testing::tiny_config();
  ModelInputs in;
  // Two temporal patches of a 2x2-merged video, each its own vision block after a timestamp.
  in.input_ids = {5};
  testing::append_vision(in.input_ids, c, 1, true);
  in.input_ids.push_back(6);
  testing::append_vision(in.input_ids, c, 1, true);
  in.batch = 1;
  in.seq = static_cast<int64_t>(in.input_ids.size());
  in.video_grids = {{2, 2, 2}};
  const auto r = model::compute_rope_index(c, in);
  // 5:0 VS:1 vid:2 VE:3 6:4 VS:5 vid:6 VE:7 on every axis (t index 0 for each frame).
  for (int axis = 0; axis < 3; ++axis)
    EXPECT_EQ(row(r, axis, in.seq), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(RopeIndex, PackedDocumentsRestartPositions) {
  const auto c = testing::tiny_config();
  ModelInputs in;
  in.input_ids = {1, 2, 3, 4, 5};
  in.document_ids = {0, 0, 0, 1, 1};
  in.batch = 1;
  in.seq = 5;
  const auto r = model::compute_rope_index(c, in);
  for (int axis = 0; axis < 3; ++axis)
    EXPECT_EQ(row(r, axis, 5), (std::vector<int64_t>{0, 1, 2, 0, 1}));
}

TEST(RopeIndex, LeftPaddingKeepsPaddedPositionsAtOne) {
  const auto c = testing::tiny_config();
  ModelInputs in;
  in.input_ids = {0, 0, 7, 8, 9};
  in.attention_mask = {0, 0, 1, 1, 1};
  in.batch = 1;
  in.seq = 5;
  const auto r = model::compute_rope_index(c, in);
  EXPECT_EQ(row(r, 0, 5), (std::vector<int64_t>{1, 1, 0, 1, 2}));
  EXPECT_EQ(r.deltas[0], 3 - 5);
}

TEST(RopeIndex, MoreImagesThanGridsIsAnError) {
  const auto c = testing::tiny_config();
  ModelInputs in;
  testing::append_vision(in.input_ids, c, 1);
  testing::append_vision(in.input_ids, c, 1);
  in.batch = 1;
  in.seq = static_cast<int64_t>(in.input_ids.size());
  in.image_grids = {{1, 2, 2}};
  EXPECT_THROW(model::compute_rope_index(c, in), Error);
}

TEST(Linspace, MatchesTorchSymmetricEvaluation) {
  const auto v = model::linspace_f32(0.0f, 7.0f, 6);
  ASSERT_EQ(v.size(), 6u);
  EXPECT_EQ(v.front(), 0.0f);
  EXPECT_EQ(v.back(), 7.0f);  // the second half is computed from the end
  EXPECT_FLOAT_EQ(v[2], 2.8f);
  EXPECT_EQ(model::linspace_f32(0, 7, 1), qv::HostVector<float>{0.0f});
}

TEST(TextRope, InterleavedSlotsFollowSections) {
  model::TextConfig c;
  c.head_dim = 12;  // 6 slots: T H W T H W with sections [2, 2, 1] -> W only in slot 2
  c.mrope_section = {2, 2, 1};
  c.rope_theta = 10000;
  // positions: T = 1, H = 2, W = 3 for one token.
  qv::HostVector<float> cos, sin;
  model::text_rope_tables(c, {1, 2, 3}, 1, cos, sin);
  const int expect_axis[6] = {0, 1, 2, 0, 1, 0};
  for (int j = 0; j < 6; ++j) {
    const float inv = 1.0f / std::pow(10000.0f, static_cast<float>(2 * j) / 12.0f);
    const float pos = static_cast<float>(expect_axis[j] + 1);
    EXPECT_FLOAT_EQ(cos[j], std::cos(inv * pos)) << j;
    EXPECT_FLOAT_EQ(cos[j + 6], cos[j]);
    EXPECT_FLOAT_EQ(sin[j], std::sin(inv * pos)) << j;
  }
}

}  // namespace
}  // namespace qv
