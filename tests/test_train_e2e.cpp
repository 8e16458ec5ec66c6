// End-to-end training runs through the binary: exact resume, and data parallelism under mpirun
// (replicated and sharded) against one process with the combined batch.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
using testing::fixed_batch_config;
using testing::read_metrics;

std::string fresh(const std::string& name) {
  return testing::fresh_dir("e2e", name);
}

std::string binary() {
  return QWEN3VL_BINARY;
}

TEST(TrainResume, HalfThenResumeEqualsStraightRun) {
  const std::string a = fresh("straight"), b = fresh("resumed");
  auto r = testing::run_shell(binary() + " train --config " +
                              fixed_batch_config("hf-tiny-image", a, 6, 3));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = testing::run_shell(binary() + " train --config " +
                         fixed_batch_config("hf-tiny-image", b, 6, 3));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Forget everything after step 3, then resume from the step-3 checkpoint.
  fs::remove_all(b + "/checkpoint/step-00000006");
  fs::remove_all(b + "/hf_export");
  r = testing::run_shell(binary() + " train --config " + b + "/job.toml");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  const auto ma = read_metrics(a), mb = read_metrics(b);
  ASSERT_EQ(ma.size(), 6u);
  ASSERT_EQ(mb.size(), 9u);  // 6 + the 3 resumed steps
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(mb[6 + i]["step"], ma[3 + i]["step"]);
    EXPECT_EQ(mb[6 + i]["loss"].get<double>(), ma[3 + i]["loss"].get<double>()) << i;
    EXPECT_EQ(mb[6 + i]["grad_norm"].get<double>(), ma[3 + i]["grad_norm"].get<double>()) << i;
  }
  EXPECT_EQ(testing::max_weight_diff(a + "/hf_export", b + "/hf_export"), 0.0);
}

TEST(TrainResume, CorruptCheckpointIsDetected) {
  const std::string a = fresh("corrupt");
  auto r = testing::run_shell(binary() + " train --config " +
                              fixed_batch_config("hf-tiny-text", a, 2, 1));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fs::remove_all(a + "/checkpoint/step-00000002");
  const std::string model = a + "/checkpoint/step-00000001/model-rank00000.safetensors";
  {
    std::fstream f(model, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(model) - 7));
    char c = 0;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(fs::file_size(model) - 7));
    c ^= 0x10;
    f.write(&c, 1);
  }
  r = testing::run_shell(binary() + " train --config " + a + "/job.toml");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("corrupt"), std::string::npos) << r.output;
}

void expect_same_training(const std::string& single, const std::string& multi) {
  const auto m1 = read_metrics(single), m2 = read_metrics(multi);
  ASSERT_EQ(m1.size(), m2.size());
  for (size_t i = 0; i < m1.size(); ++i) {
    EXPECT_NEAR(m1[i]["loss"].get<double>(), m2[i]["loss"].get<double>(), 2e-6) << i;
    EXPECT_NEAR(m1[i]["grad_norm"].get<double>(), m2[i]["grad_norm"].get<double>(), 2e-5) << i;
    EXPECT_EQ(m1[i]["tokens"], m2[i]["tokens"]);
  }
  EXPECT_LT(testing::max_weight_diff(single + "/hf_export", multi + "/hf_export"), 2e-5);
}

class TrainMpi : public ::testing::TestWithParam<const char*> {};

TEST_P(TrainMpi, TwoRanksEqualOneRankWithTheCombinedBatch) {
  const std::string mode = GetParam();
  const std::string one = fresh("mpi1_" + mode), two = fresh("mpi2_" + mode);
  const std::string degrees = mode == std::string("replicate")
                                  ? " --parallelism.data_parallel_replicate_degree 2 "
                                    "--parallelism.data_parallel_shard_degree 1"
                                  : " --parallelism.data_parallel_replicate_degree 1 "
                                    "--parallelism.data_parallel_shard_degree 2";
  auto r = testing::run_shell(binary() + " train --config " +
                              fixed_batch_config("hf-tiny-text", one, 4, 10));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = testing::run_shell(testing::mpirun(2) + binary() + " train --config " +
                         fixed_batch_config("hf-tiny-text", two, 4, 10) + degrees);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_training(one, two);
}

INSTANTIATE_TEST_SUITE_P(Modes, TrainMpi, ::testing::Values("replicate", "shard"));

TEST(TrainMpiCheckpoint, TwoRanksToOneAndOneToTwo) {
  const std::string straight = fresh("mpi_straight");
  auto r = testing::run_shell(binary() + " train --config " +
                              fixed_batch_config("hf-tiny-text", straight, 4, 2));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const bool two_first : {true, false}) {
    const std::string dir = fresh(two_first ? "mpi_2to1" : "mpi_1to2");
    const std::string cfg = fixed_batch_config("hf-tiny-text", dir, 4, 2);
    const std::string two = testing::mpirun(2) + binary() + " train --config " + cfg;
    const std::string one = binary() + " train --config " + cfg;
    r = testing::run_shell(two_first ? two : one);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    fs::remove_all(dir + "/checkpoint/step-00000004");
    fs::remove_all(dir + "/hf_export");
    r = testing::run_shell(two_first ? one : two);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_LT(testing::max_weight_diff(straight + "/hf_export", dir + "/hf_export"), 2e-5)
        << (two_first ? "2 -> 1" : "1 -> 2");
  }
}

TEST(TrainMpiConfig, DegreeThatDoesNotDivideTheWorldIsAClearError) {
  const std::string dir = fresh("mpi_bad_degree");
  const auto r = testing::run_shell(testing::mpirun(2) + binary() + " train --config " +
                                    fixed_batch_config("hf-tiny-text", dir, 1, 1) +
                                    " --parallelism.data_parallel_shard_degree 3");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("must equal the number of ranks"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace qv
