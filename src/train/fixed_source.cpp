#include "model/inputs_io.h"
#include "train/batch_source.h"

namespace qv::train {
namespace {

class FixedSource final : public BatchSource {
 public:
  explicit FixedSource(const std::string& path) : path_(path), batch_(model::load_inputs(path)) {}
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

std::unique_ptr<BatchSource> make_fixed_source(const std::string& path) {
  return std::make_unique<FixedSource>(path);
}

}  // namespace qv::train
