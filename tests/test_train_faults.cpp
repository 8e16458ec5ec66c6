// Faults during training: non-finite loss or gradients, and preemption by SIGTERM.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <thread>
#include <vector>

#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;

std::string fresh(const std::string& name) {
  return testing::fresh_dir("fault", name);
}

// Starts `qwen3vl train` on the image fixture for 100000 steps (no checkpoint before a stop) and
// returns its pid once 3 steps are logged; -1 when it does not get there within a minute.
pid_t start_long_training(const std::string& dump) {
  const std::string cfg = testing::fixed_batch_config("hf-tiny-image", dump, 100000, 100000);
  const pid_t pid = testing::spawn_qwen3vl({"train", "--config", cfg});
  if (pid <= 0) return -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (testing::read_metrics(dump).size() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (testing::read_metrics(dump).size() >= 3) return pid;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

// Whether bit sig-1 is set in any of the signal masks `keys` ("SigBlk:", ...: hexadecimal) of a
// /proc status file; nullopt when none of them could be read (a thread that has just ended).
std::optional<bool> mask_has(const fs::path& status_file, std::initializer_list<const char*> keys,
                             int sig) {
  std::ifstream status(status_file);
  std::string line;
  std::optional<bool> set;
  while (std::getline(status, line))
    for (const char* key : keys)
      if (line.rfind(key, 0) == 0)
        set = set.value_or(false) || ((std::stoull(line.substr(7), nullptr, 16) >> (sig - 1)) & 1);
  return set;
}

// Whether signal `sig` waits in the process-wide or main thread's pending set of `pid`.
bool signal_pending(pid_t pid, int sig) {
  return mask_has("/proc/" + std::to_string(pid) + "/status", {"ShdPnd:", "SigPnd:"}, sig)
      .value_or(false);
}

// Names of the threads of `pid` other than the one named `watcher` that do not block `sig`
// (SigBlk of /proc/PID/task/TID/status), and whether the watcher is there (its comm). The
// watcher is left out: sigtimedwait unblocks the signals it waits for while it waits, and takes
// them without a handler.
struct ThreadSignals {
  std::vector<std::string> not_blocking;
  bool has_watcher = false;
};
ThreadSignals thread_signals(pid_t pid, int sig, const std::string& watcher) {
  ThreadSignals out;
  for (const auto& task : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::string name;
    std::getline(std::ifstream(task.path() / "comm"), name);
    if (name == watcher) {
      out.has_watcher = true;
      continue;
    }
    const std::optional<bool> blocked = mask_has(task.path() / "status", {"SigBlk:"}, sig);
    if (blocked.has_value() && !*blocked)
      out.not_blocking.push_back(name + " (" + task.path().filename().string() + ")");
  }
  return out;
}

std::unique_ptr<train::Trainer> poisoned_trainer(const std::string& dump, const std::string& mode) {
  auto config = train::JobConfig::load(testing::fixed_batch_config("hf-tiny-text", dump, 3, 1),
                                       {{"training.on_nonfinite", mode}});
  auto model = train::build_model(config);
  const auto* e = model->store().find("model.language_model.norm.weight");
  model->store().value(e->ref)[0] = std::numeric_limits<float>::quiet_NaN();
  auto data = train::make_fixed_source(config.dataset_path);
  return std::make_unique<train::Trainer>(config, std::move(model), std::move(data),
                                          dist::make_local_communicator());
}

TEST(TrainFaults, NonFiniteLossStopsWithoutWritingACheckpoint) {
  const std::string dump = fresh("nan_stop");
  auto trainer = poisoned_trainer(dump, "stop");
  try {
    trainer->run();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dump + "/checkpoint/step-00000001"));
}

TEST(TrainFaults, NonFiniteStepsCanBeSkippedLeavingWeightsUntouched) {
  const std::string dump = fresh("nan_skip");
  auto trainer = poisoned_trainer(dump, "skip");
  const std::vector<float> before = trainer->model().store().values().to_vector();
  const auto history = trainer->run();
  ASSERT_EQ(history.size(), 3u);
  for (const auto& r : history) EXPECT_TRUE(r.skipped);
  const auto& after = trainer->model().store().values();
  for (size_t i = 0; i < before.size(); ++i) {
    if (std::isnan(before[i])) continue;
    ASSERT_EQ(before[i], after[i]) << i;
  }
}

TEST(TrainFaults, SigtermSavesACheckpointAtAStepBoundaryAndExits143) {
  const std::string dump = fresh("sigterm");
  const pid_t pid = start_long_training(dump);
  ASSERT_GT(pid, 0) << "training did not start";
  // No thread but the watcher may take the signal: a handler's frame pushed while a oneDNN GEMM
  // kernel points rsp at the heap corrupts it (cli/stop_signals.h). Every thread blocks it and
  // the watcher waits for it.
  for (int sig : {SIGTERM, SIGINT}) {
    const ThreadSignals threads = thread_signals(pid, sig, "qv-signals");
    EXPECT_TRUE(threads.has_watcher);
    EXPECT_TRUE(threads.not_blocking.empty())
        << strsignal(sig) << " can interrupt " << ::testing::PrintToString(threads.not_blocking);
  }
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGTERM);  // the shell's convention for "interrupted"
  const auto steps_done = testing::read_metrics(dump).size();
  const std::string ckpt = dump + "/checkpoint/step-" +
                           std::string(8 - std::to_string(steps_done).size(), '0') +
                           std::to_string(steps_done);
  EXPECT_TRUE(fs::exists(ckpt + "/state.json")) << ckpt;
  // No temporary folder is left behind.
  for (const auto& e : fs::directory_iterator(dump + "/checkpoint"))
    EXPECT_EQ(e.path().filename().string().rfind(".tmp", 0), std::string::npos);
}

// A second signal does not wait for the checkpoint: the process ends at once with 128 + signal
// and no checkpoint is listed (a save cut short leaves only its temporary folder, which the
// complete-or-absent protocol ignores). The second signal is sent as soon as the first has left
// the process's pending set (two pending SIGINTs would merge into one), microseconds later: a
// step boundary may fall in between, but the save it starts (tens of ms) cannot finish first.
TEST(TrainFaults, SecondSignalExitsAtOnceWithoutACheckpoint) {
  const std::string dump = fresh("sigint_twice");
  const pid_t pid = start_long_training(dump);
  ASSERT_GT(pid, 0) << "training did not start";
  kill(pid, SIGINT);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (signal_pending(pid, SIGINT) && std::chrono::steady_clock::now() < deadline) {
  }
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);
  if (!fs::exists(dump + "/checkpoint")) return;
  for (const auto& e : fs::directory_iterator(dump + "/checkpoint"))
    EXPECT_NE(e.path().filename().string().rfind("step-", 0), 0u) << e.path();
}

}  // namespace
}  // namespace qv
