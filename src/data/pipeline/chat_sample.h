// Conversations (data/sources/chat_jsonl.h) rendered the way the Qwen3-VL Instruct chat template
// renders them, tokenized with assistant-only labels, and built into training samples.
//
// Rendering (no generation prompt, no default system prompt): an optional system turn (with a
// "# Tools" preamble listing each tool's tojson when the conversation has tools), then ChatML
// turns "<|im_start|>role\n...<|im_end|>\n"; each image is <|vision_start|><|image_pad|>
// <|vision_end|>, each video <|vision_start|><|video_pad|><|vision_end|>; assistant tool calls as
// "<tool_call>\n{\"name\": ..., \"arguments\": ...}\n</tool_call>" lines; consecutive tool
// messages share one user turn of "<tool_response>\n...\n</tool_response>" blocks.
// tests/test_chat_data.cpp checks it against the real template rendered by @huggingface/jinja.
//
// Labels: -100 everywhere except each assistant turn's content and tool calls through its closing
// <|im_end|> (the "<|im_start|>assistant\n" header and the "\n" after <|im_end|> are not targets).
// Targets come from the message structure, and message text is tokenized with special tokens
// off, so text that spells "<|im_end|>" or "<|im_start|>assistant" is plain text and cannot open
// or close a target span. Otherwise the ids equal the tokenization of the rendered text, with one
// deliberate difference: the assistant header is tokenized apart from the content, as it is when
// the model generates after the "<|im_start|>assistant\n" prompt (this only changes ids when the
// content starts with whitespace that would merge with the header's "\n").
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "data/pipeline/caption_sample.h"
#include "data/pipeline/sample.h"
#include "data/skip_stats.h"
#include "data/sources/chat_jsonl.h"
#include "data/tokenizer/tokenizer.h"

namespace qv::data {

// The rendered text, each image / video as a single pad token (what the Jinja template returns).
std::string render_chat(const Conversation& conv);

// How one vision part is written into the token stream when expanded for training: an image is
// one block of `tokens_per_group` pads; a video is one block per temporal group, each after its
// "<t seconds>" timestamp text (Qwen3VLProcessor's layout).
struct VisionExpansion {
  int64_t tokens_per_group = 1;
  std::vector<std::string> timestamps;  // videos: one per group, e.g. "<0.5 seconds>"
};

struct ChatTokens {
  std::vector<int32_t> ids, labels;
  std::vector<int64_t> turn_ends;  // lengths after each assistant turn (its "\n" included)
};

// Tokens and assistant-only labels. `expansions` (one per vision part, in order) expands the
// pads; without it each image / video is a single pad token between its vision markers.
ChatTokens tokenize_chat(const Conversation& conv, const Tokenizer& tokenizer,
                         const std::vector<VisionExpansion>* expansions = nullptr);

// Video timestamps as Qwen3VLProcessor writes them for frames sampled at `fps`: per group of
// `temporal_patch_size` frames (the last frame repeated to fill the final group) the mean time of
// its first and last frame, "<%.1f seconds>".
std::vector<std::string> video_timestamps(int64_t frames, double fps, int temporal_patch_size);

// A conversation (images and frames loaded by ChatReader) into a training sample: vision parts
// decoded and preprocessed, pads expanded, turn_ends as its cut points. Skips (counted in
// `skips`): undecodable image or video, no assistant turn, invalid UTF-8 text.
std::optional<Sample> build_chat_sample(const Conversation& conv, const Tokenizer& tokenizer,
                                        const TokenIds& tokens, const CaptionSampleConfig& config,
                                        SkipStats& skips);

// The model folder's chat template (chat_template.jinja, chat_template.json or
// tokenizer_config.json's "chat_template", looked up in `dir`) compared with Qwen3-VL Instruct's:
// empty when it is that template or the folder has none, else a sentence saying what differs.
std::string chat_template_mismatch(const std::string& dir);
// CRC-32C of a template text with trailing whitespace removed (how templates are compared).
uint32_t chat_template_crc(const std::string& text);

}  // namespace qv::data
