// Sharded data parallelism (FSDP / ZeRO-3), optionally replicated across shard groups (HSDP).
// Every parameter unit spans whole pages per shard, so this rank keeps [own, own + chunk) of
// each unit and returns the other pages of the parameter and gradient buffers to the OS; an
// all-gather into the same addresses brings a unit's parameters back for its forward and
// backward, a reduce-scatter leaves this rank the sum of its chunk of a unit's gradient.
#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "dist/data_parallel.h"

namespace qv::dist {
namespace {

class ShardedDataParallel final : public DataParallel {
 public:
  ShardedDataParallel(model::ParamStore& store, Communicator& world, const ParallelDims& dims)
      : store_(store), dims_(dims) {
    // Shard groups are consecutive ranks; replica groups take one rank from each.
    const int rank = world.rank(), shard = static_cast<int>(dims.shard);
    shard_ = world.split(rank / shard, rank);
    if (dims.replicate > 1) replicate_ = world.split(rank % shard, rank);
    const int64_t align = dims.shard * PageBuffer::floats_per_page();
    for (const auto& u : store.units()) {
      QV_CHECK(u.begin % align == 0 && (u.end - u.begin) % align == 0, "parameter unit '", u.name,
               "' is not aligned to ", align, " floats (build the model with unit_alignment())");
      const int64_t chunk = (u.end - u.begin) / dims.shard;
      const int64_t own = u.begin + chunk * shard_->rank();
      owned_.push_back({own, own + chunk});
    }
    gathered_.assign(store.units().size(), 1);  // the model starts with every parameter
    frozen_.assign(store.units().size(), 0);
  }

  const std::vector<FlatRange>& owned() const override { return owned_; }

  void begin_step() override {
    // Gradients outside the own chunks were returned to the OS after their reduce-scatter.
    for (const FlatRange& r : owned_)
      std::memset(store_.grads().data() + r.begin, 0, r.size() * sizeof(float));
    frozen_.clear();
    for (const auto& u : store_.units()) {
      bool all = true;
      for (size_t e : u.entries) all = all && store_.frozen(e);
      frozen_.push_back(all);
    }
  }
  void begin_micro_batch(bool) override {}

  void gather(int unit) override {
    if (gathered_[unit]) return;
    const auto& u = store_.units()[unit];
    const FlatRange& r = owned_[unit];
    float* v = store_.values().data();
    shard_->all_gather(v + r.begin, v + u.begin, r.size());
    // bf16 products read the gathered values' copies (the float values travel: norms and
    // biases are read in float; gathering bf16 alone would halve the bytes, see PERFORMANCE.md).
    store_.sync_bf16(u.begin, u.end);
    gathered_[unit] = 1;
  }
  void release(int unit) override {
    discard_others(store_.values(), unit);
    if (store_.has_bf16_copies()) {
      const auto& u = store_.units()[unit];
      const FlatRange& r = owned_[unit];
      store_.values_bf16().discard_inside(u.begin, r.begin - u.begin);
      store_.values_bf16().discard_inside(r.end, u.end - r.end);
    }
    gathered_[unit] = 0;
  }
  void grads_ready(int unit) override {
    if (frozen_[unit]) return;  // no gradient anywhere (every rank freezes the same units)
    const auto& u = store_.units()[unit];
    const FlatRange& r = owned_[unit];
    // The own chunk already holds the sum of earlier passes; the other ranks' chunks hold zeros
    // there, so the reduced chunk is that sum plus every rank's new contribution.
    scratch_.resize(r.size());
    shard_->reduce_scatter_sum(store_.grads().data() + u.begin, scratch_.data(), r.size());
    std::memcpy(store_.grads().data() + r.begin, scratch_.data(), r.size() * sizeof(float));
    discard_others(store_.grads(), unit);
  }

  void finish_grads() override {
    if (!replicate_) return;
    // Replicas hold the same chunks: one all-reduce over all of them.
    scratch_.clear();
    for (const FlatRange& r : owned_)
      scratch_.insert(scratch_.end(), store_.grads().data() + r.begin,
                      store_.grads().data() + r.end);
    replicate_->all_reduce_sum(scratch_.data(), static_cast<int64_t>(scratch_.size()));
    const float* p = scratch_.data();
    for (const FlatRange& r : owned_) {
      std::memcpy(store_.grads().data() + r.begin, p, r.size() * sizeof(float));
      p += r.size();
    }
  }
  void sum_over_shards(double* v, int64_t n) override { shard_->all_reduce_sum(v, n); }
  void max_over_shards(double* v, int64_t n) override { shard_->all_reduce_max(v, n); }

  void gather_all() override {
    for (size_t u = 0; u < owned_.size(); ++u) gather(static_cast<int>(u));
  }
  void release_all() override {
    for (size_t u = 0; u < owned_.size(); ++u) release(static_cast<int>(u));
  }
  void gather_state(const std::vector<float>& owned_state, std::vector<float>& full) override {
    full.assign(store_.total(), 0.0f);
    int64_t base = 0;
    for (size_t u = 0; u < owned_.size(); ++u) {
      shard_->all_gather(owned_state.data() + base, full.data() + store_.units()[u].begin,
                         owned_[u].size());
      base += owned_[u].size();
    }
  }
  std::string describe() const override {
    return cat("sharded (FSDP) over ", dims_.shard, " ranks",
               dims_.replicate > 1 ? cat(", replicated ", dims_.replicate, " times") : "");
  }

 private:
  // Returns the pages of the unit outside this rank's chunk to the OS (they read as zeros).
  void discard_others(PageBuffer& buf, int unit) {
    const auto& u = store_.units()[unit];
    const FlatRange& r = owned_[unit];
    buf.discard(u.begin, r.begin - u.begin);
    buf.discard(r.end, u.end - r.end);
  }
  model::ParamStore& store_;
  ParallelDims dims_;
  std::unique_ptr<Communicator> shard_, replicate_;
  std::vector<FlatRange> owned_;
  std::vector<uint8_t> gathered_, frozen_;
  std::vector<float> scratch_;
};

}  // namespace

std::unique_ptr<DataParallel> make_sharded(model::ParamStore& store, Communicator& world,
                                           const ParallelDims& dims) {
  return std::make_unique<ShardedDataParallel>(store, world, dims);
}

}  // namespace qv::dist
