// Sharded data parallelism (FSDP / ZeRO-3), optionally replicated across shard groups (HSDP).
// Every parameter unit spans whole pages per shard, so this rank keeps [own, own + chunk) of
// each unit and returns the other pages of the parameter and gradient buffers to the OS; an
// all-gather into the same addresses brings a unit's parameters back for its forward and
// backward, a reduce-scatter leaves this rank the sum of its chunk of a unit's gradient.
//
// bf16 mixed precision: a unit gathered for compute travels as bf16: every rank's chunk of the
// bf16 copies (AdamW writes them for the chunk it updates) is all-gathered, half the bytes of
// the float values; the entries the model also reads in float (norm weights, biases, LoRA
// adapters: ParamStore::bf16_only is false) follow in a second, small float
// all-gather of just their elements. The float masters of the other entries stay sharded. A
// unit without any bf16-only entry (the final norm) is gathered in float.
// gather_all() (saving, export, validation) gathers the float values of everything.
//
// The token embedding's lookup asks only for the rows of its tokens (gather_rows): the ranks
// sum a mask over the vocabulary, and the union of the rows they need travels in float (each
// rank packs the elements of those rows inside its chunk). The embedding's float values are
// read nowhere else, so an untied table is never gathered whole for compute, and a tied one
// is gathered whole only as bf16, for the classifier.
//
// Expert parallelism (dims.expert = ep > 1; torchtitan's dp_shard_mod_ep layout): an expert
// unit (ParamUnit::experts, one tensor stacking E experts) is split by expert first: the ep
// consecutive ranks of an EP group hold E / ep experts each (EP rank e: experts
// [e E / ep, (e + 1) E / ep), the ones it computes), and the shard / ep ranks of the shard
// group that hold the same experts split that slice between them (ZeRO-3 within them, chunks
// padded to equal size when the slice does not divide). Gathers for compute bring back only this
// rank's slice, and its gradient is reduce-scattered only over the ranks holding the same experts;
// the other experts' gradients on this rank are zero (the experts run on their owners) and are
// dropped.
//
// Devices: the store and every buffer here live on the store's device (a GPU's memory, which
// the host does not touch): moves inside the flat buffers are kernels::copy_on_device /
// zero_bytes / copy_rows, the collectives' buffers are device buffers (DeviceBuffer), and the
// one array the host computes (gather_rows' row mask) is staged through one. The calling
// thread's current device must be the store's (the trainer's DeviceScope). On the CPU each of
// these is the memcpy / memset it replaces.
#include <algorithm>

#include "core/device.h"
#include "core/error.h"
#include "dist/data_parallel.h"
#include "kernels/device.h"
#include "kernels/device_buffer.h"
#include "kernels/rows.h"

