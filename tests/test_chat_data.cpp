// Chat (SFT) data: rendering and assistant-only labels against the real Qwen3-VL Instruct chat
// template (tests/data/chat/expected.jsonl, written by tests/tools/chat_template/
// render_chat_cases.mjs with @huggingface/jinja), conversation parsing, samples with expanded
// images and videos, truncation at turn boundaries, the loader (packing, resume) and the
// template check of a model folder.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "data/pipeline/chat_sample.h"
#include "data/pipeline/loader.h"
#include "data/pipeline/packing.h"
#include "data/sources/chat_jsonl.h"
#include "data/tokenizer/tokenizer.h"
#include "data_test_utils.h"
#include "loader_test_utils.h"

namespace qv {
namespace {

using nlohmann::ordered_json;

const data::Tokenizer& tokenizer() {
  static const data::Tokenizer t = data::Tokenizer::load(testing::kTokenizer);
  return t;
}

std::vector<std::string> lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

struct Case {
  std::string name, rendered;
  std::vector<std::pair<int64_t, int64_t>> targets;  // byte ranges
  data::Conversation conv;
};

// The cases with what the real template made of them.
const std::vector<Case>& cases() {
  static const std::vector<Case> all = [] {
    const auto in = lines(testing::source_path("tests/data/chat/cases.jsonl"));
    const auto expected = lines(testing::source_path("tests/data/chat/expected.jsonl"));
    EXPECT_EQ(in.size(), expected.size()) << "regenerate expected.jsonl (render_chat_cases.mjs)";
    std::vector<Case> out;
    for (size_t i = 0; i < std::min(in.size(), expected.size()); ++i) {
      const auto e = nlohmann::json::parse(expected[i]);
      Case c;
      c.name = e.at("name").get<std::string>();
      c.rendered = e.at("rendered").get<std::string>();
      for (const auto& t : e.at("targets")) c.targets.emplace_back(t[0], t[1]);
      const data::ChatRow row = data::parse_chat_row(in[i], "cases.jsonl", int64_t(i) + 1);
      EXPECT_TRUE(row.skip_reason.empty()) << c.name << ": " << row.detail;
      c.conv = row.conv;
      out.push_back(std::move(c));
    }
    return out;
  }();
  return all;
}

TEST(ChatTemplate, RenderingEqualsTheRealTemplate) {
  ASSERT_GE(cases().size(), 11u);
  for (const Case& c : cases()) EXPECT_EQ(data::render_chat(c.conv), c.rendered) << c.name;
}

// Every token's bytes, in order, tile the rendered text; a token is a target exactly when its
// bytes lie inside one of the template's assistant spans (none straddles a span edge).
TEST(ChatTemplate, LabelsAreExactlyTheAssistantSpansOfTheRealTemplate) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const data::ChatTokens t = data::tokenize_chat(c.conv, tokenizer());
    ASSERT_EQ(t.ids.size(), t.labels.size());
    int64_t at = 0, targets = 0;
    for (size_t i = 0; i < t.ids.size(); ++i) {
      const std::string bytes = tokenizer().decode_bytes(std::span(&t.ids[i], 1));
      const int64_t end = at + static_cast<int64_t>(bytes.size());
      ASSERT_EQ(c.rendered.compare(at, bytes.size(), bytes), 0) << "token " << i;
      bool inside = false, straddles = false;
      for (const auto& [b, e] : c.targets) {
        inside |= at >= b && end <= e;
        straddles |= (at < b && end > b) || (at < e && end > e);
      }
      EXPECT_FALSE(straddles) << "token " << i << " '" << bytes << "'";
      EXPECT_EQ(t.labels[i], inside ? t.ids[i] : data::kIgnore)
          << "token " << i << " '" << bytes << "'";
      targets += inside;
      at = end;
    }
    EXPECT_EQ(at, static_cast<int64_t>(c.rendered.size()));
    EXPECT_GT(targets, 0);
    // One turn end per assistant turn, right after its "\n".
    EXPECT_EQ(t.turn_ends.size(), c.targets.size());
  }
}

