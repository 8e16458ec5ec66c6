// Image-caption pairs (cc12m's WebDataset layout: an image member plus .txt or .json caption)
// into training samples: <|vision_start|> <|image_pad|> x merged tokens <|vision_end|> caption
// <|endoftext|>, with labels only on the caption and the end token.
#pragma once
#include <optional>

#include "data/image/image_decode.h"
#include "data/image/image_processor_config.h"
#include "data/pipeline/sample.h"
#include "data/skip_stats.h"
#include "data/sources/webdataset.h"
#include "data/tokenizer/tokenizer.h"

namespace qv::data {

struct CaptionSampleConfig {
  ImageProcessorConfig image;
  DecodeLimits limits;
  int64_t max_caption_tokens = 4096;
};

// Returns the sample, or nothing after recording the reason in `skips` (no image, no caption,
// invalid UTF-8, undecodable or degenerate image, ...).
std::optional<Sample> build_caption_sample(const RawSample& raw, const Tokenizer& tokenizer,
                                           const TokenIds& tokens,
                                           const CaptionSampleConfig& config, SkipStats& skips);

// The special ids the data path needs, from the tokenizer.
TokenIds token_ids(const Tokenizer& tokenizer);

}  // namespace qv::data

namespace qv::data {

struct Document;

// An interleaved document (OBELICS) into one sample: text runs tokenized with labels, images as
// vision blocks without labels, in document order, then <|endoftext|>. A document whose images
// cannot be decoded is skipped as a whole (its text refers to them).
std::optional<Sample> build_interleaved_sample(const Document& doc, const Tokenizer& tokenizer,
                                               const TokenIds& tokens,
                                               const CaptionSampleConfig& config, SkipStats& skips);

}  // namespace qv::data
