// Sharded checkpoints through the binary under mpirun (oversubscribed): resume on another rank
// count and layout is bit-exact, including the data position; the same layout resumes to the
// uninterrupted run; kill -9 of one rank mid-save and a full disk on one rank leave no listed
// checkpoint; a missing shard file is an error naming it; asynchronous saves give the same
// checkpoints as synchronous ones; the streamed export, plain and LoRA-merged, equals the single
// process's byte for byte. Suites are named *Mpi* so the sanitizer stage runs them
// without leak checks (Open MPI's plugins).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "checkpoint_test_utils.h"
#include "dist/parallel_dims.h"
#include "io/atomic_file.h"
#include "loader_test_utils.h"
#include "model/hf_weights.h"
#include "model/inputs_io.h"
#include "model/lora.h"
#include "model_test_utils.h"
#include "train/checkpoint.h"
#include "train/checkpoint_tools.h"
#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
using testing::Layout;
using testing::read_metrics;

std::string fresh(const std::string& name) {
  return testing::fresh_dir("ckptmpi", name);
}

std::string layout_flags(const Layout& l) {
  return " --parallelism.data_parallel_replicate_degree " + std::to_string(l.replicate) +
         " --parallelism.data_parallel_shard_degree " + std::to_string(l.shard);
}

// `train` on `l`'s ranks with the job in `dump` (steps, checkpoint every `interval`).
testing::CommandResult run_train(const std::string& dump, const Layout& l, int steps, int interval,
                                 const std::string& batch, const std::string& extra = "",
                                 const std::string& fixture = "hf-tiny-text") {
  const std::string cfg = testing::fixed_batch_config(fixture, dump, steps, interval);
  const std::string launch = l.world() > 1 ? testing::mpirun(static_cast<int>(l.world())) : "";
  return testing::run_shell(launch + QWEN3VL_BINARY + " train --config " + cfg + layout_flags(l) +
                            " --training.dataset_path " + batch + extra);
}

// The step-2 checkpoint of `src_dump` written again as layout `l` would write it, into
// dst_dump/checkpoint (in-process: ranks are threads).
void rewrite_as(const std::string& src_dump, const Layout& l, const std::string& dst_dump) {
  const std::string src = src_dump + "/checkpoint/step-00000002";
  auto config = train::JobConfig::load(src_dump + "/job.toml");
  auto model = train::build_model(config, dist::unit_alignment({1, 4}));
  train::OptimizerState opt;
  const train::TrainState st = train::load_checkpoint(src, model->store(), &opt);
  std::vector<nlohmann::json> data;
  for (int r = 0; r < l.world(); ++r) data.push_back(st.data_states.at(0));
  testing::save_layout(model->store(), opt.exp_avg, opt.exp_avg_sq, opt.steps, l,
                       dst_dump + "/checkpoint", 2, data, io::read_file(src + "/config.json"));
}

// Both runs' steps 3 and 4 and their final weights and optimizer states, bit for bit.
void expect_identical_continuation(const std::string& a, const std::string& b) {
  const auto ma = read_metrics(a), mb = read_metrics(b);
  ASSERT_GE(ma.size(), 2u);
  ASSERT_GE(mb.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const auto& x = ma[ma.size() - 2 + i];
    const auto& y = mb[mb.size() - 2 + i];
    EXPECT_EQ(x["step"], y["step"]);
    EXPECT_EQ(x["loss"].get<double>(), y["loss"].get<double>()) << "step " << x["step"];
    EXPECT_EQ(x["grad_norm"].get<double>(), y["grad_norm"].get<double>()) << "step " << x["step"];
  }
  EXPECT_EQ(testing::max_weight_diff(a + "/hf_export", b + "/hf_export"), 0.0);
  auto config = train::JobConfig::load(a + "/job.toml");
  auto ma_model = train::build_model(config), mb_model = train::build_model(config);
  train::OptimizerState oa, ob;
  train::load_checkpoint(a + "/checkpoint/step-00000004", ma_model->store(), &oa);
  train::load_checkpoint(b + "/checkpoint/step-00000004", mb_model->store(), &ob);
  EXPECT_EQ(oa.exp_avg, ob.exp_avg);
  EXPECT_EQ(oa.exp_avg_sq, ob.exp_avg_sq);
  EXPECT_EQ(oa.steps, ob.steps);
}

struct ReshardCase {
  const char* name;
  Layout from, to;
};

