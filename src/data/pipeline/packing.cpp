#include "data/pipeline/packing.h"

#include <algorithm>

#include "core/error.h"

namespace qv::data {

bool fit_to_length(Sample& s, int64_t seq_len, const TokenIds& t) {
  if (s.length() > seq_len && !s.cut_points.empty()) {
    // At the last turn boundary that fits; none fits: nothing to train on.
    CutPoint cut;
    while (!s.cut_points.empty() && s.cut_points.back().length > seq_len) s.cut_points.pop_back();
    if (!s.cut_points.empty()) cut = s.cut_points.back();
    s.ids.resize(cut.length);
    s.labels.resize(cut.length);
    s.vision.resize(cut.vision_items);
  } else if (s.length() > seq_len) {
    // Find the last cut point <= seq_len that is not inside a vision block, and how many vision
    // items lie wholly before it.
    int64_t cut = seq_len, items = 0, open = -1;
    for (int64_t i = 0; i < seq_len; ++i) {
      if (s.ids[i] == t.vision_start) open = i;
      if (s.ids[i] == t.vision_end && open >= 0) {
        open = -1;
        ++items;
      }
    }
    if (open >= 0) cut = open;  // a block starts before seq_len but ends after it
    s.ids.resize(cut);
    s.labels.resize(cut);
    s.vision.resize(std::min<int64_t>(items, static_cast<int64_t>(s.vision.size())));
  }
  // Trainable: at least one target after the shift.
  int64_t kept = 0;
  for (size_t i = 1; i < s.labels.size(); ++i) kept += s.labels[i] != kIgnore;
  return kept > 0;
}

void Packer::add(Sample s) {
  QV_CHECK(s.length() <= c_.seq_len, s.origin, ": sample of ", s.length(),
           " tokens is longer than seq_len ", c_.seq_len, " (fit it first)");
  buffer_.push_back(std::move(s));
  if (static_cast<int64_t>(buffer_.size()) >= c_.buffer_size) pack(/*keep_last_open=*/true);
}

void Packer::flush() {
  pack(false);
}

void Packer::pack(bool keep_last_open) {
  if (buffer_.empty()) return;
  // First-fit decreasing (stable, so equal lengths keep arrival order: deterministic).
  std::stable_sort(buffer_.begin(), buffer_.end(),
                   [](const Sample& a, const Sample& b) { return a.length() > b.length(); });
  std::vector<PackedRow> rows;
  for (Sample& s : buffer_) {
    const int64_t images = static_cast<int64_t>(s.vision.size());
    PackedRow* target = nullptr;
    for (PackedRow& r : rows)
      if (r.tokens + s.length() <= c_.seq_len && r.images + images <= c_.max_images_per_row) {
        target = &r;
        break;
      }
    if (!target) {
      rows.emplace_back();
      target = &rows.back();
    }
    target->tokens += s.length();
    target->images += images;
    target->docs.push_back(std::move(s));
  }
  buffer_.clear();
  // The emptiest row waits for more samples unless the data has ended.
  size_t keep = rows.size();
  if (keep_last_open && rows.size() > 1) {
    keep = 0;
    for (size_t i = 1; i < rows.size(); ++i)
      if (rows[i].tokens < rows[keep].tokens) keep = i;
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i == keep)
      for (Sample& s : rows[i].docs) buffer_.push_back(std::move(s));
    else
      ready_.push_back(std::move(rows[i]));
  }
}

void Packer::restore(std::vector<Sample> buffer, std::deque<PackedRow> ready) {
  for (PackedRow& r : ready) {
    r.tokens = r.images = 0;
    for (const Sample& s : r.docs) {
      r.tokens += s.length();
      r.images += static_cast<int64_t>(s.vision.size());
    }
  }
  buffer_ = std::move(buffer);
  ready_ = std::move(ready);
}

PackedRow Packer::pop_row() {
  QV_CHECK(!ready_.empty(), "Packer::pop_row on an empty queue");
  PackedRow r = std::move(ready_.front());
  ready_.pop_front();
  return r;
}

Batch collate(std::vector<PackedRow> rows, int64_t seq_len, int64_t patch_dim, const TokenIds& t) {
  Batch b;
  b.rows = static_cast<int64_t>(rows.size());
  b.seq = seq_len;
  b.patch_dim = patch_dim;
  b.ids.assign(b.rows * seq_len, t.endoftext);
  b.labels.assign(b.rows * seq_len, kIgnore);
  b.attention_mask.assign(b.rows * seq_len, 0);
  b.document_ids.assign(b.rows * seq_len, 0);
  for (int64_t r = 0; r < b.rows; ++r) {
    int64_t pos = 0, doc = 0;
    for (Sample& s : rows[r].docs) {
      QV_CHECK(pos + s.length() <= seq_len, s.origin, ": row overflow while collating");
      for (int64_t i = 0; i < s.length(); ++i) {
        const int64_t k = r * seq_len + pos + i;
        b.ids[k] = s.ids[i];
        b.labels[k] = s.labels[i];
        b.attention_mask[k] = 1;
        b.document_ids[k] = doc;
      }
      for (VisionItem& v : s.vision) {
        QV_CHECK(static_cast<int64_t>(v.pixels.size()) == v.grid.patches() * patch_dim, s.origin,
                 ": vision item has ", v.pixels.size(), " values, grid needs ",
                 v.grid.patches() * patch_dim);
        auto& dst = v.is_video ? b.video_pixels : b.image_pixels;
        dst.insert(dst.end(), v.pixels.begin(), v.pixels.end());
        (v.is_video ? b.video_grids : b.image_grids).push_back(v.grid);
      }
      b.origins.push_back(s.origin);
      pos += s.length();
      ++doc;
    }
    for (int64_t i = pos; i < seq_len; ++i) b.document_ids[r * seq_len + i] = doc;  // padding
  }
  return b;
}

}  // namespace qv::data
