#include "data/pipeline/caption_sample.h"

#include "core/error.h"
#include "data/image/image_preprocess.h"
#include "data/sources/cc12m.h"
#include "data/utf8.h"

namespace qv::data {

TokenIds token_ids(const Tokenizer& tokenizer) {
  const SpecialTokens s = SpecialTokens::lookup(tokenizer);
  return {s.image_pad, s.video_pad, s.vision_start, s.vision_end, s.endoftext};
}

std::optional<Sample> build_caption_sample(const RawSample& raw, const Tokenizer& tokenizer,
                                           const TokenIds& tok, const CaptionSampleConfig& cfg,
                                           SkipStats& skips) {
  const std::string origin = raw.origin();
  const Cc12mPair pair = cc12m_pair(raw);
  if (!pair.ok()) {
    skips.add(pair.skip_reason, origin);
    return std::nullopt;
  }
  Sample s;
  s.origin = origin;
  try {
    const RgbImage image = decode_image(reinterpret_cast<const uint8_t*>(pair.image.data()),
                                        pair.image.size(), cfg.limits, origin);
    s.vision.push_back(preprocess_image(image, cfg.image));
  } catch (const Error& e) {
    skips.add("bad image", origin, e.what());
    return std::nullopt;
  }
  std::vector<int32_t> text = tokenizer.encode(pair.caption, /*allow_special=*/false);
  if (text.empty()) {
    skips.add(skip::kEmptyCaption, origin);
    return std::nullopt;
  }
  if (static_cast<int64_t>(text.size()) > cfg.max_caption_tokens)
    text.resize(cfg.max_caption_tokens);
  const int64_t merged = merged_token_count(s.vision[0].grid, cfg.image.merge_size);
  s.ids.push_back(tok.vision_start);
  s.ids.insert(s.ids.end(), merged, tok.image_pad);
  s.ids.push_back(tok.vision_end);
  s.labels.assign(s.ids.size(), kIgnore);
  s.ids.insert(s.ids.end(), text.begin(), text.end());
  s.labels.insert(s.labels.end(), text.begin(), text.end());
  s.ids.push_back(tok.endoftext);
  s.labels.push_back(tok.endoftext);
  return s;
}

}  // namespace qv::data

#include "data/sources/obelics.h"

namespace qv::data {

std::optional<Sample> build_interleaved_sample(const Document& doc, const Tokenizer& tokenizer,
                                               const TokenIds& tok, const CaptionSampleConfig& cfg,
                                               SkipStats& skips) {
  Sample s;
  s.origin = doc.origin();
  int64_t text_tokens = 0;
  for (const DocItem& item : doc.items) {
    if (item.is_image) {
      try {
        const RgbImage image =
            decode_image(reinterpret_cast<const uint8_t*>(item.image_bytes.data()),
                         item.image_bytes.size(), cfg.limits, doc.origin() + " " + item.image_ref);
        s.vision.push_back(preprocess_image(image, cfg.image));
      } catch (const Error& e) {
        skips.add("bad image", doc.origin(), e.what());
        return std::nullopt;
      }
      const int64_t merged = merged_token_count(s.vision.back().grid, cfg.image.merge_size);
      s.ids.push_back(tok.vision_start);
      s.ids.insert(s.ids.end(), merged, tok.image_pad);
      s.ids.push_back(tok.vision_end);
      s.labels.resize(s.ids.size(), kIgnore);
      continue;
    }
    if (utf8::find_invalid(item.text) != std::string_view::npos) {
      skips.add("text is not valid UTF-8", doc.origin());
      return std::nullopt;
    }
    const std::vector<int32_t> ids = tokenizer.encode(item.text, /*allow_special=*/false);
    s.ids.insert(s.ids.end(), ids.begin(), ids.end());
    s.labels.insert(s.labels.end(), ids.begin(), ids.end());
    text_tokens += static_cast<int64_t>(ids.size());
  }
  if (text_tokens == 0) {
    skips.add("document without text", doc.origin());
    return std::nullopt;
  }
  s.ids.push_back(tok.endoftext);
  s.labels.push_back(tok.endoftext);
  return s;
}

}  // namespace qv::data
