#include "train/checkpoint.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/allocator.h"
#include "core/error.h"
#include "core/log.h"
#include "io/atomic_file.h"
#include "io/checksum.h"
#include "io/json_depth.h"
#include "io/safetensors.h"
#include "kernels/device.h"
#include "train/checkpoint_index.h"
#include "train/checkpoint_shards.h"

namespace qv::train {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kPrefix = "step-";

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s%08lld", kPrefix, static_cast<long long>(step));
  return buf;
}

io::TensorSource f32_source(const std::string& name, const float* p, const Shape& shape) {
  return {name, DType::kF32, shape, p, DType::kF32};
}

// The stored F32 data of tensor `name`, checked to hold `n` values; in place in the mapped file.
const float* f32_data(const io::SafetensorsFile& f, const std::string& name, int64_t n) {
  QV_CHECK(f.has(name), f.path(), ": missing tensor '", name, "'");
  const io::TensorInfo& i = f.info(name);
  QV_CHECK(i.dtype == DType::kF32 && numel(i.shape) == n, f.path(), ": tensor '", name,
           "' has dtype ", dtype_name(i.dtype), " and ", numel(i.shape),
           " elements, expected F32 x ", n);
  return reinterpret_cast<const float*>(f.bytes(name));
}

// Copies the elements of the parameter buffer's [base, base + n) that `t.owned` covers from
// `src` (host memory) to where they live in `dst` (owned ranges stored one after another, in
// the memory of t.device).
void copy_owned(const float* src, int64_t base, int64_t n, const OptimizerTarget& t,
                std::span<float> dst) {
  int64_t at = 0;
  for (const FlatRange& r : t.owned) {
    const int64_t lo = std::max(r.begin, base), hi = std::min(r.end, base + n);
    if (lo < hi)
      kernels::copy_bytes(dst.data() + at + (lo - r.begin), t.device, src + (lo - base), kCpuDevice,
                          static_cast<size_t>(hi - lo) * 4);
    at += r.size();
  }
}

std::vector<fs::path> complete_checkpoints(const std::string& folder) {
  std::vector<fs::path> out;
  if (!fs::is_directory(folder)) return out;
  for (const auto& e : fs::directory_iterator(folder)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind(kPrefix, 0) == 0 && fs::exists(e.path() / "state.json"))
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Every folder this module writes or deletes goes through a ".tmp-...-PID" name that readers
// never list, so a kill at any moment leaves each checkpoint complete or invisible.
void remove_checkpoint_dir(const fs::path& dir) {
  const std::string trash = io::temp_sibling(dir.string(), "deleting");
  fs::rename(dir, trash);
  fs::remove_all(trash);
}

// Temporary folders left by a writer that was killed: their process is gone, or is this one (a
// restarted job in a container can get the same PID). Resume never reads them; they are removed
// only so that the disk does not fill up.
void remove_stale_temp_dirs(const std::string& folder) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(folder, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".tmp-", 0) != 0) continue;
    const pid_t pid = static_cast<pid_t>(std::atoll(name.c_str() + name.rfind('-') + 1));
    const bool gone = pid <= 0 || pid == ::getpid() || (::kill(pid, 0) != 0 && errno == ESRCH);
    if (!gone) continue;
    std::error_code rm;
    fs::remove_all(e.path(), rm);
    if (!rm) log::info(cat("removed the unfinished checkpoint folder ", e.path().string()));
  }
}

// Removes all but the newest keep_latest_k complete checkpoints (0 keeps all). The new
// checkpoint is complete; failing to prune older ones only costs disk space.
void prune(const std::string& folder, int64_t keep_latest_k) {
  if (keep_latest_k <= 0) return;
  try {
    auto all = complete_checkpoints(folder);
    for (size_t i = 0; i + keep_latest_k < all.size(); ++i) remove_checkpoint_dir(all[i]);
  } catch (const std::exception& e) {
    log::warn(cat("could not remove old checkpoints in ", folder, ": ", e.what()));
  }
}