void PrintTo(const ReshardCase& c, std::ostream* os) {
  *os << c.name;
}

class CheckpointReshardMpi : public ::testing::TestWithParam<ReshardCase> {};

// Saved on N ranks in one layout, resumed on M ranks in another: steps 3-4 equal, bit for bit,
// those of a job resumed from the same state saved in M's own layout (rewritten in-process). So
// the resharded load gives exactly the state and data position M's own checkpoint would.
TEST_P(CheckpointReshardMpi, ResumeOnAnotherLayoutIsBitExact) {
  const ReshardCase& c = GetParam();
  const std::string a = fresh(std::string(c.name) + "_direct"),
                    b = fresh(std::string(c.name) + "_own_layout");
  const std::string batch = testing::four_row_text_batch(a);
  auto r = run_train(a, c.from, 2, 2, batch);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const train::CheckpointReport saved = train::inspect_checkpoint(a + "/checkpoint/step-00000002");
  EXPECT_TRUE(saved.ok()) << saved.describe();
  EXPECT_EQ(saved.world, c.from.world());
  fs::remove_all(a + "/hf_export");
  testing::fixed_batch_config("hf-tiny-text", b, 4, 2);  // b's job.toml
  rewrite_as(a, c.to, b);
  r = run_train(a, c.to, 4, 2, batch);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from " + a + "/checkpoint/step-00000002"), std::string::npos)
      << r.output;
  r = run_train(b, c.to, 4, 2, batch);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_identical_continuation(a, b);
}

INSTANTIATE_TEST_SUITE_P(Layouts, CheckpointReshardMpi,
                         ::testing::Values(ReshardCase{"zero3_2_to_hybrid_4", {1, 2}, {2, 2}},
                                           ReshardCase{"hybrid_4_to_replicated_2", {2, 2}, {2, 1}},
                                           ReshardCase{"replicated_2_to_zero3_4", {2, 1}, {1, 4}},
                                           ReshardCase{"zero3_4_to_one", {1, 4}, {1, 1}}),
                         [](const auto& info) { return std::string(info.param.name); });

// Expert parallelism: each rank saves the pieces of its own experts (owned ranges split by
// expert). The step-2 checkpoint of an EP2 job, loaded by one process and written again in the
// one-process layout, then resumed on EP2, continues bit for bit like the job resumed from its own
// checkpoint: EP2 -> one process -> EP2 loses nothing.
TEST(CheckpointExpertParallelMpi, Ep2ToOneProcessAndBackIsBitExact) {
  const std::string a = fresh("ep2_direct"), b = fresh("ep2_via_one");
  const std::string batch = testing::four_row_text_batch(a);
  const std::string ep = " --parallelism.expert_parallel_degree 2";
  auto r = run_train(a, {1, 2}, 4, 2, batch, ep, "hf-tiny-moe");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("expert tensors split by expert over 2 ranks"), std::string::npos)
      << r.output;
  const train::CheckpointReport saved = train::inspect_checkpoint(a + "/checkpoint/step-00000002");
  EXPECT_TRUE(saved.ok()) << saved.describe();
  testing::fixed_batch_config("hf-tiny-moe", b, 4, 2);  // b's job.toml
  rewrite_as(a, {1, 1}, b);
  r = run_train(b, {1, 2}, 4, 2, batch, ep, "hf-tiny-moe");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from " + b + "/checkpoint/step-00000002"), std::string::npos)
      << r.output;
  expect_identical_continuation(a, b);
}

class CheckpointResumeMpi : public ::testing::TestWithParam<Layout> {};

// Same layout: 2 steps, then resume to 4, equals 4 uninterrupted steps bit for bit.
TEST_P(CheckpointResumeMpi, HalfThenResumeEqualsTheStraightRun) {
  const Layout l = GetParam();
  const std::string s = fresh("straight_" + l.name()), h = fresh("half_" + l.name());
  const std::string batch = testing::four_row_text_batch(s);
  auto r = run_train(s, l, 4, 2, batch);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_train(h, l, 4, 2, batch);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fs::remove_all(h + "/checkpoint/step-00000004");
  fs::remove_all(h + "/hf_export");
  r = run_train(h, l, 4, 2, batch);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  expect_identical_continuation(s, h);
}

INSTANTIATE_TEST_SUITE_P(Layouts, CheckpointResumeMpi,
                         ::testing::Values(Layout{2, 1}, Layout{1, 2}, Layout{2, 2}),
                         [](const auto& info) { return info.param.name(); });