namespace qv::dist {
namespace {

// n elements from src to dst, both in the current device's memory (in order with its ops).
template <class T>
void copy_n(const T* src, int64_t n, T* dst) {
  if (n > 0) kernels::copy_on_device(dst, src, static_cast<size_t>(n) * sizeof(T));
}
template <class T>
void zero_n(T* p, int64_t n) {
  if (n > 0) kernels::zero_bytes(p, static_cast<size_t>(n) * sizeof(T));
}

// Sums a host array over `c`; off the CPU the collective runs on a copy in `staging` (the
// collectives' float buffers are device memory there).
void sum_host_floats(Communicator& c, std::vector<float>& host, DeviceBuffer<float>& staging) {
  const int64_t n = static_cast<int64_t>(host.size());
  if (staging.device().is_cpu()) return c.all_reduce_sum(host.data(), n);
  staging.assign_from_host(host.data(), host.size());
  c.all_reduce_sum(staging.data(), n);
  kernels::copy_bytes(host.data(), kCpuDevice, staging.data(), staging.device(),
                      host.size() * sizeof(float));
}

// All-gathers that add the bytes received to `count`.
void all_gather(Communicator& c, const float* in, float* out, int64_t n, int64_t& count) {
  c.all_gather(in, out, n);
  count += c.size() * n * static_cast<int64_t>(sizeof(float));
}
void all_gather(Communicator& c, const bf16* in, bf16* out, int64_t n, int64_t& count) {
  c.all_gather_bf16(in, out, n);
  count += c.size() * n * static_cast<int64_t>(sizeof(bf16));
}

// Zeros [offset, offset + n) of a page buffer: whole pages go back to the OS, the partial pages
// at either end are written.
template <class T>
void clear(PageArray<T>& buf, int64_t offset, int64_t n) {
  if (n <= 0) return;
  buf.discard_inside(offset, n);
  const int64_t pp = PageArray<T>::per_page();
  const int64_t first = std::min(offset + n, (offset + pp - 1) / pp * pp);
  const int64_t last = std::max(first, (offset + n) / pp * pp);
  zero_n(buf.data() + offset, first - offset);
  zero_n(buf.data() + last, offset + n - last);
}

class ShardedDataParallel final : public DataParallel {
 public:
  ShardedDataParallel(model::ParamStore& store, Communicator& world, const ParallelDims& dims)
      : store_(store), dims_(dims) {
    // Shard groups are consecutive ranks; replica groups take one rank from each.
    const int rank = world.rank(), shard = static_cast<int>(dims.shard);
    shard_ = world.split(rank / shard, rank);
    if (dims.replicate > 1) replicate_ = world.split(rank % shard, rank);
    const int ep = static_cast<int>(dims.expert);
    QV_CHECK(ep >= 1 && shard % ep == 0, "expert-parallel degree ", ep,
             " must divide the shard degree ", shard);
    if (ep > 1) {
      // EP groups: ep consecutive ranks (dist/expert_parallel.h); the ranks of the shard group
      // holding the same experts: one from each EP group.
      const int s = shard_->rank();
      expert_shard_ = shard_->split(s % ep, s);
      expert_group_ = shard_->split(s / ep, s);
    }
    const int64_t align = dims.shard * PageBuffer::floats_per_page();
    for (const auto& u : store.units()) {
      Plan p;
      if (ep > 1 && u.experts > 0) {
        QV_CHECK(u.experts % ep == 0, "expert unit '", u.name, "' has ", u.experts,
                 " experts, not a multiple of the expert-parallel degree ", ep);
        const model::ParamRef& ref = store.entries()[u.entries.at(0)].ref;
        const int m = expert_shard_->size();
        p.expert = true;
        p.length = ref.numel / ep;
        p.base = ref.offset + p.length * expert_group_->rank();
        p.chunk = std::max<int64_t>(1, (p.length + m - 1) / m);
        const int64_t lo = std::min(p.length, p.chunk * expert_shard_->rank());
        p.own = {p.base + lo, p.base + std::min(p.length, lo + p.chunk)};
        p.holders = m;
        if (p.length != p.chunk * m) slice_floats_ = std::max(slice_floats_, p.chunk * m);
      } else {
        QV_CHECK(u.begin % align == 0 && (u.end - u.begin) % align == 0, "parameter unit '", u.name,
                 "' is not aligned to ", align, " floats (build the model with unit_alignment())");
        p.base = u.begin;
        p.length = u.end - u.begin;
        p.chunk = p.length / dims.shard;
        const int64_t own = u.begin + p.chunk * shard_->rank();
        p.own = {own, own + p.chunk};
      }
      plans_.push_back(p);
      owned_.push_back(p.own);
    }
    // Expert slices that do not divide pass through these (chunks padded to equal size).
    slice_.assign(slice_floats_, 0.0f);
    if (store.has_bf16_copies()) slice_bf16_.assign(slice_floats_, bf16{});
    row_pieces_.resize(static_cast<size_t>(shard_->size()));
    gathered_.assign(store.units().size(), kFloat);  // the model starts with every parameter
    frozen_.assign(store.units().size(), 0);
    if (store.has_bf16_copies()) plan_float_pieces();
  }

  const std::vector<FlatRange>& owned() const override { return owned_; }

  void begin_step() override {
    // Gradients outside the own chunks were returned to the OS after their reduce-scatter.
    for (const FlatRange& r : owned_) zero_n(store_.grads().data() + r.begin, r.size());
    frozen_.clear();
    for (const auto& u : store_.units()) {
      bool all = true;
      for (size_t e : u.entries) all = all && store_.frozen(e);
      frozen_.push_back(all);
    }
  }
  void begin_micro_batch(bool) override {}