// Apart from the two documented cases, the ids are the tokenization of the rendered text.
TEST(ChatTemplate, IdsEqualTokenizingTheRenderedText) {
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name);
    const auto ids = data::tokenize_chat(c.conv, tokenizer()).ids;
    const auto whole = tokenizer().encode(c.rendered, /*allow_special=*/true);
    if (c.name == "injected_markers") {
      // The user's "<|im_end|>" and "<|im_start|>" are text here, special tokens in `whole`.
      const auto count = [](const std::vector<int32_t>& v, int32_t id) {
        return std::count(v.begin(), v.end(), id);
      };
      const int32_t im_end = *tokenizer().token_id("<|im_end|>");
      EXPECT_EQ(count(ids, im_end), 2);
      EXPECT_EQ(count(whole, im_end), 4);
    } else if (c.name == "leading_newline") {
      // "assistant\n" + "\n\nRoses": the header's "\n" stays its own token, as at generation.
      EXPECT_NE(ids, whole);
      const auto head =
          tokenizer().encode("<|im_start|>user\nPoem?<|im_end|>\n<|im_start|>assistant\n");
      ASSERT_GE(ids.size(), head.size());
      EXPECT_TRUE(std::equal(head.begin(), head.end(), ids.begin()));
    } else {
      EXPECT_EQ(ids, whole);
    }
  }
}

TEST(ChatTemplate, TheBundledTemplateIsQwen3VLInstructAndOthersAreReported) {
  const std::string jinja =
      testing::read_bytes(testing::source_path("tests/tools/chat_template/qwen3vl_instruct.jinja"));
  testing::TempDir dir;
  testing::write_bytes(dir.file("same/chat_template.jinja"), jinja + "\n\n");
  EXPECT_EQ(data::chat_template_mismatch(dir.path() + "/same"), "");
  testing::write_bytes(dir.file("json/chat_template.json"),
                       nlohmann::json{{"chat_template", jinja}}.dump());
  EXPECT_EQ(data::chat_template_mismatch(dir.path() + "/json"), "");
  testing::write_bytes(dir.file("none/config.json"), "{}");
  EXPECT_EQ(data::chat_template_mismatch(dir.path() + "/none"), "");
  // The bundled Qwen3 (text) tokenizer carries Qwen3's own template: said so.
  const std::string other = data::chat_template_mismatch(
      std::filesystem::path(testing::kTokenizer).parent_path().string());
  EXPECT_NE(other.find("tokenizer_config.json"), std::string::npos) << other;
  testing::write_bytes(dir.file("edited/chat_template.jinja"), jinja + "{# edited #}");
  EXPECT_NE(data::chat_template_mismatch(dir.path() + "/edited"), "");
}

TEST(ChatParse, WhatTheTemplateWouldDropOrRejectIsACountedSkipReason) {
  const std::map<std::string, std::string> bad = {
      {"late system",
       R"({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]})"},
      {"unknown role", R"({"messages": [{"role": "narrator", "content": "a"}]})"},
      {"content number", R"({"messages": [{"role": "user", "content": 3}]})"},
      {"image without path", R"({"messages": [{"role": "user", "content": [{"type": "image"}]}]})"},
      {"video number",
       R"({"messages": [{"role": "user", "content": [{"type": "video", "video": 3}]}]})"},
      {"call without name",
       R"({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"arguments": {}}]}]})"},
      {"no messages", R"({"messages": []})"},
      {"not an object", R"([1, 2])"},
  };
  for (const auto& [name, row] : bad) {
    const auto r = data::parse_chat_row(row, "f.jsonl", 7);
    EXPECT_EQ(r.skip_reason, data::skip::kMalformedConversation) << name;
    EXPECT_FALSE(r.detail.empty()) << name;
  }
  EXPECT_EQ(data::parse_chat_row("{oops", "f.jsonl", 1).skip_reason, data::skip::kMalformedJson);
  // null content is read as empty (the template itself cannot iterate it).
  const auto ok = data::parse_chat_row(
      R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": null, "tool_calls": [{"function": {"name": "f", "arguments": {"b": 1, "a": [true, null]}}}]}]})",
      "f.jsonl", 1);
  ASSERT_TRUE(ok.skip_reason.empty()) << ok.detail;
  EXPECT_EQ(data::render_chat(ok.conv),
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"f\", "
            "\"arguments\": {\"b\": 1, \"a\": [true, null]}}\n</tool_call><|im_end|>\n");
}

TEST(ChatVideo, TimestampsAreQwen3VLProcessorsMeanFrameTimes) {
  // Frames 0..4 at 2 fps, padded to 6 by repeating the last: groups (0, .5), (1, 1.5), (2, 2).
  EXPECT_EQ(data::video_timestamps(5, 2.0, 2),
            (std::vector<std::string>{"<0.2 seconds>", "<1.2 seconds>", "<2.0 seconds>"}));
  EXPECT_EQ(data::video_timestamps(4, 1.0, 2),
            (std::vector<std::string>{"<0.5 seconds>", "<2.5 seconds>"}));
}

