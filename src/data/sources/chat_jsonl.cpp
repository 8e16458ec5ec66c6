#include "data/sources/chat_jsonl.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/error.h"
#include "io/json_depth.h"

namespace qv::data {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

int64_t Conversation::vision_parts() const {
  int64_t n = 0;
  for (const ChatMessage& m : messages)
    for (const ChatPart& p : m.parts) n += p.is_vision();
  return n;
}

std::string template_tojson(const ojson& v) {
  std::string s;
  if (v.is_array()) {
    s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + template_tojson(v[i]);
    return s + "]";
  }
  if (v.is_object()) {
    s = "{";
    bool first = true;
    for (const auto& [key, value] : v.items()) {
      s += (first ? "" : ", ") + ojson(key).dump() + ": " + template_tojson(value);
      first = false;
    }
    return s + "}";
  }
  return v.dump();
}

namespace {

// A parse failure: the reason is always kMalformedConversation, `detail` says where.
struct Malformed {
  std::string detail;
};

bool has(const ojson& j, const char* key) {
  return j.is_object() && j.contains(key);
}

std::string string_at(const ojson& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_string())
    throw Malformed{cat(where, ": '", key, "' is not a string")};
  return it->get<std::string>();
}

ChatRole parse_role(const ojson& m, const std::string& where) {
  const std::string role = string_at(m, "role", where);
  if (role == "system") return ChatRole::kSystem;
  if (role == "user") return ChatRole::kUser;
  if (role == "assistant") return ChatRole::kAssistant;
  if (role == "tool") return ChatRole::kTool;
  throw Malformed{cat(where, ": unknown role '", role, "' (system, user, assistant, tool)")};
}

ChatPart vision_part(const ojson& p, bool video, const std::string& where) {
  ChatPart part;
  part.kind = video ? ChatPartKind::kVideo : ChatPartKind::kImage;
  if (video) {
    const auto v = p.find("video");
    if (v != p.end() && v->is_string()) {
      part.refs.push_back(v->get<std::string>());
    } else if (v != p.end() && v->is_array() && !v->empty()) {
      for (const auto& f : *v) {
        if (!f.is_string()) throw Malformed{cat(where, ": a video frame is not a path")};
        part.refs.push_back(f.get<std::string>());
      }
    } else {
      throw Malformed{cat(where, ": 'video' must be a folder or a non-empty list of frame paths")};
    }
    if (const auto fps = p.find("fps"); fps != p.end()) {
      if (!fps->is_number() || !(fps->get<double>() > 0))
        throw Malformed{cat(where, ": 'fps' must be a positive number")};
      part.fps = fps->get<double>();
    }
    return part;
  }
  if (const auto im = p.find("image"); im != p.end()) {
    if (!im->is_string()) throw Malformed{cat(where, ": 'image' is not a path or URL")};
    part.refs.push_back(im->get<std::string>());
  } else if (const auto url = p.find("image_url"); url != p.end()) {
    if (url->is_string())
      part.refs.push_back(url->get<std::string>());
    else if (url->is_object() && url->contains("url") && (*url)["url"].is_string())
      part.refs.push_back((*url)["url"].get<std::string>());
    else
      throw Malformed{cat(where, ": 'image_url' is neither a string nor {\"url\": ...}")};
  } else {
    throw Malformed{cat(where, ": image part without 'image' or 'image_url'")};
  }
  return part;
}

// One content part, classified in the template's order; nullopt when the template renders
// nothing for it.
std::optional<ChatPart> parse_part(const ojson& p, ChatRole role, const std::string& where) {
  if (!p.is_object()) throw Malformed{cat(where, " is not an object")};
  const std::string type =
      p.contains("type") && p["type"].is_string() ? p["type"].get<std::string>() : std::string();
  const bool vision_role = role == ChatRole::kUser || role == ChatRole::kTool;
  if (vision_role && (type == "image" || has(p, "image") || has(p, "image_url")))
    return vision_part(p, /*video=*/false, where);
  if (vision_role && (type == "video" || has(p, "video")))
    return vision_part(p, /*video=*/true, where);
  if (!has(p, "text")) return std::nullopt;
  ChatPart part;
  part.text = string_at(p, "text", where);
  return part;
}

ToolCall parse_tool_call(const ojson& c, const std::string& where) {
  if (!c.is_object()) throw Malformed{cat(where, " is not an object")};
  // {"function": {...}} when "function" is truthy, else the call itself (the template's rule).
  const auto fn = c.find("function");
  const bool nested = fn != c.end() && fn->is_object() && !fn->empty();
  const ojson& f = nested ? *fn : c;
  ToolCall call;
  call.name = string_at(f, "name", where);
  const auto args = f.find("arguments");
  if (args == f.end()) throw Malformed{cat(where, ": no 'arguments'")};
  call.arguments = args->is_string() ? args->get<std::string>() : template_tojson(*args);
  return call;
}

ChatMessage parse_message(const ojson& m, size_t index, bool first) {
  const std::string where = cat("messages[", index, "]");
  if (!m.is_object()) throw Malformed{where + " is not an object"};
  ChatMessage msg;
  msg.role = parse_role(m, where);
  if (msg.role == ChatRole::kSystem && !first)
    throw Malformed{where + ": a system message after the first message (the template drops it)"};
  const auto content = m.find("content");
  if (content != m.end() && content->is_string()) {
    msg.content_truthy = !content->get_ref<const std::string&>().empty();
    ChatPart text;
    text.text = content->get<std::string>();
    msg.parts.push_back(std::move(text));
  } else if (content != m.end() && content->is_array()) {
    msg.content_truthy = !content->empty();
    for (size_t i = 0; i < content->size(); ++i)
      if (auto part = parse_part((*content)[i], msg.role, cat(where, ".content[", i, "]")))
        msg.parts.push_back(std::move(*part));
  } else if (content != m.end() && !content->is_null()) {
    throw Malformed{where + ": 'content' must be a string, a list of parts or null"};
  }
  const auto calls = m.find("tool_calls");
  if (calls != m.end() && !calls->is_null() && msg.role == ChatRole::kAssistant) {
    if (!calls->is_array()) throw Malformed{where + ": 'tool_calls' is not a list"};
    for (size_t i = 0; i < calls->size(); ++i)
      msg.tool_calls.push_back(parse_tool_call((*calls)[i], cat(where, ".tool_calls[", i, "]")));
  }
  return msg;
}

ChatRow malformed(std::string detail) {
  ChatRow r;
  r.skip_reason = skip::kMalformedConversation;
  r.detail = std::move(detail);
  return r;
}

}  // namespace

