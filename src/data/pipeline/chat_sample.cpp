#include "data/pipeline/chat_sample.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/image/image_decode.h"
#include "data/image/image_preprocess.h"
#include "io/checksum.h"

namespace qv::data {

namespace {

constexpr const char* kImStart = "<|im_start|>";
constexpr const char* kImEnd = "<|im_end|>";
constexpr const char* kToolsPreamble =
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
constexpr const char* kToolsEpilogue =
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
    "\"arguments\": <args-json-object>}\n</tool_call>";

enum class Seg : uint8_t { kText, kSpecial, kVision, kTurnEnd };

struct Segment {
  Seg kind = Seg::kText;
  std::string text;  // kText: the text; kSpecial: the token's content
  bool target = false;
  bool video = false;  // kVision
};

// The template walked once, as a list of segments both outputs are made from.
class Segments {
 public:
  explicit Segments(const Conversation& c) : c_(c) {
    system_turn();
    for (size_t i = 0; i < c.messages.size(); ++i) message(i);
  }
  const std::vector<Segment>& list() const { return out_; }

 private:
  void text(std::string s) { out_.push_back({Seg::kText, std::move(s), target_, false}); }
  void special(const char* s) { out_.push_back({Seg::kSpecial, s, target_, false}); }
  void content(const ChatMessage& m, bool vision) {
    for (const ChatPart& p : m.parts) {
      if (!p.is_vision())
        text(p.text);
      else if (vision)
        out_.push_back({Seg::kVision, {}, false, p.kind == ChatPartKind::kVideo});
    }
  }

  void system_turn() {
    const bool has_system = c_.messages[0].role == ChatRole::kSystem;
    if (c_.tools.empty() && !has_system) return;
    special(kImStart);
    text("system\n");
    if (has_system) content(c_.messages[0], /*vision=*/false);
    if (!c_.tools.empty()) {
      if (has_system) text("\n\n");
      text(kToolsPreamble);
      for (const std::string& t : c_.tools) text("\n" + t);
      text(kToolsEpilogue);
    }
    special(kImEnd);
    text("\n");
  }

  void message(size_t i) {
    const ChatMessage& m = c_.messages[i];
    switch (m.role) {
      case ChatRole::kSystem:  // rendered by system_turn (only the first message may be one)
        return;
      case ChatRole::kUser:
        special(kImStart);
        text("user\n");
        content(m, /*vision=*/true);
        special(kImEnd);
        text("\n");
        return;
      case ChatRole::kAssistant:
        special(kImStart);
        text("assistant\n");
        target_ = true;
        content(m, /*vision=*/false);
        for (size_t k = 0; k < m.tool_calls.size(); ++k) {
          if (k > 0 || m.content_truthy) text("\n");
          const ToolCall& call = m.tool_calls[k];
          text("<tool_call>\n{\"name\": \"" + call.name + "\", \"arguments\": " + call.arguments +
               "}\n</tool_call>");
        }
        special(kImEnd);
        target_ = false;
        text("\n");
        out_.push_back({Seg::kTurnEnd, {}, false, false});
        return;
      case ChatRole::kTool: {
        const bool opens = i == 0 || c_.messages[i - 1].role != ChatRole::kTool;
        const bool closes =
            i + 1 == c_.messages.size() || c_.messages[i + 1].role != ChatRole::kTool;
        if (opens) {
          special(kImStart);
          text("user");
        }
        text("\n<tool_response>\n");
        content(m, /*vision=*/true);
        text("\n</tool_response>");
        if (closes) {
          special(kImEnd);
          text("\n");
        }
        return;
      }
    }
  }

  const Conversation& c_;
  std::vector<Segment> out_;
  bool target_ = false;
};

// Appends tokens, keeping a pending text run that is tokenized as one piece (as the whole
// rendered string would be between special tokens).
class TokenWriter {
 public:
  TokenWriter(const Tokenizer& tok, ChatTokens& out)
      : tok_(tok), special_(SpecialTokens::lookup(tok)), out_(out) {}
  void text(const std::string& s, bool target) {
    if (target != run_target_) flush();
    run_target_ = target;
    run_ += s;
  }
  void token(int32_t id, bool target) {
    flush();
    out_.ids.push_back(id);
    out_.labels.push_back(target ? id : kIgnore);
  }
  void special(const std::string& content, bool target) {
    const auto id = tok_.token_id(content);
    QV_CHECK(id, "the tokenizer has no ", content, " token");
    token(*id, target);
  }
  void vision_block(bool video, int64_t pads) {
    token(special_.vision_start, false);
    for (int64_t i = 0; i < pads; ++i)
      token(video ? special_.video_pad : special_.image_pad, false);
    token(special_.vision_end, false);
  }
  void flush() {
    if (run_.empty()) return;
    const size_t before = out_.ids.size();
    tok_.encode_into(run_, out_.ids, /*allow_special=*/false);
    for (size_t i = before; i < out_.ids.size(); ++i)
      out_.labels.push_back(run_target_ ? out_.ids[i] : kIgnore);
    run_.clear();
  }