  void gather(int unit) override {
    if (gathered_[unit] == kBf16 || gathered_[unit] == kFloat) return;
    const Plan& p = plans_[unit];
    if (p.expert) {
      // Only this rank's experts: the ones it computes under expert parallelism.
      const size_t entry = store_.units()[unit].entries[0];
      if (store_.bf16_only(entry))
        gather_slice(p, store_.values_bf16().data(), slice_bf16_.data());
      else {
        gather_slice(p, store_.values().data(), slice_.data());
        store_.sync_bf16(p.base, p.base + p.length);
      }
      gathered_[unit] = kBf16;
      return;
    }
    if (!store_.has_bf16_copies() || !bf16_unit_[unit]) return gather_float(unit);
    const FlatRange& r = p.own;
    bf16* b = store_.values_bf16().data();
    all_gather(*shard_, b + r.begin, b + p.base, r.size(), bytes_.all);
    gather_float_pieces(unit);
    gathered_[unit] = kBf16;
  }
  void gather_rows(int unit, int64_t table, int64_t rows, int64_t cols, const int64_t* ids,
                   int64_t n) override {
    if (gathered_[unit] != kNone) return;  // the whole unit is here
    if (plans_[unit].expert) return gather(unit);
    // The union of every rank's rows: a summed 0/1 mask over the table's rows (the ids are
    // host memory, the mask is computed on the host).
    row_mask_.assign(rows, 0.0f);
    for (int64_t i = 0; i < n; ++i)
      if (ids[i] >= 0 && ids[i] < rows) row_mask_[ids[i]] = 1.0f;
    sum_host_floats(*shard_, row_mask_, mask_staging_);
    // Each rank's chunk holds pieces of those rows; every rank packs its own, in row order.
    const Plan& p = plans_[unit];
    const int ranks = shard_->size(), me = shard_->rank();
    int64_t most = 0;
    for (int k = 0; k < ranks; ++k) {
      plan_row_pieces(p, k, table, rows, cols, row_pieces_[k]);
      most = std::max(most, row_pieces_[k].count);
    }
    if (most == 0) return mark_rows(unit);
    // Grown to the largest union seen, so a step like an earlier one allocates nothing.
    if (static_cast<int64_t>(row_pack_.size()) < most) row_pack_.resize(most);
    if (static_cast<int64_t>(row_unpack_.size()) < most * ranks) row_unpack_.resize(most * ranks);
    float* v = store_.values().data();
    move_row_pieces(row_pieces_[me], v, table, cols, row_pack_.data(), /*pack=*/true);
    const int64_t before = bytes_.all;
    all_gather(*shard_, row_pack_.data(), row_unpack_.data(), most, bytes_.all);
    bytes_.rows += bytes_.all - before;
    for (int k = 0; k < ranks; ++k)
      if (k != me)
        move_row_pieces(row_pieces_[k], v, table, cols, row_unpack_.data() + k * most,
                        /*pack=*/false);
    mark_rows(unit);
  }
  void release(int unit) override {
    const auto& u = store_.units()[unit];
    const Plan& p = plans_[unit];
    if (p.expert) {
      clear(store_.values(), u.begin, p.own.begin - u.begin);
      clear(store_.values(), p.own.end, u.end - p.own.end);
    } else {
      discard_others(store_.values(), unit);
    }
    if (store_.has_bf16_copies()) {
      auto& b = store_.values_bf16();
      if (p.expert) {
        clear(b, u.begin, p.own.begin - u.begin);
        clear(b, p.own.end, u.end - p.own.end);
      } else {
        b.discard_inside(u.begin, p.own.begin - u.begin);
        b.discard_inside(p.own.end, u.end - p.own.end);
      }
    }
    gathered_[unit] = kNone;
  }
  void grads_ready(int unit) override {
    if (frozen_[unit]) return;  // no gradient anywhere (every rank freezes the same units)
    const auto& u = store_.units()[unit];
    const Plan& p = plans_[unit];
    float* g = store_.grads().data();
    // The own chunk already holds the sum of earlier passes; the other ranks' chunks hold zeros
    // there, so the reduced chunk is that sum plus every rank's new contribution.
    if (p.expert) {
      // This rank's experts only, over the ranks holding the same experts (one holder: the
      // slice is its own chunk already).
      if (p.holders > 1) {
        const float* in = g + p.base;
        if (p.padded()) {
          copy_n(g + p.base, p.length, slice_.data());
          zero_n(slice_.data() + p.length, p.chunk * p.holders - p.length);
          in = slice_.data();
        }
        scratch_.resize(p.chunk);
        expert_shard_->reduce_scatter_sum(in, scratch_.data(), p.chunk);
        copy_n(scratch_.data(), p.own.size(), g + p.own.begin);
      }
      clear(store_.grads(), u.begin, p.own.begin - u.begin);
      clear(store_.grads(), p.own.end, u.end - p.own.end);
      return;
    }
    const FlatRange& r = p.own;
    scratch_.resize(r.size());
    shard_->reduce_scatter_sum(g + u.begin, scratch_.data(), r.size());
    copy_n(scratch_.data(), r.size(), g + r.begin);
    discard_others(store_.grads(), unit);
  }

