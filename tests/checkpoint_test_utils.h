// Checkpoint test helpers: data-parallel layouts, and saving a state as a layout would save it
// (ranks as threads over tests/thread_comm.h's communicator).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "dist/communicator.h"
#include "thread_comm.h"
#include "train/checkpoint.h"

namespace qv::testing {

using train::FlatRange;

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
  std::string path;
  const auto errors = run_ranks_errors(static_cast<int>(l.world()), [&](ThreadCommunicator& comm) {
    const int r = comm.rank();
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
    const auto files = train::write_rank_files(tmp, r, store.entries(), share, data_states.at(r));
    train::SaveInfo info;
    info.step = step;
    info.replicate = l.replicate;
    info.shard = l.shard;
    info.optimizer_steps = steps;
    info.model_config_json = config_json;
    const std::string p =
        train::finish_sharded_save(comm, tmp, final_dir, files, write, store, info);
    if (r == 0) path = p;
  });
  for (const auto& e : errors)
    if (!e.empty()) fail("save_layout: ", e);
  return path;
}

}  // namespace qv::testing
