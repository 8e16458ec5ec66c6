// What the model consumes: token rows, optional labels / padding mask / packed-document ids, and
// the patches of all images and videos of the batch concatenated (HF processor layout).
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace qv::model {

struct Grid {
  int64_t t = 1, h = 0, w = 0;  // in patches
  int64_t patches() const { return t * h * w; }
};

struct ModelInputs {
  int64_t batch = 0, seq = 0;
  std::vector<int64_t> input_ids;       // [batch * seq]
  std::vector<int64_t> labels;          // [batch * seq], -100 = ignored; empty = no loss
  std::vector<int64_t> attention_mask;  // [batch * seq], 0 = padding; empty = all ones
  // [batch * seq]; within a row, a change of value starts a new document (packed samples):
  // attention never crosses documents, positions restart, and a document's last token does not
  // learn to predict the next document's first. Empty = one document per row.
  std::vector<int64_t> document_ids;
  Tensor pixel_values;  // [sum t*h*w, C*T*P*P] float32, or undefined
  std::vector<Grid> image_grids;
  Tensor pixel_values_videos;
  std::vector<Grid> video_grids;

  int64_t tokens() const { return batch * seq; }
  bool valid(int64_t i) const { return attention_mask.empty() || attention_mask[i] != 0; }
};

}  // namespace qv::model

namespace qv::model {

// Rows [row_begin, row_end) of a batch, with the images and videos whose placeholders lie in
// those rows (grids are consumed in placeholder order, as the model does).
ModelInputs slice_rows(const ModelInputs& in, int64_t row_begin, int64_t row_end,
                       int64_t image_token_id, int64_t video_token_id, int64_t merge_unit);

}  // namespace qv::model