  void finish_grads() override {
    if (!replicate_) return;
    // Replicas hold the same chunks: one all-reduce over all of them, packed.
    int64_t total = 0;
    for (const FlatRange& r : owned_) total += r.size();
    if (static_cast<int64_t>(scratch_.size()) < total) scratch_.resize(total);
    float* g = store_.grads().data();
    float* p = scratch_.data();
    for (const FlatRange& r : owned_) {
      copy_n(g + r.begin, r.size(), p);
      p += r.size();
    }
    replicate_->all_reduce_sum(scratch_.data(), total);
    p = scratch_.data();
    for (const FlatRange& r : owned_) {
      copy_n(p, r.size(), g + r.begin);
      p += r.size();
    }
  }
  void sum_over_shards(double* v, int64_t n) override { shard_->all_reduce_sum(v, n); }
  void max_over_shards(double* v, int64_t n) override { shard_->all_reduce_max(v, n); }

  void gather_all() override {
    for (size_t u = 0; u < owned_.size(); ++u)
      if (gathered_[u] != kFloat) gather_float(static_cast<int>(u));
  }
  void release_all() override {
    for (size_t u = 0; u < owned_.size(); ++u) release(static_cast<int>(u));
  }
  GatherBytes gathered_bytes() const override { return bytes_; }
  std::string describe() const override {
    return cat("sharded (FSDP) over ", dims_.shard, " ranks",
               dims_.replicate > 1 ? cat(", replicated ", dims_.replicate, " times") : "",
               dims_.expert > 1
                   ? cat("; expert tensors split by expert over ", dims_.expert,
                         " ranks, each slice sharded over ", dims_.shard / dims_.expert)
                   : "");
  }

 private:
  enum Gathered : uint8_t {
    kNone,   // only the own chunk is present
    kBf16,   // for compute: bf16 copies and float-read entries (expert units: own experts)
    kFloat,  // float values (and bf16 copies) of the whole unit
    kRows,   // float values of the rows asked for by gather_rows
  };

  // How a unit is split. Dense units: the shard group splits [base, base + length) = the whole
  // unit in equal page-aligned chunks (collectives in place). Expert units under expert
  // parallelism: the ranks holding the same experts split this EP rank's slice in chunks padded
  // to equal size (collectives through the slice buffers).
  struct Plan {
    bool expert = false;
    int64_t base = 0, length = 0, chunk = 0;
    int64_t holders = 0;  // expert units: ranks sharing the slice
    FlatRange own;
    bool padded() const { return expert && length != chunk * holders; }
  };