// A chat JSONL next to copies of the test images, with the names the cases use (video frames
// share one size).
std::string write_chat_file(const testing::TempDir& dir, const std::vector<std::string>& rows) {
  const std::string red =
      testing::read_bytes(testing::source_path("tests/data/obelics/images/red.png"));
  const std::string blue =
      testing::read_bytes(testing::source_path("tests/data/obelics/images/blue.png"));
  for (const char* n : {"a.png", "c.png", "f0.png", "f1.png", "f2.png", "f3.png"})
    testing::write_bytes(dir.file(n), red);
  for (const char* n : {"b.png"}) testing::write_bytes(dir.file(n), blue);
  std::string text;
  for (const auto& r : rows) text += r + "\n";
  testing::write_bytes(dir.file("chat.jsonl"), text);
  return dir.file("chat.jsonl");
}

data::CaptionSampleConfig small_images() {
  return testing::small_config().sample;
}

std::vector<data::Conversation> read_all(const std::string& file) {
  data::ChatReader reader({file});
  std::vector<data::Conversation> out;
  for (data::Conversation c; reader.next(c);) out.push_back(std::move(c));
  return out;
}

// The sample is the single-pad tokenization with each pad expanded: images to their merged
// token count, the video to one timestamped block per temporal group.
TEST(ChatSample, PadsExpandToTheVisionItemsAndLabelsStayOnAssistantTurns) {
  testing::TempDir dir;
  const auto in = lines(testing::source_path("tests/data/chat/cases.jsonl"));
  const auto convs = read_all(write_chat_file(dir, {in[1], in[2]}));  // several_images, video
  ASSERT_EQ(convs.size(), 2u);
  const data::TokenIds tok = data::token_ids(tokenizer());
  const auto cfg = small_images();
  for (const auto& conv : convs) {
    data::SkipStats skips;
    const auto s = data::build_chat_sample(conv, tokenizer(), tok, cfg, skips);
    ASSERT_TRUE(s) << skips.to_json().dump();
    const auto plain = data::tokenize_chat(conv, tokenizer());
    // Rebuild the expanded ids from the single-pad ones and the vision items.
    std::vector<int32_t> want;
    std::vector<int32_t> want_labels;
    size_t item = 0;
    for (size_t i = 0; i < plain.ids.size(); ++i) {
      const int32_t id = plain.ids[i];
      if (id != tok.image_pad && id != tok.video_pad) {
        want.push_back(id);
        want_labels.push_back(plain.labels[i]);
        continue;
      }
      const data::VisionItem& v = s->vision.at(item++);
      const int64_t per = v.grid.h * v.grid.w / 4;
      if (!v.is_video) {
        want.insert(want.end(), per, id);
        want_labels.insert(want_labels.end(), per, data::kIgnore);
        continue;
      }
      // The template's vision_start is already in `want`; replace it with the timestamped blocks.
      want.pop_back();
      want_labels.pop_back();
      ++i;  // skip the template's vision_end
      const auto stamps = data::video_timestamps(4, 2.0, 2);
      ASSERT_EQ(static_cast<int64_t>(stamps.size()), v.grid.t);
      for (const auto& st : stamps) {
        const auto t = tokenizer().encode(st, false);
        // The timestamp joins the preceding "user\n" text run; here it tokenizes the same alone.
        want.insert(want.end(), t.begin(), t.end());
        want.push_back(tok.vision_start);
        want.insert(want.end(), per, tok.video_pad);
        want.push_back(tok.vision_end);
        want_labels.insert(want_labels.end(), t.size() + per + 2, data::kIgnore);
      }
    }
    EXPECT_EQ(item, s->vision.size());
    EXPECT_EQ(s->ids, want) << conv.origin();
    EXPECT_EQ(s->labels, want_labels) << conv.origin();
    EXPECT_EQ(s->cut_points.size(), plain.turn_ends.size());
    EXPECT_EQ(s->cut_points.back().length, s->length());
    EXPECT_EQ(s->cut_points.back().vision_items, static_cast<int64_t>(s->vision.size()));
  }
}

