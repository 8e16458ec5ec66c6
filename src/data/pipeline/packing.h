// Buffered greedy packing of samples into rows of seq_len tokens, keeping document boundaries
// (the model restarts positions per document and never attends across them), and collation of
// rows into batches.
#pragma once
#include <deque>
#include <vector>

#include "data/pipeline/sample.h"

namespace qv::data {

struct PackingConfig {
  int64_t seq_len = 2048;
  int64_t buffer_size = 100;  // samples held before packing (more = tighter rows)
  int64_t max_images_per_row = 64;
};

struct PackedRow {
  std::vector<Sample> docs;
  int64_t tokens = 0;
  int64_t images = 0;
};

// Shortens a sample to at most seq_len tokens without cutting an image block: a block that
// would be cut is dropped with everything after it; a sample with cut points (chat) is cut at the
// last one that fits. Returns false when nothing trainable is left.
bool fit_to_length(Sample& s, int64_t seq_len, const TokenIds& tokens);

class Packer {
 public:
  Packer(const PackingConfig& config, const TokenIds& tokens) : c_(config), tokens_(tokens) {}
  // Adds a sample (already fitted to seq_len); packs when the buffer is full.
  void add(Sample s);
  // Packs whatever is buffered (end of data).
  void flush();
  bool has_row() const { return !ready_.empty(); }
  PackedRow pop_row();
  int64_t buffered() const { return static_cast<int64_t>(buffer_.size()); }
  // Contents, for loader checkpoints: samples waiting to be packed, in buffer order, and packed
  // rows not yet popped. restore() puts such contents back (row sizes are recomputed).
  const std::vector<Sample>& buffer() const { return buffer_; }
  const std::deque<PackedRow>& ready() const { return ready_; }
  void restore(std::vector<Sample> buffer, std::deque<PackedRow> ready);

 private:
  void pack(bool keep_last_open);
  PackingConfig c_;
  TokenIds tokens_;
  std::vector<Sample> buffer_;
  std::deque<PackedRow> ready_;
};

// Rows -> a batch of seq_len columns. Padding tokens (endoftext) have label -100, attention
// mask 0 and their own document id.
Batch collate(std::vector<PackedRow> rows, int64_t seq_len, int64_t patch_dim,
              const TokenIds& tokens);

}  // namespace qv::data
