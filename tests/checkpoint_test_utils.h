// Checkpoint test helpers: ranks as threads over a small in-memory communicator (the sums and
// maxima the checkpoint protocol uses), data-parallel layouts, and saving a state as a layout
// would save it.
#pragma once
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "dist/communicator.h"
#include "train/checkpoint.h"

namespace qv::testing {

using train::FlatRange;

// The sums and maxima of `size` threads (the only collectives the checkpoint protocol uses), and
// the all-to-all exchanges of the streamed export.
class ThreadWorld {
 public:
  explicit ThreadWorld(int size) : size_(size) {}
  int size() const { return size_; }
  // Every rank contributes `n` values; each gets the combination back.
  void reduce(int, double* data, int64_t n, bool max) {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t gen = generation_;
    if (arrived_ == 0)
      acc_.assign(data, data + n);
    else
      for (int64_t i = 0; i < n; ++i)
        acc_[i] = max ? std::max(acc_[i], data[i]) : acc_[i] + data[i];
    if (++arrived_ == size_) {
      result_ = acc_;
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
    std::copy(result_.begin(), result_.begin() + n, data);
    // Everyone has read result_ before the next collective overwrites it.
    if (++read_ == size_) {
      read_ = 0;
      ++read_generation_;
      cv_.notify_all();
    } else {
      const int64_t rg = read_generation_;
      cv_.wait(lock, [&] { return read_generation_ != rg; });
    }
  }

  // Every rank posts one block of bytes per destination rank; each gets the blocks addressed to
  // it, in rank order (all-to-all).
  std::vector<std::vector<char>> exchange(int rank, std::vector<std::vector<char>> blocks) {
    std::unique_lock<std::mutex> lock(mu_);
    if (posted_.empty()) posted_.resize(size_);
    posted_[rank] = std::move(blocks);
    const int64_t gen = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
    std::vector<std::vector<char>> mine;
    for (int r = 0; r < size_; ++r) mine.push_back(posted_[r][rank]);
    if (++read_ == size_) {
      read_ = 0;
      posted_.assign(size_, {});
      ++read_generation_;
      cv_.notify_all();
    } else {
      const int64_t rg = read_generation_;
      cv_.wait(lock, [&] { return read_generation_ != rg; });
    }
    return mine;
  }

 private:
  int size_;
  std::vector<std::vector<std::vector<char>>> posted_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<double> acc_, result_;
  int arrived_ = 0, read_ = 0;
  int64_t generation_ = 0, read_generation_ = 0;
};

class ThreadComm final : public dist::Communicator {
 public:
  ThreadComm(ThreadWorld& w, int rank) : w_(w), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return w_.size(); }
  void all_reduce_sum(double* d, int64_t n) override { w_.reduce(rank_, d, n, false); }
  void all_reduce_max(double* d, int64_t n) override { w_.reduce(rank_, d, n, true); }
  void all_reduce_sum(float*, int64_t) override { unused(); }
  void all_gather(const float*, float*, int64_t) override { unused(); }
  void reduce_scatter_sum(const float*, float*, int64_t) override { unused(); }
  void broadcast(float*, int64_t, int) override { unused(); }
  // The streamed export's exchanges.
  void all_to_all_v(const float* in, const int64_t* send_counts, float* out,
                    const int64_t* recv_counts) override {
    std::vector<std::vector<char>> blocks;
    for (int r = 0; r < size(); ++r) {
      const auto* p = reinterpret_cast<const char*>(in);
      blocks.emplace_back(p, p + send_counts[r] * sizeof(float));
      in += send_counts[r];
    }
    const auto got = w_.exchange(rank_, std::move(blocks));
    auto* o = reinterpret_cast<char*>(out);
    for (int r = 0; r < size(); ++r) {
      QV_CHECK(static_cast<int64_t>(got[r].size()) == recv_counts[r] * 4,
               "ThreadComm::all_to_all_v: rank ", r, " sent ", got[r].size() / 4, " floats, ",
               recv_counts[r], " expected");
      std::copy(got[r].begin(), got[r].end(), o);
      o += got[r].size();
    }
  }
  void all_to_all(const int64_t* in, int64_t* out, int64_t n) override {
    std::vector<std::vector<char>> blocks;
    for (int r = 0; r < size(); ++r) {
      const auto* p = reinterpret_cast<const char*>(in + r * n);
      blocks.emplace_back(p, p + n * sizeof(int64_t));
    }
    const auto got = w_.exchange(rank_, std::move(blocks));
    for (int r = 0; r < size(); ++r) std::memcpy(out + r * n, got[r].data(), n * sizeof(int64_t));
  }
  void barrier() override { unused(); }
  void start_all_reduce_sum(float*, int64_t) override { unused(); }
  void progress() override {}
  void wait_all() override {}
  std::unique_ptr<Communicator> split(int, int) override {
    unused();
    return nullptr;
  }