struct ExportCase {
  Layout layout;
  const char* dtype;  // checkpoint.export_dtype
};

void PrintTo(const ExportCase& c, std::ostream* os) {
  *os << c.layout.name() << "_" << c.dtype;
}

class CheckpointExportMpi : public ::testing::TestWithParam<ExportCase> {};

// The job's end-of-training export, streamed to rank 0 from the ranks that own each range,
// equals byte for byte (config.json and every weights file) what save_hf_checkpoint writes for
// the whole model: the export the job wrote before, from the model gathered onto rank 0. The
// whole model is the final checkpoint's, loaded in-process (bit-exact, see the tests above).
TEST_P(CheckpointExportMpi, StreamedExportEqualsTheGatheredOne) {
  const ExportCase& c = GetParam();
  const std::string dump = fresh(std::string("export_") + c.layout.name() + "_" + c.dtype);
  const std::string batch = testing::four_row_text_batch(dump);
  auto r =
      run_train(dump, c.layout, 2, 2, batch, std::string(" --checkpoint.export_dtype ") + c.dtype);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("streamed from " + std::to_string(c.layout.world()) + " ranks"),
            std::string::npos)
      << r.output;
  auto config = train::JobConfig::load(dump + "/job.toml");
  auto model = train::build_model(config);
  train::load_checkpoint(dump + "/checkpoint/step-00000002", model->store(),
                         static_cast<const train::OptimizerTarget*>(nullptr));
  const std::string want = dump + "/gathered";
  model::save_hf_checkpoint(want, model->config(), model->store(),
                            std::string(c.dtype) == "bfloat16" ? DType::kBF16 : DType::kF32);
  for (const auto& f : fs::directory_iterator(want)) {
    const std::string name = f.path().filename().string();
    EXPECT_TRUE(io::read_file(f.path().string()) == io::read_file(dump + "/hf_export/" + name))
        << name << " differs";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, CheckpointExportMpi,
    ::testing::Values(ExportCase{{1, 2}, "float32"}, ExportCase{{1, 2}, "bfloat16"},
                      ExportCase{{2, 2}, "float32"}, ExportCase{{2, 2}, "bfloat16"},
                      ExportCase{{1, 4}, "bfloat16"}),
    [](const auto& info) { return info.param.layout.name() + "_" + info.param.dtype; });

struct LoraExportCase {
  Layout layout;
  const char* precision;  // training.mixed_precision_param
  const char* dtype;      // checkpoint.export_dtype
};

void PrintTo(const LoraExportCase& c, std::ostream* os) {
  *os << c.layout.name() << "_" << c.precision << "_" << c.dtype;
}

class LoraExportMpi : public ::testing::TestWithParam<LoraExportCase> {};

