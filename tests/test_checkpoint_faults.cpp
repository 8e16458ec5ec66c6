// Crashes and full disks while a checkpoint is being written, through the qwen3vl binary: the
// previous checkpoint stays loadable, the partial one is never used, and training resumes to the
// same result as an uninterrupted run. Uses the test-only write faults of io/write_faults.h and,
// where the machine allows it, a real small tmpfs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "io/atomic_file.h"
#include "model/hf_weights.h"
#include "train/checkpoint.h"
#include "train/checkpoint_index.h"
#include "train/job_config.h"
#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
using testing::fixed_batch_config;
using testing::read_metrics;

std::string fresh(const std::string& name) {
  return testing::fresh_dir("ckptfault", name);
}

int64_t folder_bytes(const std::string& dir) {
  int64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) n += static_cast<int64_t>(e.file_size());
  return n;
}

std::vector<std::string> temp_entries(const std::string& folder) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(folder))
    if (e.path().filename().string().rfind(".tmp", 0) == 0) out.push_back(e.path().string());
  return out;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string train_command(const std::string& cfg) {
  return std::string(QWEN3VL_BINARY) + " train --config " + cfg;
}

pid_t spawn_train(const std::string& cfg, const std::vector<std::string>& extra_env) {
  return testing::spawn_qwen3vl({"train", "--config", cfg}, extra_env);
}

int64_t load_step(const std::string& cfg, const std::string& checkpoint) {
  auto config = train::JobConfig::load(cfg);
  auto model = train::build_model(config);
  train::OptimizerState opt;
  return train::load_checkpoint(checkpoint, model->store(), &opt).step;
}

