// Byte-level BPE over raw bytes: a word's bytes start as single-byte tokens, and adjacent pairs are
// merged lowest rank first (leftmost first among equal ranks) until no listed merge applies.
// Merge ranks sit in an open-addressing table keyed by the pair of token ids; results for
// recently seen words are kept in a bounded, thread-safe cache.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer/string_hash.h"

namespace qv::data {

struct MergeRule {
  int32_t left, right, merged;  // token ids; merged spells left's bytes followed by right's
};

class BpeModel {
 public:
  // byte_token[b]: id of the token spelling the single byte b. merges: in rank order (a pair that
  // occurs twice keeps its later rank, as Hugging Face's loader does). vocab: raw bytes -> id,
  // used when ignore_merges is set (a word that is itself a token is taken whole).
  BpeModel(const std::vector<int32_t>& byte_token, const std::vector<MergeRule>& merges,
           StringMap<int32_t> vocab, bool ignore_merges, size_t cache_capacity);
  ~BpeModel();
  BpeModel(BpeModel&&) noexcept;

  // Appends the ids of one pre-tokenized word (raw bytes).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  // Id of the token spelling exactly these raw bytes, or -1.
  int32_t token_of_bytes(std::string_view bytes) const;

 private:
  void merge(std::string_view word, std::vector<int32_t>& out) const;

  struct PairTable;
  struct WordCache;
  int32_t byte_token_[256];
  std::vector<MergeRule> merges_;  // by rank
  std::unique_ptr<PairTable> pairs_;
  StringMap<int32_t> vocab_;
  bool ignore_merges_;
  std::unique_ptr<WordCache> cache_;
};

}  // namespace qv::data