// A LoRA job's merged export is streamed too (each rank merges the gathered adapters into the
// base ranges it sends; no rank gathers the base model): it equals byte for byte (config.json
// and every weights file) what save_hf_checkpoint writes for the single process's merged_store()
// of the final checkpoint, which is what the job wrote before from the gathered model. The
// adapter file equals the single process's too. ZeRO-3, replicated and hybrid layouts on 2 and
// 4 ranks, float32 and bf16 mixed-precision training (adapters travel in float there).
TEST_P(LoraExportMpi, StreamedMergedExportEqualsTheSingleProcessMerge) {
  const LoraExportCase& c = GetParam();
  const std::string dump =
      fresh(std::string("lora_export_") + c.layout.name() + "_" + c.precision + "_" + c.dtype);
  const std::string batch = testing::four_row_text_batch(dump);
  auto r = run_train(dump, c.layout, 2, 2, batch,
                     std::string(" --lora.rank 4 --lora.alpha 8 --lora.merge_on_export true "
                                 "--lora.target_modules q_proj,v_proj,o_proj,down_proj "
                                 "--training.mixed_precision_param ") +
                         c.precision + " --checkpoint.export_dtype " + c.dtype);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("exported Hugging Face checkpoint (LoRA merged)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("streamed from " + std::to_string(c.layout.world()) + " ranks"),
            std::string::npos)
      << r.output;
  auto config = train::JobConfig::load(dump + "/job.toml");
  auto model = train::build_model(config);
  model::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8;
  lora.target_modules = {"q_proj", "v_proj", "o_proj", "down_proj"};
  model->enable_lora(lora);
  train::load_checkpoint(dump + "/checkpoint/step-00000002", model->store(),
                         static_cast<const train::OptimizerTarget*>(nullptr));
  const std::string want = dump + "/single";
  model::save_hf_checkpoint(want, model->config(), model->merged_store(),
                            std::string(c.dtype) == "bfloat16" ? DType::kBF16 : DType::kF32);
  int files = 0;
  for (const auto& f : fs::directory_iterator(want)) {
    const std::string name = f.path().filename().string();
    EXPECT_TRUE(io::read_file(f.path().string()) == io::read_file(dump + "/hf_export/" + name))
        << name << " differs";
    ++files;
  }
  EXPECT_EQ(files, 2);  // config.json, model.safetensors
  // No adapter tensor in the export, and the adapters were trained (the merge changed weights).
  const auto exported = io::load_safetensors(dump + "/hf_export/model.safetensors");
  for (const auto& [name, t] : exported) EXPECT_FALSE(model::is_lora_param(name)) << name;
  const std::string q = model::lora_base_name(0, model::LoraTarget::kQ);
  model::save_hf_checkpoint(dump + "/unmerged", model->config(), model->store(), DType::kF32);
  const auto unmerged = io::load_safetensors(dump + "/unmerged/model.safetensors");
  EXPECT_NE(std::memcmp(exported.at(q).raw(), unmerged.at(q).raw(), 64), 0)
      << "the merge left " << q << " unchanged";
  model::save_lora_adapter(dump + "/adapter_single", lora, model->store(), "");
  EXPECT_TRUE(io::read_file(dump + "/adapter_single/adapter_model.safetensors") ==
              io::read_file(dump + "/lora_adapter/adapter_model.safetensors"));
}

INSTANTIATE_TEST_SUITE_P(Layouts, LoraExportMpi,
                         ::testing::Values(LoraExportCase{{1, 2}, "float32", "float32"},
                                           LoraExportCase{{1, 2}, "bfloat16", "bfloat16"},
                                           LoraExportCase{{2, 1}, "float32", "float32"},
                                           LoraExportCase{{1, 4}, "bfloat16", "float32"},
                                           LoraExportCase{{4, 1}, "bfloat16", "bfloat16"},
                                           LoraExportCase{{2, 2}, "float32", "bfloat16"}),
                         [](const auto& info) {
                           return info.param.layout.name() + "_" + info.param.precision + "_" +
                                  info.param.dtype;
                         });

// A full disk on rank 0 in the middle of the streamed export (its first weights file): both
// ranks end with an error (no hang), rank 0 naming the disk, the final checkpoint stays listed
// and no export folder or temporary file is left.
TEST(CheckpointExportMpi, FullDiskOnRankZeroDuringTheExportFailsEveryRank) {
  const std::string clean = fresh("export_enospc_clean"), dump = fresh("export_enospc");
  const std::string batch = testing::four_row_text_batch(clean);
  auto r = run_train(clean, {1, 2}, 2, 2, batch);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Rank 0's bytes through the atomic writer before the export's weights: its checkpoint files,
  // the index, config and state, then the export's config.json; the fault hits 100 bytes later.
  const std::string ckpt = clean + "/checkpoint/step-00000002";
  int64_t before = static_cast<int64_t>(fs::file_size(clean + "/hf_export/config.json"));
  for (const char* f : {"model-rank00000.safetensors", "optim-rank00000.safetensors",
                        "data-rank00000.json", "index.json", "config.json", "state.json"})
    before += static_cast<int64_t>(fs::file_size(ckpt + "/" + f));
  testing::fixed_batch_config("hf-tiny-text", dump, 2, 2);
  const std::string cmd = std::string(QWEN3VL_BINARY) + " train --config " + dump + "/job.toml" +
                          layout_flags({1, 2}) + " --training.dataset_path " + batch;
  r = testing::run_shell(testing::mpirun(1) + "env QWEN3VL_FAULT=enospc@bytes:" +
                         std::to_string(before + 100) + " " + cmd + " : -np 1 " + cmd);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("the Hugging Face export to " + dump + "/hf_export failed on rank 0"),
            std::string::npos)
      << r.output;
  EXPECT_TRUE(train::latest_checkpoint(dump + "/checkpoint").has_value());
  EXPECT_FALSE(fs::exists(dump + "/hf_export"));
  for (const auto& e : fs::directory_iterator(dump))
    EXPECT_EQ(e.path().filename().string().rfind(".tmp", 0), std::string::npos)
        << e.path() << " left behind";
}