TEST(CheckpointFaults, KillNineMidSaveKeepsThePreviousCheckpointAndResumesExactly) {
  const std::string straight = fresh("kill_straight"), killed = fresh("kill_resumed");
  auto r = testing::run_shell(train_command(fixed_batch_config("hf-tiny-text", straight, 4, 2)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Pause halfway through the parameters file of the second save (step 4): the first save wrote
  // exactly the step-2 folder's bytes through the atomic writer.
  const std::string step2 = straight + "/checkpoint/step-00000002";
  const int64_t pause_at =
      folder_bytes(step2) +
      static_cast<int64_t>(fs::file_size(step2 + "/model-rank00000.safetensors")) / 2;
  const std::string cfg = fixed_batch_config("hf-tiny-text", killed, 4, 2);
  const std::string marker = killed + "/paused";
  const pid_t pid = spawn_train(cfg, {"QWEN3VL_FAULT=pause@bytes:" + std::to_string(pause_at),
                                      "QWEN3VL_FAULT_MARKER=" + marker});
  ASSERT_GT(pid, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!fs::exists(marker) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const bool paused = fs::exists(marker);
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(paused) << "the writer never reached the fault point";
  ASSERT_TRUE(WIFSIGNALED(status));

  // On disk: the step-2 checkpoint, and a partial temp folder that no reader lists.
  const std::string folder = killed + "/checkpoint";
  EXPECT_FALSE(fs::exists(folder + "/step-00000004"));
  const auto temps = temp_entries(folder);
  ASSERT_EQ(temps.size(), 1u);
  EXPECT_NE(temps[0].find(".tmp-step-00000004-"), std::string::npos) << temps[0];
  EXPECT_GT(folder_bytes(temps[0]), 0) << "the kill was meant to land mid-file";
  EXPECT_EQ(train::latest_checkpoint(folder).value_or(""), folder + "/step-00000002");
  EXPECT_EQ(load_step(cfg, folder + "/step-00000002"), 2);

  // Resume: continues from step 2, removes the stale folder, ends where the straight run did.
  r = testing::run_shell(train_command(cfg));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from " + folder + "/step-00000002"), std::string::npos)
      << r.output;
  EXPECT_TRUE(temp_entries(folder).empty()) << temps[0] << " was not cleaned up";
  const auto ma = read_metrics(straight), mb = read_metrics(killed);
  ASSERT_EQ(ma.size(), 4u);
  ASSERT_EQ(mb.size(), 6u);  // steps 1-4 before the kill, then 3-4 again
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(mb[4 + i]["step"], ma[2 + i]["step"]);
    EXPECT_EQ(mb[4 + i]["loss"].get<double>(), ma[2 + i]["loss"].get<double>()) << i;
  }
  EXPECT_EQ(testing::max_weight_diff(straight + "/hf_export", killed + "/hf_export"), 0.0);
}

// Runs `command` with a tmpfs of `bytes` mounted on `mount_dir`, then copies what the tmpfs holds
// to `copy_dir` (the mount may live in a private namespace that ends with the command). Tries a
// user+mount namespace (`unshare -rm`, no privileges needed where user namespaces are allowed),
// then a plain mount (root with CAP_SYS_ADMIN). nullopt where neither can mount.
std::optional<testing::CommandResult> run_on_small_tmpfs(const std::string& command,
                                                         const std::string& mount_dir,
                                                         int64_t bytes,
                                                         const std::string& copy_dir) {
  fs::create_directories(mount_dir);
  fs::create_directories(copy_dir);
  const std::string mount =
      "mount -t tmpfs -o size=" + std::to_string(bytes) + " tmpfs " + mount_dir;
  const std::string script = mount + " || exit 99; " + command + "; rc=$?; cp -a " + mount_dir +
                             "/. " + copy_dir + "/; umount " + mount_dir + "; exit $rc";
  for (const std::string prefix : {"unshare -rm ", ""}) {
    // A probe first, so that a failing `unshare` is not taken for the job's exit code.
    if (testing::run_shell(prefix + "sh -c '" + mount + " && umount " + mount_dir + "'")
            .exit_code != 0)
      continue;
    return testing::run_shell(prefix + "sh -c '" + script + "'");
  }
  return std::nullopt;
}

TEST(CheckpointFaults, FullDiskIsAClearErrorAndKeepsThePreviousCheckpoint) {
  // Size of one checkpoint of this job.
  const std::string probe = fresh("disk_probe");
  auto r = testing::run_shell(train_command(fixed_batch_config("hf-tiny-text", probe, 1, 1)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const int64_t one = folder_bytes(probe + "/checkpoint/step-00000001");
  // Room for the first checkpoint and half of the second.
  const int64_t room = one + one / 2;
  const std::string dump = fresh("disk_full");
  const std::string cfg = fixed_batch_config("hf-tiny-text", dump, 3, 1);
  std::string folder = dump + "/checkpoint";
  auto tmpfs = run_on_small_tmpfs(train_command(cfg), folder, room, dump + "/checkpoint_copy");
  if (tmpfs) {
    r = *tmpfs;
    folder = dump + "/checkpoint_copy";
  } else {
    std::printf("[ note ] cannot mount a tmpfs here; using QWEN3VL_FAULT=enospc@bytes:%lld\n",
                static_cast<long long>(room));
    r = testing::run_shell("QWEN3VL_FAULT=enospc@bytes:" + std::to_string(room) + " " +
                           train_command(cfg));
  }
  EXPECT_EQ(r.exit_code, 1) << r.output;  // an error exit, not a crash (-1: killed by a signal)
  EXPECT_NE(lower(r.output).find("no space left on device"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("checkpoint save to " + dump +
                          "/checkpoint/step-00000002 failed "
                          "(previous checkpoints kept)"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(folder + "/step-00000002"));
  EXPECT_TRUE(temp_entries(folder).empty());
  EXPECT_EQ(train::latest_checkpoint(folder).value_or(""), folder + "/step-00000001");
  EXPECT_EQ(load_step(cfg, folder + "/step-00000001"), 1);
}

// Named *Mpi* so that the sanitizer stage runs it without leak detection (Open MPI plugins).
TEST(CheckpointFaultsMpi, FullDiskOnRankZeroEndsEveryRankPromptly) {
  const std::string dump = fresh("disk_full_mpi");
  const std::string cfg =
      fixed_batch_config("hf-tiny-text", dump, 3, 1, "[comm]\ntrain_timeout_seconds = 600\n");
  const auto start = std::chrono::steady_clock::now();
  const auto r = testing::run_shell(testing::mpirun(2) + "-x QWEN3VL_FAULT=enospc@bytes:1000 " +
                                    train_command(cfg));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(lower(r.output).find("no space left on device"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("failed on rank 0"), std::string::npos) << r.output;
  // Far below the 600 s collective timeout: rank 1 did not wait for a collective that never came.
  EXPECT_LT(seconds, 300.0) << r.output;
  EXPECT_TRUE(temp_entries(dump + "/checkpoint").empty());
  EXPECT_FALSE(train::latest_checkpoint(dump + "/checkpoint").has_value());
}

TEST(CheckpointFaults, SigintSavesAtAStepBoundaryAndExits130) {
  const std::string dump = fresh("sigint");
  const pid_t pid = spawn_train(fixed_batch_config("hf-tiny-text", dump, 100000, 100000), {});
  ASSERT_GT(pid, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (read_metrics(dump).size() < 2 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  kill(pid, SIGINT);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);
  const auto steps = read_metrics(dump).size();
  ASSERT_GE(steps, 2u);
  char name[32];
  std::snprintf(name, sizeof(name), "step-%08zu", steps);
  EXPECT_TRUE(fs::exists(dump + "/checkpoint/" + name + "/state.json")) << name;
  EXPECT_TRUE(temp_entries(dump + "/checkpoint").empty());
}

// The weights files have CRCs in state.json (TrainResume.CorruptCheckpointIsDetected); state.json
// has one over its own content, so a flipped byte that still parses is caught too.
TEST(CheckpointFaults, FlippedByteInStateJsonIsDetected) {
  const std::string dump = fresh("state_flip");
  const std::string cfg = fixed_batch_config("hf-tiny-text", dump, 1, 1);
  auto r = testing::run_shell(train_command(cfg));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string ckpt = dump + "/checkpoint/step-00000001";
  EXPECT_EQ(load_step(cfg, ckpt), 1);
  std::string text = io::read_file(ckpt + "/state.json");
  const size_t at = text.find("\"step\": 1");
  ASSERT_NE(at, std::string::npos) << text;
  text[at + 8] ^= 0x02;  // '1' -> '3': still valid JSON
  std::ofstream(ckpt + "/state.json", std::ios::binary | std::ios::trunc) << text;
  try {
    load_step(cfg, ckpt);
    FAIL() << "a corrupt state.json was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("state.json is corrupt"), std::string::npos) << e.what();
  }
}

// A state.json that is truncated, or parses with a field out of range (under a matching CRC, as a
// hand edit would leave it), ends the load and the resume with an error naming the file and the
// field: never a crash, and never a resume from a wrong step.
TEST(CheckpointFaults, TruncatedOrOutOfRangeStateJsonIsAClearError) {
  const std::string dump = fresh("state_bad");
  const std::string cfg = fixed_batch_config("hf-tiny-text", dump, 1, 1);
  auto r = testing::run_shell(train_command(cfg));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string ckpt = dump + "/checkpoint/step-00000001", file = ckpt + "/state.json";
  const std::string good = io::read_file(file);
  auto expect_error = [&](const std::string& text, const std::string& message) {
    std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
    try {
      load_step(cfg, ckpt);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(file + ": " + message), std::string::npos) << e.what();
    }
    // The job resuming from it (2 steps wanted) stops with the same message.
    const std::string longer = fixed_batch_config("hf-tiny-text", dump, 2, 1);
    const auto run = testing::run_shell(train_command(longer));
    EXPECT_NE(run.exit_code, 0) << run.output;
    EXPECT_NE(run.output.find(message), std::string::npos) << run.output;
    EXPECT_EQ(run.output.find("resumed from"), std::string::npos) << run.output;
  };
  expect_error(good.substr(0, good.size() / 2), "not valid JSON");
  nlohmann::json j = nlohmann::json::parse(good);
  j["step"] = -3;
  j["state_crc32c"] = train::state_crc(j);
  expect_error(j.dump(2), "state.step = -3 is outside");
  j = nlohmann::json::parse(good);
  j["world"] = "one";
  j["state_crc32c"] = train::state_crc(j);
  expect_error(j.dump(2), "state.world is not an integer");
}

// The final Hugging Face export is written the same way: a failed export leaves the folder as
// it was (here: a previous export), never a mix of old and new files.
TEST(CheckpointFaults, FailedHfExportLeavesThePreviousExportIntact) {
  const std::string dump = fresh("export");
  auto config = train::JobConfig::load(fixed_batch_config("hf-tiny-text", dump, 1, 1));
  auto model = train::build_model(config);
  const std::string dir = dump + "/export";
  model::save_hf_checkpoint(dir, model->config(), model->store());
  const auto before = io::load_safetensors(dir + "/model.safetensors");
  try {
    model::save_hf_checkpoint(dir, model->config(), model->store(), DType::kBF16, 4ll << 30,
                              {{"tokenizer.json", dump + "/no-such-tokenizer.json"}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("export to " + dir + " failed"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("no-such-tokenizer.json"), std::string::npos) << e.what();
  }
  // Still the F32 export, complete, and no temporary folder next to it.
  const auto after = io::load_safetensors(dir + "/model.safetensors");
  ASSERT_EQ(before.size(), after.size());
  for (const auto& [name, t] : after) EXPECT_EQ(t.dtype(), DType::kF32) << name;
  EXPECT_TRUE(temp_entries(dump).empty());
}

}  // namespace
}  // namespace qv