  // An expert slice [base, base + length) of buf from every holder's own chunk (in place
  // unless the chunks are padded).
  template <typename T>
  void gather_slice(const Plan& p, T* buf, T* scratch) {
    if (p.holders == 1) return;  // the slice is the own chunk
    if (!p.padded())
      return all_gather(*expert_shard_, buf + p.own.begin, buf + p.base, p.chunk, bytes_.all);
    T* mine = scratch + p.chunk * expert_shard_->rank();
    copy_n(buf + p.own.begin, p.own.size(), mine);
    zero_n(mine + p.own.size(), p.chunk - p.own.size());
    all_gather(*expert_shard_, mine, scratch, p.chunk, bytes_.all);
    copy_n(scratch, p.length, buf + p.base);
  }

  // The whole unit's float values in buf from every rank's own chunk.
  void gather_whole(const Plan& p, float* buf) {
    if (!p.expert)
      return all_gather(*shard_, buf + p.own.begin, buf + p.base, p.own.size(), bytes_.all);
    gather_slice(p, buf, slice_.data());
    const int64_t first = p.base - p.length * expert_group_->rank();
    all_gather(*expert_group_, buf + p.base, buf + first, p.length, bytes_.all);
  }

  // The elements of the table's rows asked for (row_mask_) that lie in rank k's chunk of a
  // dense unit, in row order: at most a partial row at either end of the chunk, and the rows
  // lying whole inside it, which one copy_rows moves.
  struct RowPieces {
    FlatRange head, tail;     // partial rows (empty when none)
    Mirrored<int64_t> whole;  // rows of the table, ascending
    int64_t count = 0;        // elements in all
  };
  void plan_row_pieces(const Plan& p, int k, int64_t table, int64_t rows, int64_t cols,
                       RowPieces& out) const {
    out.head = out.tail = {};
    out.whole.host.clear();
    out.count = 0;
    const int64_t lo = std::max(table, p.base + k * p.chunk);
    const int64_t hi = std::min(table + rows * cols, p.base + (k + 1) * p.chunk);
    if (hi <= lo) return out.whole.upload();
    const int64_t first = (lo - table) / cols, last = (hi - 1 - table) / cols;
    auto start = [&](int64_t r) { return table + r * cols; };
    auto asked = [&](int64_t r) { return row_mask_[r] > 0; };
    int64_t whole_begin = first, whole_end = last + 1;  // rows [whole_begin, whole_end)
    if (first == last && (lo > start(first) || hi < start(first) + cols)) {
      if (asked(first)) out.head = {lo, hi};  // the chunk lies inside one row
      whole_end = whole_begin;
    } else {
      if (lo > start(first)) {
        if (asked(first)) out.head = {lo, start(first) + cols};
        ++whole_begin;
      }
      if (hi < start(last) + cols) {
        if (asked(last)) out.tail = {start(last), hi};
        --whole_end;
      }
    }
    for (int64_t r = whole_begin; r < whole_end; ++r)
      if (asked(r)) out.whole.host.push_back(r);
    out.whole.upload();
    out.count = out.head.size() + static_cast<int64_t>(out.whole.size()) * cols + out.tail.size();
  }
  // pack: copies the pieces from the values v into buf, in order; else from buf into v.
  static void move_row_pieces(const RowPieces& pieces, float* v, int64_t table, int64_t cols,
                              float* buf, bool pack) {
    auto move = [&](FlatRange f) {
      if (pack)
        copy_n(v + f.begin, f.size(), buf);
      else
        copy_n(buf, f.size(), v + f.begin);
      buf += f.size();
    };
    move(pieces.head);
    const auto n = static_cast<int64_t>(pieces.whole.size());
    if (n > 0) {
      if (pack)
        kernels::copy_rows(v + table, pieces.whole.data(), buf, nullptr, n, cols);
      else
        kernels::copy_rows(buf, nullptr, v + table, pieces.whole.data(), n, cols);
      buf += n * cols;
    }
    move(pieces.tail);
  }
  void mark_rows(int unit) { gathered_[unit] = kRows; }

  // The whole unit's float values; the bf16 copies follow from them.
  void gather_float(int unit) {
    const auto& u = store_.units()[unit];
    gather_whole(plans_[unit], store_.values().data());
    store_.sync_bf16(u.begin, u.end);
    gathered_[unit] = kFloat;
  }

