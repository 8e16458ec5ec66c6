// torchtitan job configs as they are: the keys this system does not implement are accepted when
// their value is torchtitan's default or means nothing here (one warning lists them) and refused
// with the reason otherwise; torchtitan's aliases (hf_assets_path, initial_load_in_hf, load_step,
// debug.seed, [training.dataloader], export_dtype = "float16") do what torchtitan does with them.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "cli_test_utils.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "loader_test_utils.h"
#include "train/job_config.h"
#include "train/torchtitan_keys.h"
#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
using train::JobConfig;

const std::string kDebugToml = testing::kRoot + "/tests/data/torchtitan_qwen3vl_debug.toml";

// The error message of parsing `toml` with `overrides`, "" when it parses.
std::string parse_error(const std::string& toml,
                        const std::vector<std::pair<std::string, std::string>>& overrides = {}) {
  try {
    JobConfig::parse(toml, "job.toml", overrides);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

TEST(TorchtitanConfig, DebugConfigParsesAndListsTheKeysWithoutEffect) {
  const JobConfig c = JobConfig::load(kDebugToml);
  EXPECT_EQ(c.flavor, "debugmodel");
  EXPECT_EQ(c.dp_shard, 8);
  EXPECT_EQ(c.expert_parallel, 1);  // a key of ours now (dist/expert_parallel.h)
  EXPECT_EQ(c.ac_mode, "full");
  EXPECT_EQ(c.hf_assets_path, "assets/hf/Qwen3-VL-8B-Instruct");
  // hf_assets_path supplies the tokenizer, as in torchtitan.
  EXPECT_EQ(c.tokenizer_path, "assets/hf/Qwen3-VL-8B-Instruct/tokenizer.json");
  const std::vector<std::string> expected = {"job.custom_config_module",
                                             "profiling.enable_profiling",
                                             "profiling.save_traces_folder",
                                             "profiling.profile_freq",
                                             "profiling.enable_memory_snapshot",
                                             "profiling.save_memory_snapshot_folder",
                                             "metrics.disable_color_printing",
                                             "metrics.enable_wandb",
                                             "compile.enable",
                                             "parallelism.fsdp_reshard_after_forward",
                                             "parallelism.tensor_parallel_degree",
                                             "parallelism.enable_async_tensor_parallel",
                                             "parallelism.pipeline_parallel_degree",
                                             "parallelism.context_parallel_degree"};
  auto got = c.accepted_torchtitan_keys;
  auto want = expected;
  std::sort(got.begin(), got.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);
}

TEST(TorchtitanConfig, ValuesWeCannotHonourAreRefusedWithTheReason) {
  struct Case {
    std::string toml, needle;
  };
  const std::vector<Case> cases = {
      {"[parallelism]\ntensor_parallel_degree = 2\n", "tensor parallelism is not implemented"},
      {"[parallelism]\npipeline_parallel_degree = 4\n", "pipeline parallelism"},
      {"[parallelism]\ncontext_parallel_degree = 2\n", "context parallelism"},
      {"[parallelism]\nfsdp_reshard_after_forward = \"never\"\n", "ZeRO-3"},
      {"[metrics]\nenable_wandb = true\n", "Weights & Biases"},
      {"[model]\nconverters = [\"float8\"]\n", "converters"},
      {"[profiling]\nenable_profiling = true\n", "profiler"},
      {"[training]\ndtype = \"bfloat16\"\n", "pure bfloat16"},
      {"[training]\nmixed_precision_reduce = \"bfloat16\"\n", "float32"},
      {"[checkpoint]\ninitial_load_model_only = false\n", "model weights only"},
      {"[fault_tolerance]\nenable = true\n", "torchft"},
  };
  for (const Case& c : cases) {
    const std::string err = parse_error(c.toml);
    EXPECT_NE(err.find("cannot be honoured"), std::string::npos) << c.toml << err;
    EXPECT_NE(err.find(c.needle), std::string::npos) << c.toml << err;
    EXPECT_NE(err.find("job.toml"), std::string::npos) << err;  // names the file
  }
  // The same through command-line overrides.
  const std::string err = parse_error("", {{"parallelism.tensor_parallel_degree", "2"}});
  EXPECT_NE(err.find("--parallelism.tensor_parallel_degree"), std::string::npos) << err;
  EXPECT_EQ(parse_error("", {{"parallelism.tensor_parallel_degree", "1"}}), "");
  EXPECT_EQ(parse_error("", {{"model.converters", ""}}), "");  // an empty list
}

TEST(TorchtitanConfig, DefaultsAndMeaninglessValuesAreAccepted) {
  EXPECT_EQ(parse_error("[compile]\nenable = false\nbackend = \"eager\"\n"), "");
  EXPECT_EQ(parse_error("[parallelism]\nfsdp_reshard_after_forward = \"always\"\n"), "");
  EXPECT_EQ(parse_error("[training]\nmixed_precision_reduce = \"float32\"\ngc_freq = 7\n"), "");
  EXPECT_EQ(parse_error("[checkpoint]\nlast_save_in_hf = true\n"), "");
  // Implemented: asynchronous saves (torchtitan's pinned-memory variant means the same here).
  EXPECT_EQ(parse_error("[checkpoint]\nasync_mode = \"async_with_pinned_mem\"\n"), "");
  EXPECT_NE(parse_error("[checkpoint]\nasync_mode = \"sometimes\"\n").find("async"),
            std::string::npos);
  // Nested tables: [training.dataloader] and quantize's sub-sections.
  const JobConfig c = JobConfig::parse(
      "[training.dataloader]\nnum_workers = 4\npin_memory = true\n"
      "[quantize.linear.float8]\nemulate = true\n",
      "job.toml");
  EXPECT_TRUE(contains(c.accepted_torchtitan_keys, "training.dataloader.num_workers"));
  EXPECT_TRUE(contains(c.accepted_torchtitan_keys, "quantize.linear.float8.emulate"));
}

TEST(TorchtitanConfig, UnknownKeysAreStillErrors) {
  EXPECT_NE(parse_error("[training]\nstepz = 3\n").find("unknown key 'training.stepz'"),
            std::string::npos);
  EXPECT_NE(parse_error("[training.dataloader]\nworkerz = 3\n")
                .find("unknown key 'training.dataloader.workerz'"),
            std::string::npos);
  EXPECT_NE(parse_error("[nosuch]\nx = 1\n").find("sections are"), std::string::npos);
  EXPECT_NE(parse_error("", {{"training.stepz", "3"}}).find("unknown override"), std::string::npos);
}

TEST(TorchtitanConfig, AliasesDoWhatTorchtitanDoes) {
  const std::string assets = testing::fresh_dir("tt", "assets");
  fs::create_directories(assets);
  io::write_file_atomic(assets + "/config.json", "{}");
  JobConfig c = JobConfig::parse(
      "[model]\nhf_assets_path = \"" + assets + "\"\n[checkpoint]\ninitial_load_in_hf = true\n" +
          "load_step = 20\nexport_dtype = \"float16\"\n[debug]\nseed = 7\n" +
          "[lr_scheduler]\ntotal_steps = 50\n",
      "job.toml");
  EXPECT_EQ(c.tokenizer_path, assets + "/tokenizer.json");
  EXPECT_EQ(c.initial_load_path, assets);  // HF weights from the assets folder
  EXPECT_EQ(c.hf_config, assets);          // with their config.json
  EXPECT_EQ(c.load_step, 20);
  EXPECT_EQ(c.export_dtype, "float16");
  EXPECT_EQ(c.seed, 7);
  EXPECT_EQ(c.lr_total_steps, 50);
  // Without initial_load_in_hf the assets folder gives only the tokenizer.
  c = JobConfig::parse("[model]\nhf_assets_path = \"" + assets + "\"\n", "job.toml");
  EXPECT_TRUE(c.initial_load_path.empty());
  EXPECT_TRUE(c.hf_config.empty());
  // A tokenizer_path naming a folder means its tokenizer.json.
  c = JobConfig::parse("[model]\ntokenizer_path = \"" + assets + "\"\n", "job.toml");
  EXPECT_EQ(c.tokenizer_path, assets + "/tokenizer.json");
  EXPECT_NE(parse_error("[checkpoint]\ninitial_load_in_hf = true\n").find("hf_assets_path"),
            std::string::npos);
}

TEST(TorchtitanConfig, BooleanOverridesAndNegation) {
  JobConfig c = JobConfig::parse("[checkpoint]\nenable = true\n", "job.toml",
                                 {{"checkpoint.no_enable", "true"}});
  EXPECT_FALSE(c.checkpoint_enable);
  c = JobConfig::parse("", "job.toml", {{"checkpoint.enable", "true"}});
  EXPECT_TRUE(c.checkpoint_enable);
  EXPECT_NE(parse_error("", {{"checkpoint.no_enable", "false"}}).find("takes no value"),
            std::string::npos);
  EXPECT_TRUE(JobConfig::is_known_key("checkpoint.no-enable"));
  EXPECT_FALSE(JobConfig::is_known_key("training.no_steps"));  // not a boolean
}

// to_toml() (what --help and job.print_config show) is valid TOML that parses back to itself,
// for the defaults and for a config with every kind of value changed.
TEST(TorchtitanConfig, ToTomlRoundTrips) {
  const std::string defaults = JobConfig().to_toml();
  EXPECT_EQ(JobConfig::parse(defaults, "defaults").to_toml(), defaults);
  const JobConfig c = JobConfig::load(kDebugToml, {{"model.freeze", "visual,merger"},
                                                   {"optimizer.betas", "0.8,0.9"},
                                                   {"job.description", "a \"quoted\" \\ name"}});
  const std::string text = c.to_toml();
  EXPECT_EQ(JobConfig::parse(text, "printed").to_toml(), text);
  for (const std::string& key : JobConfig::known_keys()) {
    std::string line = "\n";  // "\nname = " (built in steps: GCC 12 warns falsely on one +)
    line.append(key, key.find('.') + 1).append(" = ");
    EXPECT_NE(defaults.find(line), std::string::npos) << key;
  }
}

// torchtitan's checkpoint options: a save after step 1, resuming at a given step, and
// load-only runs that never save.
TEST(TorchtitanConfig, FirstStepCheckpointLoadStepAndLoadOnly) {
  const std::string dump = testing::fresh_dir("tt", "ckpt");
  const std::string cfg = testing::fixed_batch_config("hf-tiny-text", dump, 4, 10,
                                                      "enable_first_step_checkpoint = true\n");
  const std::string train = std::string(QWEN3VL_BINARY) + " train --config " + cfg;
  auto r = testing::run_shell(train);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string ckpt = dump + "/checkpoint/";
  EXPECT_TRUE(fs::exists(ckpt + "step-00000001/state.json"));
  EXPECT_FALSE(fs::exists(ckpt + "step-00000002"));
  EXPECT_TRUE(fs::exists(ckpt + "step-00000004/state.json"));
  // load_step picks the step-1 checkpoint although step 4 is newer.
  r = testing::run_shell(train + " --checkpoint.load_step 1 --checkpoint.load_only");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from " + ckpt + "step-00000001 at step 1"), std::string::npos)
      << r.output;
  // A step with no checkpoint names the ones there.
  r = testing::run_shell(train + " --checkpoint.load_step 3");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("steps there: 1, 4"), std::string::npos) << r.output;
  // load_only: resumes from step 4, trains to 6, saves nothing.
  r = testing::run_shell(train + " --checkpoint.load_only --training.steps 6");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("at step 4"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(ckpt + "step-00000006"));
  EXPECT_EQ(testing::read_metrics(dump).size(), 4u + 3u + 2u);
}

// The debug config runs unmodified apart from what a torchtitan user adds on one machine; the
// warning line lists the keys that had no effect.
TEST(TorchtitanConfig, SmallLocalDatasetNameResolvesToTheBundledShard) {
  // torchtitan's qwen3_vl registers obelics, cc12m and cc12m-test (datasets/mm_datasets.py).
  JobConfig c = JobConfig::parse("[training]\ndataset = \"cc12m-test\"\n", "job.toml", {});
  EXPECT_EQ(c.dataset, "cc12m");
  EXPECT_EQ(c.dataset_path, "data/cc12m-train-0000.tar");
  EXPECT_TRUE(fs::exists(testing::kRoot + "/" + c.dataset_path));
  // An explicit path wins, as torchtitan's dataset_path does.
  c = JobConfig::parse("[training]\ndataset = \"cc12m-test\"\ndataset_path = \"x.tar\"\n",
                       "job.toml", {});
  EXPECT_EQ(c.dataset_path, "x.tar");
}

TEST(TorchtitanConfig, InitAndSelectiveOptions) {
  JobConfig c = JobConfig::parse(
      "[model]\ninit = \"torchtitan\"\n[activation_checkpoint]\nmode = \"selective\"\n"
      "selective_ac_option = \"op\"\n",
      "job.toml", {});
  EXPECT_EQ(c.init, "torchtitan");
  EXPECT_EQ(c.ac_selective_option, "op");
  EXPECT_TRUE(c.accepted_torchtitan_keys.empty());  // both take effect now
  EXPECT_EQ(JobConfig::parse("", "job.toml", {}).init, "hf");
  const std::string err =
      parse_error("[activation_checkpoint]\nmode = \"selective\"\nselective_ac_option = \"x\"\n");
  EXPECT_NE(err.find("'x'"), std::string::npos) << err;
  EXPECT_NE(parse_error("[model]\ninit = \"xavier\"\n"), "");
}

TEST(TorchtitanConfig, DebugConfigTrainsWithOnlyMachineOverrides) {
  const std::string dump = testing::fresh_dir("tt", "debug_run");
  const std::string assets = testing::fresh_dir("tt", "debug_assets");
  fs::create_directories(assets);
  fs::copy_file(testing::kTokenizer, assets + "/tokenizer.json");
  // torchtitan's small local dataset by name, from the repository root as torchtitan's is.
  const auto r = testing::run_shell(
      "cd " + testing::kRoot + " && " + QWEN3VL_BINARY + " train --job.config_file " + kDebugToml +
      " --job.dump_folder " + dump + " --model.hf_assets_path " + assets +
      " --training.dataset cc12m-test --parallelism.data_parallel_shard_degree 1" +
      " --training.local_batch_size 1 --training.seq_len 256 --training.steps 2" +
      " --data.max_patches_per_image 16 --data.min_pixels 3136");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("torchtitan keys accepted with no effect here"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("compile.enable"), std::string::npos) << r.output;
  EXPECT_EQ(testing::read_metrics(dump).size(), 2u);
}

}  // namespace
}  // namespace qv