 private:
  const Tokenizer& tok_;
  SpecialTokens special_;
  ChatTokens& out_;
  std::string run_;
  bool run_target_ = false;
};

}  // namespace

std::string render_chat(const Conversation& conv) {
  std::string s;
  const Segments segments(conv);  // named: list() refers into it
  for (const Segment& seg : segments.list()) {
    if (seg.kind == Seg::kText || seg.kind == Seg::kSpecial) s += seg.text;
    if (seg.kind == Seg::kVision)
      s += seg.video ? "<|vision_start|><|video_pad|><|vision_end|>"
                     : "<|vision_start|><|image_pad|><|vision_end|>";
  }
  return s;
}

ChatTokens tokenize_chat(const Conversation& conv, const Tokenizer& tokenizer,
                         const std::vector<VisionExpansion>* expansions) {
  ChatTokens out;
  TokenWriter w(tokenizer, out);
  size_t vision = 0;
  const Segments segments(conv);
  for (const Segment& seg : segments.list()) {
    switch (seg.kind) {
      case Seg::kText:
        w.text(seg.text, seg.target);
        break;
      case Seg::kSpecial:
        w.special(seg.text, seg.target);
        break;
      case Seg::kVision: {
        if (!expansions) {
          w.vision_block(seg.video, 1);
          break;
        }
        QV_CHECK(vision < expansions->size(), conv.origin(), ": more vision parts than expansions");
        const VisionExpansion& e = (*expansions)[vision++];
        if (e.timestamps.empty()) w.vision_block(seg.video, e.tokens_per_group);
        for (const std::string& t : e.timestamps) {
          w.text(t, false);
          w.vision_block(seg.video, e.tokens_per_group);
        }
        break;
      }
      case Seg::kTurnEnd:
        w.flush();
        out.turn_ends.push_back(static_cast<int64_t>(out.ids.size()));
        break;
    }
  }
  w.flush();
  return out;
}

std::vector<std::string> video_timestamps(int64_t frames, double fps, int temporal_patch_size) {
  std::vector<std::string> out;
  const int64_t t = temporal_patch_size;
  const int64_t padded = (frames + t - 1) / t * t;
  for (int64_t g = 0; g < padded; g += t) {
    const double first = static_cast<double>(std::min(g, frames - 1)) / fps;
    const double last = static_cast<double>(std::min(g + t - 1, frames - 1)) / fps;
    char buf[64];
    std::snprintf(buf, sizeof buf, "<%.1f seconds>", (first + last) / 2);
    out.emplace_back(buf);
  }
  return out;
}

namespace {

// Decodes and preprocesses one vision part; fills its expansion.
VisionItem prepare_vision(const ChatPart& part, const CaptionSampleConfig& cfg,
                          const std::string& origin, VisionExpansion& e) {
  const int64_t merge2 = int64_t(cfg.image.merge_size) * cfg.image.merge_size;
  auto decode = [&](const std::string& bytes, size_t k) {
    return decode_image(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), cfg.limits,
                        cat(origin, " ", part.refs.at(k)));
  };
  if (part.kind == ChatPartKind::kImage) {
    VisionItem item = preprocess_image(decode(part.bytes.at(0), 0), cfg.image);
    e.tokens_per_group = merged_token_count(item.grid, cfg.image.merge_size);
    return item;
  }
  std::vector<RgbImage> frames;
  for (size_t k = 0; k < part.bytes.size(); ++k) frames.push_back(decode(part.bytes[k], k));
  // Each frame gets at most the per-image pixel budget (the video budget counts t * h * w).
  VideoProcessorConfig v;
  v.frames = cfg.image;
  v.frames.fused_rescale_normalize = true;
  const int64_t t = cfg.image.temporal_patch_size;
  v.frames.max_pixels = cfg.image.max_pixels * ((int64_t(frames.size()) + t - 1) / t * t);
  VisionItem item = preprocess_video(frames, v);
  e.tokens_per_group = item.grid.h * item.grid.w / merge2;
  e.timestamps = video_timestamps(static_cast<int64_t>(frames.size()), part.fps,
                                  cfg.image.temporal_patch_size);
  QV_CHECK(static_cast<int64_t>(e.timestamps.size()) == item.grid.t, origin, ": video of ",
           frames.size(), " frames has ", item.grid.t, " temporal groups");
  return item;
}

}  // namespace

