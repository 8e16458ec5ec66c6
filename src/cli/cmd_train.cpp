// qwen3vl train --config FILE [--section.key value ...]: the training job.
#include <csignal>
#include <cstdio>

#include "cli/command.h"
#include "core/error.h"
#include "core/log.h"
#include "dist/parallel_dims.h"
#include "train/batch_source.h"
#include "train/data_source.h"
#include "train/trainer.h"

namespace qv::cli {
namespace {

void on_signal(int) {
  train::stop_requested().store(true);
}

int run_train(const Args& args) {
  std::string config_path;
  std::vector<std::pair<std::string, std::string>> overrides;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    QV_CHECK(a.rfind("--", 0) == 0, "unexpected argument '", a, "'");
    a = a.substr(2);
    std::string value;
    const size_t eq = a.find('=');
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else {
      QV_CHECK(i + 1 < args.size(), "flag --", a, " needs a value");
      value = args[++i];
    }
    if (a == "config")
      config_path = value;
    else
      overrides.emplace_back(a, value);
  }
  QV_CHECK(!config_path.empty(), "missing --config FILE");
  train::JobConfig config = train::JobConfig::load(config_path, overrides);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  auto comm = dist::launched_under_mpi() ? dist::make_mpi_communicator(config.comm_timeout_seconds)
                                         : dist::make_local_communicator();
  if (comm->rank() != 0) log::set_level(log::Level::kWarn);
  const auto dims = dist::resolve_parallel_dims(config.dp_replicate, config.dp_shard, comm->size());
  auto model = train::build_model(config, dist::unit_alignment(dims));
  auto data = train::make_batch_source(config, model->config(), comm->rank(), comm->size());
  log::info("data: " + data->describe());
  train::Trainer trainer(config, std::move(model), std::move(data), std::move(comm));
  trainer.run();
  return 0;
}

const Registration kRegistration({"train",
                                  "train a model (--config FILE [--section.key value ...])",
                                  run_train});

}  // namespace
}  // namespace qv::cli
