// JobChoices (train/job_config.h): each closed set of the job config maps to its enum, and a value
// outside a set is an error naming the key (the TOML parser refuses such values first; these
// catch a JobConfig filled in code).
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "train/job_config.h"

namespace qv {
namespace {

using train::JobChoices;
using train::JobConfig;

std::string error_of(const JobConfig& c) {
  try {
    JobChoices::parse(c);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(JobChoices, DefaultsMapToTheirEnums) {
  const JobChoices j = JobChoices::parse(JobConfig{});
  EXPECT_EQ(j.dataset, train::DatasetKind::kCc12m);
  EXPECT_EQ(j.on_nonfinite, train::NonFinitePolicy::kStop);
  EXPECT_EQ(j.matmul_dtype, DType::kF32);
  EXPECT_EQ(j.export_dtype, DType::kF32);
  EXPECT_TRUE(j.truncate_long_samples);
  EXPECT_EQ(j.checkpointing.mode(), model::Checkpointing::Mode::kNone);
}

TEST(JobChoices, EveryChoiceMapsToItsEnum) {
  JobConfig c;
  c.dataset = "cc12m-test";
  EXPECT_EQ(JobChoices::parse(c).dataset, train::DatasetKind::kCc12m);
  c.dataset = "obelics";
  EXPECT_EQ(JobChoices::parse(c).dataset, train::DatasetKind::kObelics);
  c.dataset = "chat";
  EXPECT_EQ(JobChoices::parse(c).dataset, train::DatasetKind::kChat);
  c.dataset = "fixed";
  c.on_nonfinite = "skip";
  c.mixed_precision_param = "bfloat16";
  c.export_dtype = "float16";
  c.overlong_samples = "skip";
  c.ac_mode = "selective";
  c.ac_selective_option = "op";
  const JobChoices j = JobChoices::parse(c);
  EXPECT_EQ(j.dataset, train::DatasetKind::kFixed);
  EXPECT_EQ(j.on_nonfinite, train::NonFinitePolicy::kSkip);
  EXPECT_EQ(j.matmul_dtype, DType::kBF16);
  EXPECT_EQ(j.export_dtype, DType::kF16);
  EXPECT_FALSE(j.truncate_long_samples);
  EXPECT_EQ(j.checkpointing.mode(), model::Checkpointing::Mode::kSelectiveOp);
  c.export_dtype = "bfloat16";
  c.ac_mode = "full";
  EXPECT_EQ(JobChoices::parse(c).export_dtype, DType::kBF16);
  EXPECT_EQ(JobChoices::parse(c).checkpointing.mode(), model::Checkpointing::Mode::kFull);
}

TEST(JobChoices, AValueOutsideItsSetNamesTheKey) {
  auto bad = [](auto set) {
    JobConfig c;
    set(c);
    return error_of(c);
  };
  EXPECT_NE(bad([](JobConfig& c) { c.dataset = "laion"; }).find("training.dataset = 'laion'"),
            std::string::npos);
  EXPECT_NE(bad([](JobConfig& c) { c.on_nonfinite = "retry"; }).find("training.on_nonfinite"),
            std::string::npos);
  EXPECT_NE(bad([](JobConfig& c) {
              c.mixed_precision_param = "fp8";
            }).find("training.mixed_precision_param = 'fp8' is not one of: float32, bfloat16"),
            std::string::npos);
  EXPECT_NE(bad([](JobConfig& c) { c.export_dtype = "int8"; }).find("checkpoint.export_dtype"),
            std::string::npos);
  EXPECT_NE(bad([](JobConfig& c) { c.overlong_samples = "drop"; }).find("data.overlong_samples"),
            std::string::npos);
  EXPECT_NE(bad([](JobConfig& c) { c.ac_mode = "some"; }).find("activation_checkpoint mode"),
            std::string::npos);
}

}  // namespace
}  // namespace qv