std::optional<Sample> build_chat_sample(const Conversation& conv, const Tokenizer& tokenizer,
                                        const TokenIds&, const CaptionSampleConfig& cfg,
                                        SkipStats& skips) {
  const std::string origin = conv.origin();
  bool has_assistant = false;
  for (const ChatMessage& m : conv.messages) has_assistant |= m.role == ChatRole::kAssistant;
  if (!has_assistant) {
    skips.add(skip::kNoAssistantTurn, origin);
    return std::nullopt;
  }
  Sample s;
  s.origin = origin;
  std::vector<VisionExpansion> expansions;
  for (const ChatMessage& m : conv.messages)
    for (const ChatPart& part : m.parts) {
      if (!part.is_vision()) continue;
      try {
        s.vision.push_back(prepare_vision(part, cfg, origin, expansions.emplace_back()));
      } catch (const Error& e) {
        skips.add(part.kind == ChatPartKind::kVideo ? skip::kBadVideo : "bad image", origin,
                  e.what());
        return std::nullopt;
      }
    }
  ChatTokens t = tokenize_chat(conv, tokenizer, &expansions);
  s.ids = std::move(t.ids);
  s.labels = std::move(t.labels);
  // Cut points: after each assistant turn, with the vision items that lie before it.
  size_t item = 0;
  int64_t pos = 0;
  const TokenIds tok = token_ids(tokenizer);
  int64_t blocks_left = 0;  // vision_end markers still to pass for the current item
  for (const int64_t end : t.turn_ends) {
    for (; pos < end; ++pos) {
      if (s.ids[pos] != tok.vision_end) continue;
      QV_CHECK(item < s.vision.size(), origin, ": more vision blocks than vision items");
      if (blocks_left == 0) blocks_left = s.vision[item].is_video ? s.vision[item].grid.t : 1;
      if (--blocks_left == 0) ++item;
    }
    s.cut_points.push_back({end, static_cast<int64_t>(item)});
  }
  return s;
}

namespace {

// CRC-32C of the Qwen3-VL Instruct chat_template (trailing whitespace removed), the text in
// tests/tools/chat_template/qwen3vl_instruct.jinja (tests/test_chat_data.cpp checks the value).
constexpr uint32_t kInstructTemplateCrc = 0xe464c8b5u;

std::string trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

// The template text a folder carries, and the file it came from; empty when none.
std::pair<std::string, std::string> folder_template(const std::filesystem::path& dir) {
  auto read = [](const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  if (std::filesystem::is_regular_file(dir / "chat_template.jinja"))
    return {read(dir / "chat_template.jinja"), "chat_template.jinja"};
  for (const char* name : {"chat_template.json", "tokenizer_config.json"}) {
    if (!std::filesystem::is_regular_file(dir / name)) continue;
    const auto j = nlohmann::json::parse(read(dir / name), nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("chat_template") && j["chat_template"].is_string())
      return {j["chat_template"].get<std::string>(), name};
  }
  return {};
}

}  // namespace

uint32_t chat_template_crc(const std::string& text) {
  const std::string t = trimmed(text);
  return io::crc32c(t.data(), t.size());
}

std::string chat_template_mismatch(const std::string& dir) {
  const auto [text, file] = folder_template(dir);
  if (file.empty() || chat_template_crc(text) == kInstructTemplateCrc) return {};
  return cat((std::filesystem::path(dir) / file).string(),
             " carries a chat template that is not Qwen3-VL Instruct's; chat data is rendered in "
             "Qwen3-VL Instruct's format (ChatML turns, <tool_call> / <tool_response> blocks), "
             "which may not be the format this model was trained on");
}

}  // namespace qv::data
