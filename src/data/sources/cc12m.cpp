#include "data/sources/cc12m.h"

#include <nlohmann/json.hpp>

#include "data/utf8.h"
#include "io/json_depth.h"

namespace qv::data {

namespace {

constexpr std::string_view kImageExtensions[] = {"jpg", "jpeg", "png", "webp"};

bool is_blank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos;
}

// The caption, or false when the sample has none (a .json without a string "caption" field, or
// one that does not parse, counts as none).
bool find_caption(const RawSample& s, std::string& caption) {
  if (auto txt = s.members.find("txt"); txt != s.members.end()) {
    caption = txt->second;
    return true;
  }
  auto js = s.members.find("json");
  if (js == s.members.end()) return false;
  if (io::json_depth_violation(js->second) != std::string_view::npos) return false;
  const auto j = nlohmann::json::parse(js->second, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("caption") || !j["caption"].is_string()) return false;
  caption = j["caption"].get<std::string>();
  return true;
}

}  // namespace

Cc12mPair cc12m_pair(const RawSample& sample) {
  Cc12mPair p;
  for (std::string_view ext : kImageExtensions) {
    auto it = sample.members.find(std::string(ext));
    if (it == sample.members.end()) continue;
    p.image = it->second;
    p.image_ext = it->first;
    break;
  }
  if (p.image_ext.empty()) {
    p.skip_reason = skip::kNoImage;
  } else if (p.image.empty()) {
    p.skip_reason = skip::kEmptyImage;
  } else if (!find_caption(sample, p.caption)) {
    p.skip_reason = skip::kNoCaption;
  } else if (utf8::find_invalid(p.caption) != std::string_view::npos) {
    p.skip_reason = skip::kInvalidUtf8Caption;
  } else if (is_blank(p.caption)) {
    p.skip_reason = skip::kEmptyCaption;
  }
  if (!p.ok()) p.caption.clear();
  return p;
}

}  // namespace qv::data