  // Which dense units travel as bf16 (those with a bf16-only entry; the others, e.g. an
  // embedding without a copy, are gathered in float in place) and, per such unit and rank, the
  // pieces of that rank's chunk that belong to entries read in float; sizes the packing
  // buffers once (a gather allocates nothing).
  void plan_float_pieces() {
    const int ranks = shard_->size();
    pieces_.assign(owned_.size(), {});
    piece_max_.assign(owned_.size(), 0);
    bf16_unit_.assign(owned_.size(), 0);
    int64_t most = 0;
    for (size_t ui = 0; ui < owned_.size(); ++ui) {
      const auto& u = store_.units()[ui];
      for (size_t e : u.entries) bf16_unit_[ui] |= store_.bf16_only(e);
      if (plans_[ui].expert || !bf16_unit_[ui]) continue;
      const int64_t chunk = plans_[ui].chunk;
      pieces_[ui].resize(ranks);
      for (int k = 0; k < ranks; ++k) {
        const int64_t lo = u.begin + chunk * k, hi = lo + chunk;
        int64_t count = 0;
        for (size_t e : u.entries) {
          if (store_.bf16_only(e)) continue;
          const model::ParamRef& ref = store_.entries()[e].ref;
          const int64_t b = std::max(lo, ref.offset), en = std::min(hi, ref.offset + ref.numel);
          if (en <= b) continue;
          pieces_[ui][k].push_back({b, en});
          count += en - b;
        }
        piece_max_[ui] = std::max(piece_max_[ui], count);
      }
      most = std::max(most, piece_max_[ui]);
    }
    pack_.assign(most, 0.0f);
    unpack_.assign(most * ranks, 0.0f);
  }

  // The float-read entries' elements of every rank's chunk, packed (each rank's block padded to
  // the unit's largest) and all-gathered into place.
  void gather_float_pieces(int unit) {
    const int64_t n = piece_max_[unit];
    if (n == 0) return;
    float* v = store_.values().data();
    const int me = shard_->rank();
    float* p = pack_.data();
    for (const FlatRange& f : pieces_[unit][me]) {
      copy_n(v + f.begin, f.size(), p);
      p += f.size();
    }
    all_gather(*shard_, pack_.data(), unpack_.data(), n, bytes_.all);
    for (int k = 0; k < shard_->size(); ++k) {
      if (k == me) continue;
      const float* q = unpack_.data() + k * n;
      for (const FlatRange& f : pieces_[unit][k]) {
        copy_n(q, f.size(), v + f.begin);
        q += f.size();
      }
    }
  }

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
  // Expert parallelism only: the shard group's ranks holding the same experts, and this rank's
  // EP group (its experts' neighbours: the other slices).
  std::unique_ptr<Communicator> expert_shard_, expert_group_;
  std::vector<Plan> plans_;
  std::vector<FlatRange> owned_;
  std::vector<uint8_t> gathered_, frozen_;
  DeviceBuffer<float> scratch_;  // reduce-scatter results, the replicas' packed chunks
  // Expert slices padded to whole chunks (float values / gradients, bf16 copies).
  int64_t slice_floats_ = 0;
  DeviceBuffer<float> slice_;
  DeviceBuffer<bf16> slice_bf16_;
  // bf16 gathers: [unit][rank] float-read pieces of the rank's chunk, the largest total per
  // unit, and the packing buffers (sized once).
  std::vector<std::vector<std::vector<FlatRange>>> pieces_;
  std::vector<int64_t> piece_max_;
  DeviceBuffer<float> pack_, unpack_;
  std::vector<uint8_t> bf16_unit_;  // per unit: has a bf16-only entry
  // gather_rows: the summed row mask (host; staged for the sum), each rank's pieces of the rows,
  // packing buffers (grown only).
  std::vector<float> row_mask_;
  DeviceBuffer<float> mask_staging_, row_pack_, row_unpack_;
  std::vector<RowPieces> row_pieces_;
  GatherBytes bytes_;
};

}  // namespace

std::unique_ptr<DataParallel> make_sharded(model::ParamStore& store, Communicator& world,
                                           const ParallelDims& dims) {
  const DeviceScope on_store_device(store.device());  // its buffers live there too
  return std::make_unique<ShardedDataParallel>(store, world, dims);
}

}  // namespace qv::dist