std::string save_failed(const std::string& final_dir, const std::string& why) {
  return cat("checkpoint save to ", final_dir, " failed (previous checkpoints kept): ", why);
}

}  // namespace

std::string checkpoint_dir(const std::string& folder, int64_t step) {
  return (fs::path(folder) / step_name(step)).string();
}

std::string save_checkpoint_v1(const std::string& folder, const model::ParamStore& store,
                               const OptimizerState* opt, const TrainState& state,
                               int64_t keep_latest_k) {
  const fs::path final_dir = fs::path(folder) / step_name(state.step);
  const fs::path tmp_dir = io::temp_sibling(final_dir.string(), "");
  try {
    fs::create_directories(folder);
    remove_stale_temp_dirs(folder);
    fs::create_directories(tmp_dir);
    // Written straight from the parameter store and the optimizer's (host) buffers: saving
    // adds no copy of the training state to the process's memory (a store on a GPU is staged
    // through a bounded host buffer).
    std::vector<io::TensorSource> model, optim;
    for (size_t i = 0; i < store.entries().size(); ++i) {
      const model::ParamEntry& e = store.entries()[i];
      model.push_back(f32_source(e.name, store.value(e.ref), e.shape));
      if (opt) {
        optim.push_back(
            f32_source("exp_avg." + e.name, opt->exp_avg.data() + e.ref.offset, e.shape));
        optim.push_back(
            f32_source("exp_avg_sq." + e.name, opt->exp_avg_sq.data() + e.ref.offset, e.shape));
        optim.push_back({"step." + e.name, DType::kI64, {1}, &opt->steps[i], DType::kI64});
      }
    }
    json files = json::object();
    files["model.safetensors"] =
        write_safetensors_from((tmp_dir / "model.safetensors").string(), std::move(model),
                               {{"format", "pt"}}, store.device());
    if (opt)
      files["optimizer.safetensors"] =
          io::write_safetensors((tmp_dir / "optimizer.safetensors").string(), std::move(optim));
    json j = {{"format", kFormatV1},
              {"step", state.step},
              {"data_state", state.data_state},
              {"extra", state.extra},
              {"crc32c", files}};
    j["state_crc32c"] = state_crc(j);
    io::write_file_atomic((tmp_dir / "state.json").string(), j.dump(2) + "\n");
    io::publish_dir(tmp_dir.string(), final_dir.string());
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp_dir, ec);
    fail("checkpoint save to ", final_dir.string(),
         " failed (previous checkpoints kept): ", e.what());
  }
  prune(folder, keep_latest_k);
  return final_dir.string();
}

std::string begin_sharded_save(dist::Communicator& comm, const std::string& final_dir) {
  const fs::path target(final_dir);
  std::string error;
  double v[2] = {0, 0};  // failed, rank 0's process id (names the temporary folder)
  if (comm.rank() == 0) {
    try {
      fs::create_directories(target.parent_path());
      remove_stale_temp_dirs(target.parent_path().string());
      const std::string tmp = io::temp_sibling(final_dir, "");
      fs::remove_all(tmp);
      fs::create_directories(tmp);
    } catch (const std::exception& e) {
      error = e.what();
      v[0] = 1;
    }
    v[1] = static_cast<double>(::getpid());
  }
  comm.all_reduce_max(v, 2);
  if (v[0] > 0)
    fail(save_failed(final_dir, comm.rank() == 0
                                    ? error
                                    : std::string("rank 0 could not create the "
                                                  "temporary folder (see its error)")));
  return (target.parent_path() / (".tmp-" + target.filename().string() + "-" +
                                  std::to_string(static_cast<long long>(v[1]))))
      .string();
}