ChatRow parse_conversation(const ojson& j, const std::string& source, int64_t line_no) {
  if (!j.is_object()) return malformed("the row is not a JSON object");
  const auto messages = j.find("messages");
  if (messages == j.end() || !messages->is_array() || messages->empty())
    return malformed("'messages' must be a non-empty list");
  ChatRow row;
  row.conv.source = source;
  row.conv.line = line_no;
  try {
    for (size_t i = 0; i < messages->size(); ++i)
      row.conv.messages.push_back(parse_message((*messages)[i], i, i == 0));
    if (const auto tools = j.find("tools"); tools != j.end() && !tools->is_null()) {
      if (!tools->is_array()) throw Malformed{"'tools' is not a list"};
      for (const auto& t : *tools) row.conv.tools.push_back(template_tojson(t));
    }
  } catch (const Malformed& m) {
    return malformed(m.detail);
  }
  return row;
}

ChatRow parse_chat_row(std::string_view line, const std::string& source, int64_t line_no) {
  if (const size_t at = io::json_depth_violation(line); at != std::string_view::npos) {
    ChatRow r;
    r.skip_reason = skip::kMalformedJson;
    r.detail = cat("line ", line_no, ": JSON nested deeper than ", io::kMaxJsonDepth,
                   " levels (at byte ", at, ")");
    return r;
  }
  ojson j;
  try {
    j = ojson::parse(line);
  } catch (const nlohmann::json::exception& e) {
    ChatRow r;
    r.skip_reason = skip::kMalformedJson;
    r.detail = cat("line ", line_no, ": ", e.what());
    return r;
  }
  return parse_conversation(j, source, line_no);
}

// ---- ChatReader ----

ChatReader::ChatReader(std::vector<std::string> files, ObelicsOptions options, SkipStats* skips)
    : at_(std::move(files), "chat"), options_(std::move(options)), fetcher_([&] {
        HttpFetchOptions http = options_.http;
        http.max_bytes = options_.max_image_bytes;
        return http;
      }()) {
  QV_CHECK(options_.max_image_bytes > 0 && options_.max_line_bytes > 0,
           "chat reader limits must be positive");
  if (!skips) own_skips_ = std::make_unique<SkipStats>();
  skips_ = skips ? skips : own_skips_.get();
}

ChatReader::~ChatReader() = default;

bool ChatReader::open_file() {
  if (at_.done()) return false;
  lines_ = std::make_unique<LineReader>(at_.file(), options_.max_line_bytes);
  if (!at_.at_start()) lines_->seek(at_.offset(), at_.line());
  return true;
}