// `qwen3vl checkpoint inspect|export` on a job's checkpoint: inspect passes every CRC and exits
// 1 naming a missing file; export writes the same model.safetensors, byte for byte, as the job's
// own (streamed) export in the same dtype.
TEST(CheckpointToolsMpi, InspectAndExportAJobsCheckpoint) {
  const std::string dump = fresh("cli_tools");
  const std::string batch = testing::four_row_text_batch(dump);
  auto r = run_train(dump, {1, 2}, 2, 2, batch, " --checkpoint.export_dtype bfloat16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string ckpt = dump + "/checkpoint/step-00000002";
  const std::string bin = QWEN3VL_BINARY;
  r = testing::run_shell(bin + " checkpoint inspect " + ckpt);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("all CRC-32C checks passed"), std::string::npos) << r.output;
  r = testing::run_shell(bin + " checkpoint export " + ckpt + " --out " + dump +
                         "/cli_export --dtype bfloat16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(io::read_file(dump + "/cli_export/model.safetensors") ==
              io::read_file(dump + "/hf_export/model.safetensors"));
  fs::remove(ckpt + "/optim-rank00001.safetensors");
  r = testing::run_shell(bin + " checkpoint inspect " + ckpt);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("MISSING"), std::string::npos) << r.output;
}

// Rank 1's own environment (mpirun's MPMD form: one app context per rank).
std::string two_ranks_with_env_on_rank1(const std::string& cmd, const std::string& env) {
  return testing::mpirun(1) + cmd + " : -np 1 env " + env + " " + cmd;
}

int64_t rank_bytes(const std::string& ckpt, int rank) {
  int64_t n = 0;
  for (const char* kind : {"model", "optim"})
    n += static_cast<int64_t>(
        fs::file_size(ckpt + "/" + train::rank_file(kind, rank, "safetensors")));
  return n +
         static_cast<int64_t>(fs::file_size(ckpt + "/" + train::rank_file("data", rank, "json")));
}

TEST(CheckpointFaultsMpi, KillNineOfOneRankMidSaveKeepsThePreviousCheckpoint) {
  const Layout l{1, 2};
  const std::string straight = fresh("kill_straight"), killed = fresh("kill_resumed");
  const std::string batch = testing::four_row_text_batch(straight);
  auto r = run_train(straight, l, 4, 2, batch);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Rank 1 pauses halfway through its parameters file of the second save (step 4): in the
  // first save it wrote exactly its step-2 files.
  const std::string step2 = straight + "/checkpoint/step-00000002";
  const int64_t pause_at =
      rank_bytes(step2, 1) +
      static_cast<int64_t>(fs::file_size(step2 + "/model-rank00001.safetensors")) / 2;
  const std::string cfg = testing::fixed_batch_config("hf-tiny-text", killed, 4, 2);
  const std::string marker = killed + "/paused";
  const std::string cmd = std::string(QWEN3VL_BINARY) + " train --config " + cfg + layout_flags(l) +
                          " --training.dataset_path " + batch;
  const std::string job =
      two_ranks_with_env_on_rank1(cmd, "QWEN3VL_FAULT=pause@bytes:" + std::to_string(pause_at) +
                                           " QWEN3VL_FAULT_MARKER=" + marker);
  std::thread killer([&] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!fs::exists(marker) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the pid is written
    std::ifstream in(marker);
    int pid = 0;
    if (in >> pid && pid > 0) kill(pid, SIGKILL);
  });
  r = testing::run_shell(job);
  killer.join();
  ASSERT_TRUE(fs::exists(marker)) << "rank 1 never reached the fault point\n" << r.output;
  EXPECT_NE(r.exit_code, 0) << r.output;
  const std::string folder = killed + "/checkpoint";
  EXPECT_FALSE(fs::exists(folder + "/step-00000004"));
  EXPECT_EQ(train::latest_checkpoint(folder).value_or(""), folder + "/step-00000002");
  // Resume on both ranks: continues from step 2 and ends where the straight run did.
  r = run_train(killed, l, 4, 2, batch);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from " + folder + "/step-00000002"), std::string::npos)
      << r.output;
  for (const auto& e : fs::directory_iterator(folder))
    EXPECT_NE(e.path().filename().string().rfind(".tmp", 0), 0u) << e.path() << " left behind";
  expect_identical_continuation(straight, killed);
}