std::string finish_sharded_save(dist::Communicator& comm, const std::string& tmp_dir,
                                const std::string& final_dir, const RankFiles& mine,
                                const std::vector<FlatRange>& written,
                                const model::ParamStore& store, const SaveInfo& info) {
  const int world = comm.size(), rank = comm.rank();
  // Every rank's outcome, file CRCs and written ranges, through one sum over ranks (each rank
  // fills its own slot; CRCs and flat offsets are exact in a double).
  double most = static_cast<double>(written.size());
  comm.all_reduce_max(&most, 1);
  const int64_t max_ranges = static_cast<int64_t>(most);
  const std::vector<std::string> kinds = {"model", "optim", "data"};
  const int64_t per = 2 + static_cast<int64_t>(kinds.size()) + 2 * max_ranges;
  std::vector<double> all(static_cast<size_t>(world * per), 0.0);
  double* slot = all.data() + rank * per;
  slot[0] = mine.error.empty() ? 0 : 1;
  for (size_t k = 0; k < kinds.size(); ++k) {
    auto it = mine.crc.find(rank_file(kinds[k], rank, k == 2 ? "json" : "safetensors"));
    slot[1 + k] = it == mine.crc.end() ? -1.0 : static_cast<double>(it->second);
  }
  slot[1 + kinds.size()] = static_cast<double>(written.size());
  for (size_t i = 0; i < written.size(); ++i) {
    slot[2 + kinds.size() + 2 * i] = static_cast<double>(written[i].begin);
    slot[3 + kinds.size() + 2 * i] = static_cast<double>(written[i].end);
  }
  comm.all_reduce_sum(all.data(), static_cast<int64_t>(all.size()));
  int failed_rank = -1;
  for (int r = world - 1; r >= 0; --r)
    if (all[r * per] > 0) failed_rank = r;
  std::string error;
  if (rank == 0) {
    try {
      if (failed_rank >= 0) {
        std::error_code ec;
        fs::remove_all(tmp_dir, ec);
      } else {
        std::map<std::string, uint32_t> crcs;
        std::vector<std::vector<FlatRange>> ranges(world);
        for (int r = 0; r < world; ++r) {
          const double* s = all.data() + r * per;
          for (size_t k = 0; k < kinds.size(); ++k)
            if (s[1 + k] >= 0)
              crcs[rank_file(kinds[k], r, k == 2 ? "json" : "safetensors")] =
                  static_cast<uint32_t>(s[1 + k]);
          for (int64_t i = 0; i < static_cast<int64_t>(s[1 + kinds.size()]); ++i)
            ranges[r].push_back({static_cast<int64_t>(s[2 + kinds.size() + 2 * i]),
                                 static_cast<int64_t>(s[3 + kinds.size() + 2 * i])});
        }
        const bool has_opt = !info.optimizer_steps.empty();
        const json index = build_index(store, ranges, info.replicate, info.shard, has_opt,
                                       info.optimizer_steps, crcs);
        const std::string index_text = index.dump(1) + "\n";
        io::write_file_atomic((fs::path(tmp_dir) / "index.json").string(), index_text);
        json files = {{"index.json", io::crc32c(index_text.data(), index_text.size())}};
        if (!info.model_config_json.empty()) {
          io::write_file_atomic((fs::path(tmp_dir) / "config.json").string(),
                                info.model_config_json);
          files["config.json"] =
              io::crc32c(info.model_config_json.data(), info.model_config_json.size());
        }
        json j = {{"format", kFormatV2},         {"step", info.step},
                  {"extra", info.extra},         {"world", world},
                  {"replicate", info.replicate}, {"shard", info.shard},
                  {"has_optimizer", has_opt},    {"crc32c", files}};
        j["state_crc32c"] = state_crc(j);
        io::write_file_atomic((fs::path(tmp_dir) / "state.json").string(), j.dump(2) + "\n");
        io::publish_dir(tmp_dir, final_dir);
      }
    } catch (const std::exception& e) {
      error = e.what();
      std::error_code ec;
      fs::remove_all(tmp_dir, ec);
    }
  }
  double published_failed = error.empty() ? 0.0 : 1.0;
  comm.all_reduce_max(&published_failed, 1);
  if (failed_rank >= 0)
    fail(save_failed(final_dir,
                     !mine.error.empty()
                         ? cat("writing failed on rank ", rank, ": ", mine.error)
                         : cat("writing failed on rank ", failed_rank, " (see its error)")));
  if (published_failed > 0)
    fail(save_failed(final_dir, rank == 0 ? error : "publishing failed on rank 0 (see its error)"));
  if (rank == 0) prune(fs::path(final_dir).parent_path().string(), info.keep_latest_k);
  return final_dir;
}

