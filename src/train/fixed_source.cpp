#include "core/error.h"
#include "model/inputs_io.h"
#include "train/batch_source.h"

namespace qv::train {
namespace {

class FixedSource final : public BatchSource {
 public:
  FixedSource(const std::string& path, const model::ModelConfig* config, int rank, int world)
      : path_(path), batch_(model::load_inputs(path)) {
    if (world <= 1) return;
    QV_CHECK(config != nullptr, "fixed dataset: sharding needs the model config");
    QV_CHECK(batch_.batch % world == 0, path, ": batch of ", batch_.batch,
             " rows does not split evenly over ", world, " data-parallel ranks");
    const int64_t per = batch_.batch / world;
    batch_ = model::slice_rows(batch_, rank * per, (rank + 1) * per, config->image_token_id,
                               config->video_token_id, config->vision.merge_unit());
  }
  model::ModelInputs next() override {
    ++served_;
    return batch_;
  }
  nlohmann::json state() const override { return {{"served", served_}}; }
  void restore(const nlohmann::json& s) override { served_ = s.value("served", int64_t{0}); }
  std::string describe() const override { return "fixed batch from " + path_; }

 private:
  std::string path_;
  model::ModelInputs batch_;
  int64_t served_ = 0;
};

}  // namespace

std::unique_ptr<BatchSource> make_fixed_source(const std::string& path,
                                               const model::ModelConfig* config, int rank,
                                               int world_size) {
  return std::make_unique<FixedSource>(path, config, rank, world_size);
}

}  // namespace qv::train