TEST(CheckpointFaultsMpi, FullDiskOnOneRankFailsTheSaveOnEveryRank) {
  const std::string dump = fresh("disk_full_rank1");
  const std::string batch = testing::four_row_text_batch(dump);
  const std::string cfg = testing::fixed_batch_config("hf-tiny-text", dump, 3, 1,
                                                      "[comm]\ntrain_timeout_seconds = 600\n");
  const std::string cmd = std::string(QWEN3VL_BINARY) + " train --config " + cfg +
                          layout_flags({1, 2}) + " --training.dataset_path " + batch;
  const auto start = std::chrono::steady_clock::now();
  const auto r =
      testing::run_shell(two_ranks_with_env_on_rank1(cmd, "QWEN3VL_FAULT=enospc@bytes:1000"));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("writing failed on rank 1: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("writing failed on rank 1 (see its error)"), std::string::npos)
      << r.output;  // rank 0's message
  EXPECT_LT(seconds, 300.0) << r.output;
  EXPECT_FALSE(train::latest_checkpoint(dump + "/checkpoint").has_value());
  for (const auto& e : fs::directory_iterator(dump + "/checkpoint"))
    ADD_FAILURE() << e.path() << " left behind";
}

TEST(CheckpointFaultsMpi, MissingShardFileIsAnErrorNamingIt) {
  const std::string dump = fresh("missing_shard");
  const std::string batch = testing::four_row_text_batch(dump);
  auto r = run_train(dump, {1, 2}, 2, 2, batch);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  fs::remove(dump + "/checkpoint/step-00000002/model-rank00001.safetensors");
  // Only rank 1 reads that file: rank 0 must not wait for it at a collective until the timeout.
  const auto start = std::chrono::steady_clock::now();
  r = run_train(dump, {1, 2}, 4, 2, batch);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 120)
      << r.output;
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("failed on rank 1 (see its error)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("missing shard file model-rank00001.safetensors"), std::string::npos)
      << r.output;
}

// Real data (the bundled cc12m shard, a small model with the real vocabulary): every rank's
// loader position is saved (data-rankR.json) and restored by seeking.
std::string small_model_dir() {
  static const std::string dir = [] {
    const std::string d = testing::fresh_dir("ckptmpi", "model");
    fs::create_directories(d);
    std::ofstream(d + "/config.json") << testing::small_real_vocab_config().to_json_text();
    return d;
  }();
  return dir;
}

testing::CommandResult train_cc12m(const std::string& dump, int ranks, int steps,
                                   const std::string& extra = "") {
  const std::string root = QWEN3VL_SOURCE_DIR;
  const std::string cmd =
      std::string(QWEN3VL_BINARY) + " train --config " + root + "/configs/debug_model.toml" +
      " --job.dump_folder " + dump + " --model.hf_config " + small_model_dir() +
      " --model.tokenizer_path " + testing::kTokenizer + " --training.dataset_path '" + root +
      "/data/cc12m-train-{0000..0000}.tar' --training.steps " + std::to_string(steps) +
      " --training.seq_len 256 --training.local_batch_size 2 --checkpoint.enable" +
      " --checkpoint.interval 2 --checkpoint.keep_latest_k 0 --metrics.enable_tensorboard false" +
      " --parallelism.data_parallel_replicate_degree " + std::to_string(ranks) +
      " --parallelism.data_parallel_shard_degree 1" + extra;
  return testing::run_shell((ranks > 1 ? testing::mpirun(ranks) : "") + cmd + " 2>&1");
}

TEST(CheckpointDataMpi, EveryRankResumesItsOwnStreamAndAnotherRankCountRestartsTheEpoch) {
  const std::string straight = fresh("data_straight"), resumed = fresh("data_resumed");
  auto r = train_cc12m(straight, 2, 4);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = train_cc12m(resumed, 2, 2);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string step2 = resumed + "/checkpoint/step-00000002";
  for (int rank = 0; rank < 2; ++rank) {
    const auto state =
        nlohmann::json::parse(io::read_file(step2 + "/" + train::rank_file("data", rank, "json")));
    EXPECT_EQ(state.at("rank"), rank);
    EXPECT_EQ(state.at("batches"), 2);
    EXPECT_TRUE(state.contains("pipeline")) << state.dump();  // a seekable position
  }
  // Copies of the step-2 state for the rank-count changes below.
  const std::string one_a = fresh("data_one_a"), one_b = fresh("data_one_b"),
                    next = fresh("data_next_epoch");
  for (const auto& d : {one_a, one_b, next}) {
    fs::create_directories(d);
    fs::copy(resumed + "/checkpoint", d + "/checkpoint", fs::copy_options::recursive);
  }
  r = train_cc12m(resumed, 2, 4);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ms = read_metrics(straight), mr = read_metrics(resumed);
  ASSERT_EQ(ms.size(), 4u);
  ASSERT_EQ(mr.size(), 4u);
  for (size_t i = 2; i < 4; ++i) {
    EXPECT_EQ(ms[i]["tokens"], mr[i]["tokens"]) << i;
    EXPECT_EQ(ms[i]["loss"].get<double>(), mr[i]["loss"].get<double>()) << i;
  }
  // 2 -> 1 rank: the documented rule, deterministic.
  r = train_cc12m(one_a, 1, 4);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("checkpoint saved by 2 ranks, resuming on 1: data order follows "
                          "checkpoint.data_reshard = restart_epoch"),
            std::string::npos)
      << r.output;
  r = train_cc12m(one_b, 1, 4);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = train_cc12m(next, 1, 4, " --checkpoint.data_reshard next_epoch");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto a = read_metrics(one_a), b = read_metrics(one_b), n = read_metrics(next);
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  ASSERT_EQ(n.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(a[i]["tokens"], b[i]["tokens"]) << i;
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << i;
  }
  // Another epoch's order: other batches.
  EXPECT_NE(a[0]["loss"].get<double>(), n[0]["loss"].get<double>());
}

