#include "model/inputs.h"

#include <cstring>

#include "core/error.h"

namespace qv::model {

namespace {

// Splits one modality's patches: returns the grids and pixel rows used by rows [b0, b1).
void slice_modality(const ModelInputs& in, int64_t token_id, int64_t merge_unit, int64_t b0,
                    int64_t b1, const Tensor& pixels, const std::vector<Grid>& grids,
                    Tensor& out_pixels, std::vector<Grid>& out_grids) {
  if (!pixels.defined()) return;
  // Placeholder tokens before row b0 and within [b0, b1).
  int64_t before = 0, inside = 0;
  for (int64_t i = 0; i < in.batch * in.seq; ++i) {
    if (in.input_ids[i] != token_id) continue;
    if (i < b0 * in.seq)
      ++before;
    else if (i < b1 * in.seq)
      ++inside;
  }
  int64_t tokens = 0, patch_begin = 0, patch_end = 0;
  for (const Grid& g : grids) {
    const int64_t merged = g.patches() / merge_unit;
    if (tokens + merged <= before) {
      patch_begin += g.patches();
      patch_end = patch_begin;
    } else if (tokens < before + inside) {
      QV_CHECK(tokens >= before, "an image's placeholders straddle a row boundary");
      out_grids.push_back(g);
      patch_end += g.patches();
    }
    tokens += merged;
  }
  if (out_grids.empty()) return;
  const int64_t dim = pixels.dim(1);
  out_pixels = Tensor(DType::kF32, {patch_end - patch_begin, dim});
  std::memcpy(out_pixels.raw(), pixels.data<float>() + patch_begin * dim, out_pixels.nbytes());
}

}  // namespace

ModelInputs slice_rows(const ModelInputs& in, int64_t b0, int64_t b1, int64_t image_token_id,
                       int64_t video_token_id, int64_t merge_unit) {
  QV_CHECK(0 <= b0 && b0 < b1 && b1 <= in.batch, "slice_rows: bad row range [", b0, ", ", b1,
           ") of ", in.batch);
  ModelInputs out;
  out.batch = b1 - b0;
  out.seq = in.seq;
  auto rows = [&](const std::vector<int64_t>& v) {
    return v.empty() ? v : std::vector<int64_t>(v.begin() + b0 * in.seq, v.begin() + b1 * in.seq);
  };
  out.input_ids = rows(in.input_ids);
  out.labels = rows(in.labels);
  out.attention_mask = rows(in.attention_mask);
  out.document_ids = rows(in.document_ids);
  slice_modality(in, image_token_id, merge_unit, b0, b1, in.pixel_values, in.image_grids,
                 out.pixel_values, out.image_grids);
  slice_modality(in, video_token_id, merge_unit, b0, b1, in.pixel_values_videos, in.video_grids,
                 out.pixel_values_videos, out.video_grids);
  return out;
}

}  // namespace qv::model