std::string_view ChatReader::load_file(const std::string& ref, const Conversation& conv,
                                       std::string& out, std::string& detail) {
  if (is_http_url(ref)) {
    if (!options_.fetch_remote) return skip::kRemoteImagesDisabled;
    FetchResult r = fetcher_.fetch(ref);
    detail = r.message;
    if (r.error == FetchError::kNotAllowed) return skip::kImageUrlNotAllowed;
    if (r.error == FetchError::kTooLarge) return skip::kImageTooLarge;
    if (r.error != FetchError::kNone) return skip::kImageFetchFailed;
    out = std::move(r.bytes);
    return out.empty() ? skip::kEmptyImage : std::string_view{};
  }
  if (has_url_scheme(ref)) {
    detail = "only local paths and http(s) URLs are allowed";
    return skip::kImageUrlNotAllowed;
  }
  if (ref.empty()) return skip::kMissingImageFile;
  const fs::path p =
      fs::path(ref).is_absolute() ? fs::path(ref) : fs::path(conv.source).parent_path() / ref;
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    detail = cat(p.string(), ": ", std::strerror(errno));
    return errno == ENOENT ? skip::kMissingImageFile : skip::kUnreadableImageFile;
  }
  if (!S_ISREG(st.st_mode)) {
    detail = cat(p.string(), " is not a regular file");
    return skip::kUnreadableImageFile;
  }
  if (st.st_size > options_.max_image_bytes) {
    detail = cat(p.string(), " has ", st.st_size, " bytes, limit ", options_.max_image_bytes);
    return skip::kImageTooLarge;
  }
  std::ifstream in(p, std::ios::binary);
  out.resize(static_cast<size_t>(st.st_size));
  if (!in || !in.read(out.data(), st.st_size)) {
    detail = cat(p.string(), ": read failed");
    return skip::kUnreadableImageFile;
  }
  return out.empty() ? skip::kEmptyImage : std::string_view{};
}

namespace {

// A video given as one folder: its regular files in name order.
std::vector<std::string> folder_frames(const fs::path& dir) {
  std::vector<std::string> frames;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file(ec)) frames.push_back(e.path().string());
  std::sort(frames.begin(), frames.end());
  return frames;
}

}  // namespace

bool ChatReader::load_vision(Conversation& conv) {
  for (ChatMessage& m : conv.messages)
    for (ChatPart& part : m.parts) {
      if (!part.is_vision()) continue;
      if (part.kind == ChatPartKind::kVideo && part.refs.size() == 1) {
        const fs::path p = fs::path(part.refs[0]).is_absolute()
                               ? fs::path(part.refs[0])
                               : fs::path(conv.source).parent_path() / part.refs[0];
        if (!fs::is_directory(p)) {
          skips_->add(skip::kBadVideo, conv.origin(),
                      cat("'", part.refs[0],
                          "' is not a folder of frames (videos are given as "
                          "frame images)"));
          return false;
        }
        part.refs = folder_frames(p);
        if (part.refs.empty()) {
          skips_->add(skip::kBadVideo, conv.origin(), cat(p.string(), " holds no frames"));
          return false;
        }
      }
      for (const std::string& ref : part.refs) {
        std::string bytes, detail;
        const std::string_view reason = load_file(ref, conv, bytes, detail);
        if (!reason.empty()) {
          skips_->add(reason, conv.origin(),
                      cat("'", ref, "'", detail.empty() ? "" : ": ", detail));
          return false;
        }
        part.bytes.push_back(std::move(bytes));
      }
    }
  return true;
}

bool ChatReader::next(Conversation& conv) {
  std::string line;
  while (true) {
    if (!lines_ && !open_file()) return false;
    const LineReader::Result r = lines_->next(line);
    if (r == LineReader::Result::kEnd) {
      lines_.reset();
      at_.next_file();
      continue;
    }
    at_.advance(lines_->offset(), lines_->line_number());
    const std::string& file = at_.file();
    const int64_t line_no = lines_->line_number();
    if (r == LineReader::Result::kTooLong) {
      skips_->add(skip::kLineTooLong, cat(file, ":", line_no),
                  cat("longer than ", options_.max_line_bytes, " bytes"));
      continue;
    }
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    ChatRow row = parse_chat_row(line, file, line_no);
    if (!row.skip_reason.empty()) {
      skips_->add(row.skip_reason, cat(file, ":", line_no), row.detail);
      continue;
    }
    const int64_t vision = row.conv.vision_parts();
    if (options_.max_images > 0 && vision > options_.max_images) {
      skips_->add(skip::kTooManyImages, row.conv.origin(),
                  cat(vision, " images and videos, limit ", options_.max_images));
      continue;
    }
    if (!load_vision(row.conv)) continue;
    conv = std::move(row.conv);
    return true;
  }
}

ObelicsState ChatReader::state() const {
  return at_.state();
}

void ChatReader::restore(const ObelicsState& s) {
  at_.restore(s);
  lines_.reset();
  if (!at_.done()) open_file();
}

}  // namespace qv::data
