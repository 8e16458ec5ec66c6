// BatchSource over the data loader (cc12m WebDataset shards).
#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "data/pipeline/loader.h"
#include "train/data_source.h"

namespace qv::train {

model::ModelInputs batch_to_inputs(data::Batch&& b) {
  model::ModelInputs in;
  in.batch = b.rows;
  in.seq = b.seq;
  in.input_ids = std::move(b.ids);
  in.labels = std::move(b.labels);
  in.attention_mask = std::move(b.attention_mask);
  in.document_ids = std::move(b.document_ids);
  auto pixels = [&](std::vector<float>& v, const std::vector<data::VisionGrid>& grids, Tensor& out,
                    std::vector<model::Grid>& out_grids) {
    if (grids.empty()) return;
    out = Tensor(DType::kF32, {static_cast<int64_t>(v.size()) / b.patch_dim, b.patch_dim});
    std::memcpy(out.raw(), v.data(), v.size() * sizeof(float));
    for (const auto& g : grids) out_grids.push_back({g.t, g.h, g.w});
  };
  pixels(b.image_pixels, b.image_grids, in.pixel_values, in.image_grids);
  pixels(b.video_pixels, b.video_grids, in.pixel_values_videos, in.video_grids);
  return in;
}

namespace {

class LoaderSource final : public BatchSource {
 public:
  explicit LoaderSource(data::LoaderConfig c) : loader_(std::move(c)) {}
  model::ModelInputs next() override { return batch_to_inputs(loader_.next()); }
  nlohmann::json state() const override { return loader_.state(); }
  void restore(const nlohmann::json& s) override { loader_.restore(s); }
  void restore_resharded(const std::vector<nlohmann::json>& states, bool next_epoch) override {
    int64_t epoch = 0;
    for (const auto& s : states)
      if (s.contains("pipeline")) epoch = std::max(epoch, s["pipeline"].value("epoch", int64_t{0}));
    loader_.restart_at_epoch(epoch + (next_epoch ? 1 : 0));
  }
  std::string describe() const override {
    const auto& c = loader_.config();
    return cat(c.dataset, " shards ", c.path, " (rank ", c.rank, " of ", c.world_size, "), ",
               c.batch_size, " x ", c.seq_len, " tokens per batch, packed");
  }
  int64_t skipped() const override { return loader_.skips().total(); }

 private:
  data::DataLoader loader_;
};

}  // namespace

data::LoaderConfig loader_config(const JobConfig& c, const model::ModelConfig& m, int rank,
                                 int world) {
  QV_CHECK(c.patch_size == m.vision.patch_size &&
               c.temporal_patch_size == m.vision.temporal_patch_size &&
               c.spatial_merge_size == m.vision.spatial_merge_size,
           "[data] patch_size / temporal_patch_size / spatial_merge_size (", c.patch_size, " / ",
           c.temporal_patch_size, " / ", c.spatial_merge_size,
           ") must match the model's vision config (", m.vision.patch_size, " / ",
           m.vision.temporal_patch_size, " / ", m.vision.spatial_merge_size, ")");
  QV_CHECK(!c.tokenizer_path.empty(), "[model] tokenizer_path is required for dataset '", c.dataset,
           "'");
  QV_CHECK(!c.dataset_path.empty(), "[training] dataset_path is required for dataset '", c.dataset,
           "'");
  data::LoaderConfig l;
  l.dataset = c.dataset;
  l.path = c.dataset_path;
  l.tokenizer_path = c.tokenizer_path;
  l.seq_len = c.seq_len;
  l.batch_size = c.local_batch_size;
  l.packing_buffer_size = c.packing_buffer_size;
  l.max_images_per_row = std::max<int64_t>(1, c.max_images_per_batch / c.local_batch_size);
  QV_CHECK(c.max_images_per_sample <= l.max_images_per_row, "[data] max_images_per_sample (",
           c.max_images_per_sample, ") exceeds the images one row may hold (", l.max_images_per_row,
           " = max_images_per_batch / local_batch_size): a sample has to fit in one row");
  l.max_tokens_per_sample = c.max_tokens_per_sample;
  l.truncate_long_samples = JobChoices::parse(c).truncate_long_samples;
  l.max_images_per_sample = c.max_images_per_sample;
  l.seed = static_cast<uint64_t>(c.seed);
  l.rank = rank;
  l.world_size = world;
  l.num_workers = static_cast<int>(c.num_workers);
  l.prefetch = c.prefetch;
  auto& img = l.sample.image;
  img.patch_size = static_cast<int>(c.patch_size);
  img.temporal_patch_size = static_cast<int>(c.temporal_patch_size);
  img.merge_size = static_cast<int>(c.spatial_merge_size);
  img.min_pixels = c.min_pixels;
  // max_patches_per_image counts merged tokens: each covers (patch * merge)^2 pixels.
  const int64_t factor = c.patch_size * c.spatial_merge_size;
  img.max_pixels = std::min(c.max_pixels, c.max_patches_per_image * factor * factor);
  QV_CHECK(img.min_pixels <= img.max_pixels, "[data] min_pixels (", img.min_pixels,
           ") exceeds the pixel budget of max_patches_per_image / max_pixels (", img.max_pixels,
           ")");
  return l;
}

std::unique_ptr<BatchSource> make_loader_source(const JobConfig& c, const model::ModelConfig& m,
                                                int rank, int world) {
  return std::make_unique<LoaderSource>(loader_config(c, m, rank, world));
}

}  // namespace qv::train
