// qwen3vl train --config FILE [--section.key value ...]: the training job.
#include <cstdio>

#include "cli/command.h"
#include "cli/device_flag.h"
#include "cli/stop_signals.h"
#include "core/device.h"
#include "core/error.h"
#include "core/log.h"
#include "dist/nccl_communicator.h"
#include "dist/parallel_dims.h"
#include "train/batch_source.h"
#include "train/data_source.h"
#include "train/trainer.h"

namespace qv::cli {
namespace {

struct TrainArgs {
  std::string config_path;
  std::vector<std::pair<std::string, std::string>> overrides;
};

// --config FILE (or torchtitan's --job.config_file), then --section.key value overrides; a key
// with no value (last, or followed by another --flag) is a boolean set to true.
TrainArgs parse_train_args(const Args& args) {
  TrainArgs t;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a.rfind("--", 0) != 0 || a.size() <= 2)
      usage_fail("unexpected argument '", a, "' (flags look like --section.key value)");
    a = a.substr(2);
    std::string value;
    const size_t eq = a.find('=');
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) {
      value = args[++i];
    } else {
      value = "true";
    }
    if (a == "config" || a == "job.config_file") {
      t.config_path = value;
    } else {
      if (!train::JobConfig::is_known_key(a))
        usage_fail("unknown config key --", a, " (qwen3vl train --help lists every key)");
      t.overrides.emplace_back(a, value);
    }
  }
  if (t.config_path.empty()) usage_fail("missing --config FILE (or --job.config_file FILE)");
  return t;
}

// The communicator between the job's ranks, and the MPI world it was set up over (kept alive
// while the job runs). On GPUs: NCCL, one process per GPU, its unique id sent over MPI (the
// bootstrap); on CPUs: MPI; one process alone: the local communicator.
struct Communicators {
  std::unique_ptr<dist::Communicator> bootstrap;  // MPI under mpirun, else null
  std::unique_ptr<dist::Communicator> job;
  std::string description;
};

Communicators make_communicators(const train::JobConfig& config, Device device) {
  Communicators c;
  if (!dist::launched_under_mpi()) {
    c.job = dist::make_local_communicator();
    c.description = "local (one process)";
    return c;
  }
  auto mpi = dist::make_mpi_communicator(config.comm_timeout_seconds);
  if (device.is_cpu()) {
    c.description = cat("MPI over ", mpi->size(), " processes");
    c.job = std::move(mpi);
    return c;
  }
#ifdef QWEN3VL_HAS_NCCL
  {
    const DeviceScope on_device(device);  // NCCL binds to the calling thread's GPU
    c.job = dist::make_nccl_communicator(*mpi, config.comm_timeout_seconds);
  }
  c.description = cat("NCCL over ", c.job->size(), " processes (this one on ", to_string(device),
                      "), set up over MPI");
  c.bootstrap = std::move(mpi);
#else
  // MPI moves host memory; the gradients and parameters are on the GPU.
  QV_CHECK(mpi->size() == 1, "training on ", to_string(device), " with ", mpi->size(),
           " processes needs NCCL, and this binary was built without it (NCCL's nccl.h and "
           "libnccl next to the CUDA toolkit when building; docs/CUDA.md)");
  c.job = dist::make_local_communicator();
  c.description = "local (one process; this binary has no NCCL)";
#endif
  return c;
}

int run_train(const Args& args) {
  // First, before any thread starts: SIGTERM / SIGINT checkpoint and stop (cli/stop_signals.h).
  const StopSignals signals;
  const TrainArgs ta = parse_train_args(args);
  train::JobConfig config = train::JobConfig::load(ta.config_path, ta.overrides);
  // "cuda" without an index: the node-local rank's GPU (one process per GPU).
  std::string device_text;
  const Device device = activate_device(parse_device_flag(config.device), &device_text);
  Communicators comms = make_communicators(config, device);
  auto& comm = comms.job;
  if (comm->rank() != 0) log::set_level(log::Level::kWarn);
  log::info("device: " + device_text);
  log::info("communicator: " + comms.description);
  if (comm->rank() == 0 && !config.accepted_torchtitan_keys.empty()) {
    std::string keys;
    for (const auto& k : config.accepted_torchtitan_keys) keys += (keys.empty() ? "" : ", ") + k;
    log::warn("torchtitan keys accepted with no effect here (qwen3vl train --help says why): " +
              keys);
  }
  if (config.print_config) log::info("job config:\n" + config.to_toml());
  const auto dims = dist::resolve_parallel_dims(config.dp_replicate, config.dp_shard, comm->size());
  std::unique_ptr<model::Qwen3VLModel> model;
  {
    // The model's parameters (and everything the trainer makes for it) live on the device; the
    // data source stays on the host.
    const DeviceScope on_device(device);
    model = train::build_model(config, dist::unit_alignment(dims));
  }
  auto data = train::make_batch_source(config, model->config(), comm->rank(), comm->size());
  log::info("data: " + data->describe());
  train::Trainer trainer(config, std::move(model), std::move(data), std::move(comm));
  trainer.run();
  // The exit code after a stop is 128 + the signal, the shell's "interrupted".
  const int sig = signals.received();
  return sig != 0 ? 128 + sig : 0;
}

const Registration kRegistration({"train",
                                  "train a model (--config FILE [--section.key value ...])",
                                  run_train});

}  // namespace
}  // namespace qv::cli
