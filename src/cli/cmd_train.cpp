// qwen3vl train --config FILE [--section.key value ...]: the training job.
#include <cstdio>

#include "cli/command.h"
#include "cli/device_flag.h"
#include "cli/stop_signals.h"
#include "core/error.h"
#include "core/log.h"
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

int run_train(const Args& args) {
  // First, before any thread starts: SIGTERM / SIGINT checkpoint and stop (cli/stop_signals.h).
  const StopSignals signals;
  const TrainArgs ta = parse_train_args(args);
  train::JobConfig config = train::JobConfig::load(ta.config_path, ta.overrides);
  const DeviceChoice device = parse_device_flag(config.device);
  activate_device(device);
  if (!device.device.is_cpu()) fail_model_not_on_cuda("train ([training] device)");
  auto comm = dist::launched_under_mpi() ? dist::make_mpi_communicator(config.comm_timeout_seconds)
                                         : dist::make_local_communicator();
  if (comm->rank() != 0) log::set_level(log::Level::kWarn);
  if (comm->rank() == 0 && !config.accepted_torchtitan_keys.empty()) {
    std::string keys;
    for (const auto& k : config.accepted_torchtitan_keys) keys += (keys.empty() ? "" : ", ") + k;
    log::warn("torchtitan keys accepted with no effect here (qwen3vl train --help says why): " +
              keys);
  }
  if (config.print_config) log::info("job config:\n" + config.to_toml());
  const auto dims = dist::resolve_parallel_dims(config.dp_replicate, config.dp_shard, comm->size());
  auto model = train::build_model(config, dist::unit_alignment(dims));
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