 private:
  [[noreturn]] static void unused() { fail("ThreadComm: not used by checkpoints"); }
  ThreadWorld& w_;
  int rank_;
};

struct Layout {
  int64_t replicate, shard;
  int64_t world() const { return replicate * shard; }
  std::string name() const { return std::to_string(replicate) + "x" + std::to_string(shard); }
};

// What rank `rank` owns under `l`, as dist/ lays it out: the whole buffer when replicated,
// else its chunk of every unit (shard groups are consecutive ranks).
inline std::vector<FlatRange> owned_ranges(const model::ParamStore& store, const Layout& l,
                                           int rank) {
  if (l.shard == 1) return {{0, store.total()}};
  std::vector<FlatRange> out;
  for (const auto& u : store.units()) {
    const int64_t chunk = (u.end - u.begin) / l.shard;
    const int64_t own = u.begin + chunk * (rank % l.shard);
    out.push_back({own, own + chunk});
  }
  return out;
}

// Saves a state (values in `store`, moments over the whole flat buffer) as `l` would save it:
// every rank a thread writing its part of what it owns, through the real save protocol. Rank r
// writes data_states[r]. Returns the checkpoint's path.
inline std::string save_layout(const model::ParamStore& store, const std::vector<float>& m_full,
                               const std::vector<float>& v_full, const std::vector<int64_t>& steps,
                               const Layout& l, const std::string& folder, int64_t step,
                               const std::vector<nlohmann::json>& data_states,
                               const std::string& config_json) {
  ThreadWorld world(static_cast<int>(l.world()));
  std::vector<std::string> errors(l.world());
  std::string path;
  std::vector<std::thread> ranks;
  for (int r = 0; r < l.world(); ++r)
    ranks.emplace_back([&, r] {
      try {
        ThreadComm comm(world, r);
        const auto owned = owned_ranges(store, l, r);
        // The moments packed over the owned ranges, as AdamW keeps them.
        std::vector<float> m, v;
        for (const auto& o : owned) {
          m.insert(m.end(), m_full.begin() + o.begin, m_full.begin() + o.end);
          v.insert(v.end(), v_full.begin() + o.begin, v_full.begin() + o.end);
        }
        const auto write = train::ranges_to_write(owned, l.replicate, r / l.shard);
        const auto share = train::view_share(store, write, owned, m.data(), v.data());
        const std::string final_dir = train::checkpoint_dir(folder, step);
        const std::string tmp = train::begin_sharded_save(comm, final_dir);
        const auto files =
            train::write_rank_files(tmp, r, store.entries(), share, data_states.at(r));
        train::SaveInfo info;
        info.step = step;
        info.replicate = l.replicate;
        info.shard = l.shard;
        info.optimizer_steps = steps;
        info.model_config_json = config_json;
        const std::string p =
            train::finish_sharded_save(comm, tmp, final_dir, files, write, store, info);
        if (r == 0) path = p;
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : ranks) t.join();
  for (const auto& e : errors)
    if (!e.empty()) fail("save_layout: ", e);
  return path;
}

}  // namespace qv::testing
