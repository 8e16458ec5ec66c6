// --device and [training] device: parsed strictly, and a CUDA device that cannot be used is
// refused with the reason (no CUDA backend in this build, no device on this machine), before
// any model is loaded. Runs in every build, with or without a GPU.
#include <gtest/gtest.h>

#include "cli_test_utils.h"
#include "core/error.h"
#include "train/job_config.h"
#include "train_test_utils.h"

namespace qv {
namespace {

using testing::run_qwen3vl;

bool mentions_missing_cuda(const std::string& out) {
  return out.find("no CUDA device") != std::string::npos ||
         out.find("built without the CUDA backend") != std::string::npos;
}

TEST(DeviceFlag, MalformedDeviceIsAUsageError) {
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cpu:0", "CUDA"}) {
    const auto r = run_qwen3vl(std::string("bench train --steps 1 --device ") + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
    EXPECT_NE(r.output.find("--device must be cpu, cuda or cuda:N"), std::string::npos) << r.output;
  }
}

TEST(DeviceFlag, CudaWithoutAUsableGpuIsRefusedWithTheReason) {
  const auto probe = run_qwen3vl("bench kernels --device cuda --gemm-size 256 --seq-len 64");
  if (probe.exit_code == 0) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_EQ(probe.exit_code, 1) << probe.output;
  EXPECT_TRUE(mentions_missing_cuda(probe.output)) << probe.output;
  // forward and generate refuse before reading the (missing) model folder; bench before
  // building its model.
  for (const char* cmd : {"forward --model /nonexistent --inputs /nonexistent --device cuda:0",
                          "generate --model /nonexistent --prompt hi --device cuda",
                          "bench train --steps 1 --device cuda", "bench forward --device cuda:0"}) {
    const auto r = run_qwen3vl(cmd);
    EXPECT_EQ(r.exit_code, 1) << cmd << ": " << r.output;
    EXPECT_TRUE(mentions_missing_cuda(r.output)) << cmd << ": " << r.output;
  }
}

// [training] device = "cuda" is refused the same way, before the model is built.
TEST(DeviceFlag, TrainingOnCudaWithoutAUsableGpuIsRefusedWithTheReason) {
  const auto probe = run_qwen3vl("bench kernels --device cuda --gemm-size 256 --seq-len 64");
  if (probe.exit_code == 0) GTEST_SKIP() << "a CUDA device is present";
  const std::string dump = testing::fresh_dir("device_flag", "train_cuda");
  const std::string config = testing::fixed_batch_config("hf-tiny-text", dump, 1, 1);
  const auto r = run_qwen3vl("train --config " + config + " --training.device cuda");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(mentions_missing_cuda(r.output)) << r.output;
  EXPECT_EQ(r.output.find("loaded weights"), std::string::npos) << r.output;
}

// The communicator is chosen by launcher and device, and named in the log: the local one for a
// single process, MPI between CPU processes under mpirun (NCCL between GPU processes: only on a
// GPU machine, scripts/gpu_check.sh).
TEST(DeviceFlag, OneProcessLogsTheLocalCommunicator) {
  const std::string one = testing::fresh_dir("device_flag", "comm_one");
  const auto r =
      run_qwen3vl("train --config " + testing::fixed_batch_config("hf-tiny-text", one, 1, 1) +
                  " --checkpoint.enable false");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("communicator: local (one process)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("device: cpu"), std::string::npos) << r.output;
}

// "Mpi" in the name: scripts/test_sanitize.sh runs mpirun tests without leak checks (Open MPI's
// plugins leak from modules no suppression can name).
TEST(DeviceFlag, MpiRunOnCpusLogsTheMpiCommunicator) {
  const std::string two = testing::fresh_dir("device_flag", "comm_mpi");
  const auto r = testing::run_shell(testing::mpirun(2) + QWEN3VL_BINARY + " train --config " +
                                    testing::fixed_batch_config("hf-tiny-text", two, 1, 1) +
                                    " --checkpoint.enable false");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("communicator: MPI over 2 processes"), std::string::npos) << r.output;
}

TEST(DeviceFlag, TrainingDeviceKeyIsValidated) {
  EXPECT_EQ(train::JobConfig::parse("[training]\ndevice = \"cuda:1\"\n", "job.toml").device,
            "cuda:1");
  EXPECT_EQ(train::JobConfig::parse("", "job.toml").device, "cpu");
  try {
    train::JobConfig::parse("[training]\ndevice = \"tpu\"\n", "job.toml");
    FAIL() << "training.device = tpu accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("training.device must be cpu, cuda or cuda:N"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace qv
