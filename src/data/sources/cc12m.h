// cc12m-style image-caption samples: an image member (jpg, jpeg, png or webp, in that order of
// preference) and a caption (the .txt member, else the "caption" field of the .json member).
#pragma once
#include <string>
#include <string_view>

#include "data/sources/webdataset.h"

namespace qv::data {

struct Cc12mPair {
  std::string_view image;        // bytes, pointing into the sample (valid while it lives)
  std::string_view image_ext;    // "jpg", "png", ...
  std::string caption;           // valid UTF-8, not blank
  std::string_view skip_reason;  // empty when the pair is usable, else a skip:: reason
  bool ok() const { return skip_reason.empty(); }
};

// Never throws for bad content; the caller counts the reason (SkipStats::add with
// sample.origin()), as the decision to skip is the consumer's.
Cc12mPair cc12m_pair(const RawSample& sample);

}  // namespace qv::data