TEST(ChatSample, OverlongConversationsAreCutAtATurnBoundaryWithTheirImages) {
  testing::TempDir dir;
  const auto in = lines(testing::source_path("tests/data/chat/cases.jsonl"));
  const auto convs = read_all(write_chat_file(dir, {in[1]}));  // two turns, 2 + 1 images
  data::SkipStats skips;
  const data::TokenIds tok = data::token_ids(tokenizer());
  auto s = data::build_chat_sample(convs.at(0), tokenizer(), tok, small_images(), skips);
  ASSERT_TRUE(s);
  ASSERT_EQ(s->cut_points.size(), 2u);
  const data::CutPoint first = s->cut_points[0];
  EXPECT_EQ(first.vision_items, 2);
  // Anything from the first turn's end up to one token short of the whole keeps the first turn.
  for (const int64_t limit : {first.length, s->length() - 1}) {
    data::Sample cut = *s;
    ASSERT_TRUE(data::fit_to_length(cut, limit, tok)) << limit;
    EXPECT_EQ(cut.length(), first.length);
    EXPECT_EQ(cut.vision.size(), 2u);
    EXPECT_EQ(std::vector<int32_t>(s->ids.begin(), s->ids.begin() + first.length), cut.ids);
  }
  data::Sample none = *s;
  EXPECT_FALSE(data::fit_to_length(none, first.length - 1, tok));  // not even one turn fits
}

TEST(ChatReaderTest, MissingImagesTooManyImagesAndNoAssistantAreCountedSkips) {
  testing::TempDir dir;
  const std::string file = write_chat_file(
      dir,
      {R"({"messages": [{"role": "user", "content": [{"type": "image", "image": "gone.png"}]}, {"role": "assistant", "content": "x"}]})",
       R"({"messages": [{"role": "user", "content": [{"image": "a.png"}, {"image": "b.png"}]}, {"role": "assistant", "content": "x"}]})",
       R"({"messages": [{"role": "user", "content": "only a question"}]})",
       R"({"messages": [{"role": "user", "content": [{"type": "video", "video": "a.png"}]}, {"role": "assistant", "content": "x"}]})",
       "{broken"});
  data::ObelicsOptions o;
  o.max_images = 1;
  data::SkipStats skips;
  data::ChatReader reader({file}, o, &skips);
  std::vector<data::Conversation> got;
  for (data::Conversation c; reader.next(c);) got.push_back(c);
  ASSERT_EQ(got.size(), 1u);  // the text-only conversation; the builder skips it
  const auto tok = data::token_ids(tokenizer());
  EXPECT_FALSE(data::build_chat_sample(got[0], tokenizer(), tok, small_images(), skips));
  const auto counts = skips.to_json().dump();
  for (const std::string_view r :
       {data::skip::kMissingImageFile, data::skip::kTooManyImages, data::skip::kNoAssistantTurn,
        data::skip::kBadVideo, data::skip::kMalformedJson})
    EXPECT_NE(counts.find(std::string(r)), std::string::npos) << r << " in " << counts;
  EXPECT_EQ(skips.total(), 5);
}

// The loader packs chat samples like the other datasets and resumes exactly by seeking.
TEST(ChatLoader, PacksAndResumesExactly) {
  testing::TempDir dir;
  const auto in = lines(testing::source_path("tests/data/chat/cases.jsonl"));
  std::vector<std::string> rows;
  for (int rep = 0; rep < 3; ++rep)
    for (const auto& l : in) rows.push_back(l);
  auto c = testing::small_config();
  c.dataset = "chat";
  c.path = write_chat_file(dir, rows);
  c.seq_len = 320;
  c.prefetch = 1;
  data::DataLoader straight(c);
  const auto all = testing::take(straight, 8);
  int64_t targets = 0, kept = 0, images = 0, videos = 0;
  for (const auto& b : all) {
    images += static_cast<int64_t>(b.image_grids.size());
    videos += static_cast<int64_t>(b.video_grids.size());
    for (size_t i = 0; i < b.labels.size(); ++i) {
      targets += b.labels[i] != data::kIgnore;
      kept += b.attention_mask[i];
    }
  }
  EXPECT_GT(targets, 0);
  EXPECT_LT(targets, kept / 2);  // assistant turns only
  EXPECT_GT(images, 0);
  EXPECT_GT(videos, 0);
  data::DataLoader a(c);
  testing::take(a, 3);
  auto other = c;
  other.num_workers = 1;
  data::DataLoader b(other);
  b.restore(a.state());
  const auto resumed = testing::take(b, 5);
  for (int i = 0; i < 5; ++i) testing::expect_same(all[3 + i], resumed[i]);
}

}  // namespace
}  // namespace qv