std::string save_checkpoint(const std::string& folder, const model::ParamStore& store,
                            const OptimizerState* opt, const TrainState& state,
                            int64_t keep_latest_k) {
  auto comm = dist::make_local_communicator();
  const std::string final_dir = checkpoint_dir(folder, state.step);
  const std::string tmp = begin_sharded_save(*comm, final_dir);
  const std::vector<FlatRange> all = {{0, store.total()}};
  const ShareView share = view_share(store, all, all, opt ? opt->exp_avg.data() : nullptr,
                                     opt ? opt->exp_avg_sq.data() : nullptr);
  const RankFiles files = write_rank_files(tmp, 0, store.entries(), share, state.data_state);
  SaveInfo info;
  info.step = state.step;
  info.extra = state.extra;
  if (opt) info.optimizer_steps = opt->steps;
  info.keep_latest_k = keep_latest_k;
  return finish_sharded_save(*comm, tmp, final_dir, files, all, store, info);
}

std::optional<std::string> latest_checkpoint(const std::string& folder) {
  auto all = complete_checkpoints(folder);
  if (all.empty()) return std::nullopt;
  return all.back().string();
}

std::string checkpoint_at_step(const std::string& folder, int64_t step) {
  std::vector<std::string> steps;
  for (const fs::path& p : complete_checkpoints(folder)) {
    const std::string name = p.filename().string();
    const long long s = std::strtoll(name.c_str() + std::strlen(kPrefix), nullptr, 10);
    if (s == step) return p.string();
    steps.push_back(std::to_string(s));
  }
  std::string have;
  for (const auto& s : steps) have += (have.empty() ? "" : ", ") + s;
  fail("checkpoint.load_step = ", step, ": no complete checkpoint of that step in ", folder,
       " (steps there: ", have.empty() ? "none" : have, ")");
}

TrainState load_checkpoint(const std::string& path, model::ParamStore& store,
                           OptimizerState* optimizer) {
  if (!optimizer) return load_checkpoint(path, store, static_cast<const OptimizerTarget*>(nullptr));
  optimizer->exp_avg.resize(store.total());
  optimizer->exp_avg_sq.resize(store.total());
  OptimizerTarget whole{
      optimizer->exp_avg, optimizer->exp_avg_sq, {{0, store.total()}}, &optimizer->steps};
  return load_checkpoint(path, store, &whole);
}

