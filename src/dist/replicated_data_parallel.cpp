// Replicated data parallelism: full gradients all-reduced. With overlap, a unit's gradient
// joins a bucket as soon as its backward is done in the step's last micro-batch, and a full
// bucket is all-reduced without blocking while backward continues; the rest (the vision tower,
// which runs last in backward, and frozen units) is all-reduced after backward.
#include <algorithm>

#include "core/error.h"
#include "dist/data_parallel.h"

namespace qv::dist {
namespace {

constexpr int64_t kBucketFloats = 25 << 18;  // 25 MiB, DDP's default bucket size

class ReplicatedDataParallel final : public DataParallel {
 public:
  ReplicatedDataParallel(model::ParamStore& store, Communicator& world, bool overlap)
      : store_(store), world_(world), overlap_(overlap && world.size() > 1) {
    owned_ = {{0, store.total()}};
    // Vision units run once per image / video pass, so their gradient is complete only after
    // the tower's last pass: they are reduced with what is left after backward.
    for (const auto& u : store.units()) {
      bool vision = false;
      for (size_t e : u.entries) vision = vision || store.entries()[e].is_vision;
      eligible_.push_back(!vision);
    }
  }
  const std::vector<FlatRange>& owned() const override { return owned_; }
  void begin_step() override {
    store_.zero_grads();
    started_.assign(store_.units().size(), 0);
  }
  void begin_micro_batch(bool last) override { last_ = last; }
  void gather(int) override {}
  void release(int) override {}
  void grads_ready(int unit) override {
    if (!overlap_ || !last_ || !eligible_[unit] || started_[unit] || unit_frozen(unit)) return;
    started_[unit] = 1;
    const auto& u = store_.units()[unit];
    // Units finish in reverse layout order, so a bucket grows downwards.
    if (bucket_.size() > 0 && u.end == bucket_.begin) {
      bucket_.begin = u.begin;
    } else {
      flush();
      bucket_ = {u.begin, u.end};
    }
    if (bucket_.size() >= kBucketFloats) flush();
    world_.progress();
  }
  void finish_grads() override {
    if (world_.size() == 1) return;
    if (!overlap_) {
      world_.all_reduce_sum(store_.grads().data(), store_.total());
      return;
    }
    flush();
    world_.wait_all();
    // What was not reduced during backward, in runs of adjacent units.
    const auto& units = store_.units();
    for (size_t i = 0; i < units.size();) {
      if (started_[i]) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < units.size() && !started_[j]) ++j;
      world_.all_reduce_sum(store_.grads().data() + units[i].begin,
                            units[j - 1].end - units[i].begin);
      i = j;
    }
  }
  void sum_over_shards(double*, int64_t) override {}
  void max_over_shards(double*, int64_t) override {}
  void gather_all() override {}
  void release_all() override {}
  std::string describe() const override {
    return cat("replicated over ", world_.size(), " ranks",
               overlap_ ? ", gradient all-reduce overlapped with backward" : "");
  }

 private:
  bool unit_frozen(int unit) const {
    for (size_t e : store_.units()[unit].entries)
      if (!store_.frozen(e)) return false;
    return true;
  }
  void flush() {
    if (bucket_.size() > 0)
      world_.start_all_reduce_sum(store_.grads().data() + bucket_.begin, bucket_.size());
    bucket_ = {};
  }
  model::ParamStore& store_;
  Communicator& world_;
  bool overlap_;
  bool last_ = true;
  std::vector<FlatRange> owned_;
  std::vector<uint8_t> eligible_, started_;
  FlatRange bucket_;
};

}  // namespace

std::unique_ptr<DataParallel> make_replicated(model::ParamStore& store, Communicator& world,
                                              bool overlap_grad_reduce) {
  return std::make_unique<ReplicatedDataParallel>(store, world, overlap_grad_reduce);
}

std::unique_ptr<DataParallel> make_data_parallel(model::ParamStore& store, Communicator& world,
                                                 const ParallelDims& dims,
                                                 bool overlap_grad_reduce) {
  if (dims.sharded()) return make_sharded(store, world, dims);
  return make_replicated(store, world, overlap_grad_reduce);
}

}  // namespace qv::dist
