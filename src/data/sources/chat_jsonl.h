// Chat (SFT) conversations: JSONL, one conversation per line in the Hugging Face / OpenAI message
// format, {"messages": [...], "tools": [...]}. Roles system / user / assistant / tool; content a
// string or a list of parts {"type": "text", "text"}, {"type": "image", "image": path or URL}
// ({"type": "image_url", "image_url": {"url"}} too), {"type": "video", "video": [frame paths] or a
// folder of frames, "fps": rate the frames were sampled at, default 2}; assistant `tool_calls`
// ({"function": {"name", "arguments"}} or {"name", "arguments"}). Paths are relative to the JSONL
// file. Parts are classified the way the Qwen3-VL Instruct chat template classifies them (a part
// is an image when its type is "image" or it has an "image" / "image_url" key, ...), and only
// what the template renders is kept: text parts of system and assistant messages, every part of
// user and tool messages.
//
// Where the real template would fail or silently drop something, a row is a counted skip
// instead: a system message that is not the first message, an unknown role, a part or tool call
// of the wrong shape. `"content": null` (which the template cannot iterate) is read as empty.
//
// Robustness as for OBELICS: a malformed row or an unavailable image / frame is a counted skip
// naming file and line; a file that cannot be opened is a qv::Error. One reader per thread.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "data/skip_stats.h"
#include "data/sources/http_fetch.h"
#include "data/sources/line_reader.h"
#include "data/sources/obelics.h"

namespace qv::data {

namespace skip {
inline constexpr std::string_view kMalformedConversation = "malformed conversation";
inline constexpr std::string_view kNoAssistantTurn = "conversation without an assistant turn";
inline constexpr std::string_view kBadVideo = "bad video";
}  // namespace skip

enum class ChatRole : uint8_t { kSystem, kUser, kAssistant, kTool };
enum class ChatPartKind : uint8_t { kText, kImage, kVideo };

struct ChatPart {
  ChatPartKind kind = ChatPartKind::kText;
  std::string text;                // kText
  std::vector<std::string> refs;   // kImage: one path or URL; kVideo: frame paths, or one folder
  std::vector<std::string> bytes;  // loaded by ChatReader: one file per image / frame
  double fps = 2.0;                // kVideo: frames per second the frames were sampled at
  bool is_vision() const { return kind != ChatPartKind::kText; }
};

struct ToolCall {
  std::string name;
  std::string arguments;  // as the template writes it: a string verbatim, else its tojson
};

struct ChatMessage {
  ChatRole role = ChatRole::kUser;
  std::vector<ChatPart> parts;  // a string content is one text part
  bool content_truthy = false;  // Jinja truthiness of `content`: non-empty string or list
  std::vector<ToolCall> tool_calls;
};

struct Conversation {
  std::string source;  // the JSONL file ("stdin" for the tokenize command)
  int64_t line = 0;    // 1-based
  std::vector<ChatMessage> messages;
  std::vector<std::string> tools;  // each tool definition as tojson writes it
  std::string origin() const { return source + ":" + std::to_string(line); }
  int64_t vision_parts() const;  // images and videos the template renders
};

// `skip_reason` is empty when the row is well formed, else a skip:: reason with `detail`.
struct ChatRow {
  Conversation conv;
  std::string_view skip_reason;
  std::string detail;
};
ChatRow parse_chat_row(std::string_view line, const std::string& source, int64_t line_no);
ChatRow parse_conversation(const nlohmann::ordered_json& row, const std::string& source,
                           int64_t line_no);

// Jinja's `tojson` as the chat template engines write it: keys in document order, ", " and ": "
// separators, non-ASCII characters unescaped.
std::string template_tojson(const nlohmann::ordered_json& value);

// Reads conversations and loads their image and frame files (not decoded). Positions are
// ObelicsState values (file, byte offset, line), so the loader seeks it like the OBELICS reader.
class ChatReader {
 public:
  explicit ChatReader(std::vector<std::string> files, ObelicsOptions options = {},
                      SkipStats* skips = nullptr);
  ~ChatReader();
  bool next(Conversation& conv);  // false after the last file
  ObelicsState state() const;
  void restore(const ObelicsState& state);

 private:
  bool load_vision(Conversation& conv);
  std::string_view load_file(const std::string& ref, const Conversation& conv, std::string& out,
                             std::string& detail);
  bool open_file();

  FileListCursor at_;  // the resume point
  ObelicsOptions options_;
  std::unique_ptr<SkipStats> own_skips_;
  SkipStats* skips_;
  HttpFetcher fetcher_;
  std::unique_ptr<LineReader> lines_;
};

}  // namespace qv::data