namespace {

// state.json, parsed and checked (train/checkpoint_index.h: every field the loaders read).
json read_state(const std::string& path) {
  const std::string file = (fs::path(path) / "state.json").string();
  return parse_state(io::read_file(file), file);
}

void load_v1(const std::string& path, const json& j, model::ParamStore& store,
             const OptimizerTarget* opt, const std::vector<FlatRange>& param_ranges) {
  const fs::path dir(path);
  const json files = j.value("crc32c", json::object());
  for (auto it = files.begin(); it != files.end(); ++it) {
    const std::string file = (dir / it.key()).string();
    QV_CHECK(fs::exists(file), path, ": missing ", it.key());
    const uint32_t crc = io::crc32c_file(file);
    QV_CHECK(crc == it->get<uint32_t>(), path, ": ", it.key(),
             " is corrupt (CRC-32C mismatch: stored ", it->get<uint32_t>(), ", computed ", crc,
             ")");
  }
  io::SafetensorsFile model((dir / "model.safetensors").string());
  for (const model::ParamEntry& e : store.entries()) {
    const float* src = f32_data(model, e.name, e.ref.numel);
    for (const FlatRange& r : param_ranges) {
      const int64_t lo = std::max(r.begin, e.ref.offset);
      const int64_t hi = std::min(r.end, e.ref.offset + e.ref.numel);
      if (lo < hi)
        kernels::copy_bytes(store.values().data() + lo, store.device(), src + (lo - e.ref.offset),
                            kCpuDevice, static_cast<size_t>(hi - lo) * 4);
    }
  }
  if (!opt) return;
  QV_CHECK(files.contains("optimizer.safetensors"), path,
           ": has no optimizer state (saved model-only); cannot resume training from it");
  // Elements outside every parameter (alignment padding between units) stay zero.
  allocator_for(opt->device).zero(opt->exp_avg.data(), opt->exp_avg.size_bytes());
  allocator_for(opt->device).zero(opt->exp_avg_sq.data(), opt->exp_avg_sq.size_bytes());
  io::SafetensorsFile optim((dir / "optimizer.safetensors").string());
  opt->steps->assign(store.entries().size(), 0);
  for (size_t i = 0; i < store.entries().size(); ++i) {
    const model::ParamEntry& e = store.entries()[i];
    const int64_t base = e.ref.offset, n = e.ref.numel;
    copy_owned(f32_data(optim, "exp_avg." + e.name, n), base, n, *opt, opt->exp_avg);
    copy_owned(f32_data(optim, "exp_avg_sq." + e.name, n), base, n, *opt, opt->exp_avg_sq);
    Tensor s = optim.read("step." + e.name);
    QV_CHECK(s.dtype() == DType::kI64 && s.numel() == 1, path, ": bad step tensor for ", e.name);
    (*opt->steps)[i] = s.data<int64_t>()[0];
  }
}

// Every saving rank's data-loader state, each file's CRC checked against index.json.
std::vector<json> read_data_states(const std::string& path, const json& index) {
  std::vector<json> out;
  const int64_t world = index.at("world").get<int64_t>();
  const json& files = index.at("files");
  for (int64_t r = 0; r < world; ++r) {
    const std::string name = rank_file("data", r, "json");
    const std::string file = (fs::path(path) / name).string();
    QV_CHECK(files.contains(name) && fs::exists(file), path, ": missing shard file ", name,
             " (rank ", r, "'s data-loader state)");
    const std::string text = io::read_file(file);
    const uint32_t crc = io::crc32c(text.data(), text.size());
    QV_CHECK(crc == files[name].get<uint32_t>(), path, ": ", name,
             " is corrupt (CRC-32C mismatch: stored ", files[name].get<uint32_t>(), ", computed ",
             crc, ")");
    out.push_back(io::parse_json(text, file));
  }
  return out;
}

}  // namespace

TrainState load_checkpoint(const std::string& path, model::ParamStore& store,
                           const OptimizerTarget* opt, const std::vector<FlatRange>* param_ranges) {
  const json j = read_state(path);
  if (opt) {
    int64_t owned = 0;
    for (const FlatRange& r : opt->owned) owned += r.size();
    QV_CHECK(static_cast<int64_t>(opt->exp_avg.size()) == owned &&
                 static_cast<int64_t>(opt->exp_avg_sq.size()) == owned,
             "load_checkpoint: optimizer buffers do not match the owned ranges");
  }
  TrainState st;
  st.format = j.at("format").get<std::string>();
  const std::vector<FlatRange> ranges =
      param_ranges ? *param_ranges : std::vector<FlatRange>{{0, store.total()}};
  if (st.format == kFormatV1) {
    load_v1(path, j, store, opt, ranges);
  } else {
    const json index = read_index(path, j);
    ShardedLoad load;
    load.param_ranges = ranges;
    if (opt) {
      load.owned = opt->owned;
      load.exp_avg = opt->exp_avg.data();
      load.exp_avg_sq = opt->exp_avg_sq.data();
      load.moments_device = opt->device;
      load.steps = opt->steps;
    }
    load_sharded(path, index, store, load);
    st.data_states = read_data_states(path, index);
    if (!st.data_states.empty()) st.data_state = st.data_states[0];
  }
  st.step = j.at("step").get<int64_t>();
  if (st.format == kFormatV1) st.data_state = j.value("data_state", json::object());
  st.extra = j.value("extra", json::object());
  return st;
}

}  // namespace qv::train