class CheckpointAsyncMpi : public ::testing::TestWithParam<Layout> {};

// checkpoint.async_mode = "async": the same checkpoints (every step), the same training, and a
// resume from an asynchronous checkpoint continues exactly.
TEST_P(CheckpointAsyncMpi, AsyncSavesEqualSynchronousOnes) {
  const Layout l = GetParam();
  const std::string sync = fresh("sync_" + l.name()), async = fresh("async_" + l.name());
  const std::string batch = testing::four_row_text_batch(sync);
  auto r = run_train(sync, l, 4, 1, batch);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_train(async, l, 4, 1, batch, " --checkpoint.async_mode async");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("asynchronous: training paused"), std::string::npos) << r.output;
  for (int step = 1; step <= 4; ++step) {
    const std::string name = "/checkpoint/step-0000000" + std::to_string(step);
    const auto report = train::inspect_checkpoint(async + name);
    EXPECT_TRUE(report.ok()) << report.describe();
    train::export_checkpoint(sync + name, sync + "/exported" + std::to_string(step), DType::kF32);
    train::export_checkpoint(async + name, async + "/exported" + std::to_string(step), DType::kF32);
    EXPECT_EQ(testing::max_weight_diff(sync + "/exported" + std::to_string(step),
                                       async + "/exported" + std::to_string(step)),
              0.0)
        << step;
  }
  expect_identical_continuation(sync, async);
  // Resume from the asynchronous step-2 checkpoint.
  fs::remove_all(async + "/checkpoint/step-00000003");
  fs::remove_all(async + "/checkpoint/step-00000004");
  fs::remove_all(async + "/hf_export");
  r = run_train(async, l, 4, 1, batch, " --checkpoint.async_mode async");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_identical_continuation(sync, async);
}

INSTANTIATE_TEST_SUITE_P(Layouts, CheckpointAsyncMpi, ::testing::Values(Layout{1, 1}, Layout{1, 2}),
                         [](const auto& info) { return info.param.name(); });

TEST(CheckpointAsyncMpi, FailedBackgroundSaveEndsTheJobWithoutAListedCheckpoint) {
  const std::string dump = fresh("async_enospc");
  const std::string batch = testing::four_row_text_batch(dump);
  const std::string cfg = testing::fixed_batch_config("hf-tiny-text", dump, 3, 1);
  const auto r = testing::run_shell(
      "QWEN3VL_FAULT=enospc@bytes:1000 " + std::string(QWEN3VL_BINARY) + " train --config " + cfg +
      " --checkpoint.async_mode async --training.dataset_path " + batch);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
  EXPECT_FALSE(train::latest_checkpoint(dump + "/checkpoint").has_value());
  for (const auto& e : fs::directory_iterator(dump + "/checkpoint"))
    ADD_FAILURE() << e.path() << " left behind";
}

}  // namespace
}  // namespace qv
