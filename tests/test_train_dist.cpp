// Data-parallel modes through the binary under mpirun, each against one process with the
// combined batch: sharded (FSDP / ZeRO-3) with activation checkpointing, with images on one rank
// only, with a frozen vision tower, in bf16 (bf16 gathers) on 2 and 4 shards; hybrid replicate x
// shard on 4 ranks; replicated with and without the overlapped all-reduce; LoRA adapters sharded
// (also in bf16: adapters are read in float, so they travel in float) and replicated; the
// mixture-of-experts model sharded, and with its experts split over the ranks (expert
// parallelism: 2 of 2 ranks, also with activation checkpointing and in bf16; 4 of 4; 2 inside
// each shard group of a 2 x 2 hybrid). Also: a rank that dies or stalls ends the whole job.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>

#include "dist/parallel_dims.h"
#include "model/config.h"
#include "model/inputs_io.h"
#include "model/qwen3vl.h"
#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
using testing::fixed_batch_config;
using testing::read_metrics;

std::string fresh(const std::string& name) {
  return testing::fresh_dir("dist", name);
}

std::string fixture(const std::string& name) {
  return std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/" + name;
}

std::string train_cmd(const std::string& config) {
  return std::string(QWEN3VL_BINARY) + " train --config " + config;
}

// Two rows for the image model: the fixture's image row, and a text-only row (the text
// fixture's first row padded to the same length), so under 2 ranks only rank 0 has an image.
std::string mixed_batch_file(const std::string& dir) {
  const auto img = model::load_inputs(fixture("hf-tiny-image") + "/inputs.safetensors");
  const auto txt = model::load_inputs(fixture("hf-tiny-text") + "/inputs.safetensors");
  model::ModelInputs m = img;
  const int64_t S = img.seq;
  m.batch = 2;
  if (m.attention_mask.empty()) m.attention_mask.assign(S, 1);
  for (int64_t s = 0; s < S; ++s) {
    const bool in_row = s < txt.seq;
    m.input_ids.push_back(in_row ? txt.input_ids[s] : 0);
    m.labels.push_back(in_row ? txt.labels[s] : -100);
    m.attention_mask.push_back(in_row && (txt.attention_mask.empty() || txt.attention_mask[s]));
  }
  fs::create_directories(dir);
  const std::string path = dir + "/mixed_inputs.safetensors";
  io::save_safetensors(path, model::inputs_to_tensors(m));
  return path;
}

// How close the sharded run must come to the single process. float32: losses and gradient norms
// agree to 2e-6 / 2e-5 at every step; the weights after AdamW to 2e-5 for the text model and
// 5e-5 for the image model, whose vision gradients are summed in a different order when they come
// from one rank's reduce-scatter (AdamW's normalisation magnifies float32 round-off on weights
// with tiny gradients; the same model's 5-step run against Hugging Face differs by up to 1.1e-4,
// tests/test_train_fixture.cpp).
struct Agreement {
  double loss = 2e-6, grad_norm = 2e-5;
  double later_loss = 2e-6, later_grad_norm = 2e-5;  // steps after the first update
  double weights = 5e-5;
};

// bf16 matmuls: the first step (same float32 masters, so the same bf16 copies) must agree as
// tightly as float32. After the first update the float32 masters differ in their last bits (the
// gradients are summed in another order), and where such a master sits on a rounding boundary
// its bf16 copy lands one bf16 ulp (2^-8 relative) away, which moves everything downstream.
// Measured on the image fixture, step 3, one rank against two: loss 3.3e-5, gradient norm 1.0e-3,
// weights 1.1e-4 (the -O1 sanitizer build; the release build happens to agree to 1e-15). The
// bounds keep 2-3x margin and stay well under what a stale or missing bf16 copy does: one
// step moves the loss by 0.5 and each weight by up to lr = 1e-3; bf16 against float32 training
// of the same run differs by 5.4e-4 (loss), 3.0e-3 (gradient norm) and 2.1e-3 (weights).
Agreement bf16_agreement() {
  Agreement a;
  a.later_loss = 1e-4;
  a.later_grad_norm = 2.5e-3;
  a.weights = 3e-4;
  return a;
}

void expect_same_training(const std::string& single, const std::string& multi,
                          const Agreement& tol) {
  const auto m1 = read_metrics(single), m2 = read_metrics(multi);
  ASSERT_EQ(m1.size(), m2.size());
  ASSERT_GT(m1.size(), 0u);
  for (size_t i = 0; i < m1.size(); ++i) {
    const bool first = i == 0;
    EXPECT_NEAR(m1[i]["loss"].get<double>(), m2[i]["loss"].get<double>(),
                first ? tol.loss : tol.later_loss)
        << i;
    EXPECT_NEAR(m1[i]["grad_norm"].get<double>(), m2[i]["grad_norm"].get<double>(),
                first ? tol.grad_norm : tol.later_grad_norm)
        << i;
    EXPECT_EQ(m1[i]["tokens"], m2[i]["tokens"]);
  }
  EXPECT_LT(testing::max_weight_diff(single + "/hf_export", multi + "/hf_export"), tol.weights);
}

struct DistCase {
  const char* name;
  const char* fixture;
  int ranks;
  const char* flags;  // for both runs ({} = the dataset path goes here)
  const char* multi_flags;
  bool own_batch;  // mixed (image fixture) or four-row (text fixture's rows) batch file
};

void PrintTo(const DistCase& c, std::ostream* os) {
  *os << c.name;
}

// Plain sharding (shard degree = ranks, no replicas, no expert split, no adapters): each step's
// forward gathers the union of the combined batch's embedding rows (dist gather_rows), every
// rank packing its chunk's elements of them. The bytes a rank receives for them, by the
// layout's own arithmetic; -1 for other layouts.
int64_t expected_row_bytes(const DistCase& c, const std::string& batch_file) {
  const std::string multi = c.multi_flags, flags = c.flags;
  if (multi.find("replicate_degree 1 ") == std::string::npos ||
      multi.find("expert_parallel") != std::string::npos || flags.find("lora") != std::string::npos)
    return -1;
  const model::ModelConfig config =
      model::ModelConfig::from_json_file(fixture(c.fixture) + "/config.json");
  const model::Qwen3VLModel m(config, dist::unit_alignment(dist::ParallelDims{1, c.ranks}));
  const model::ParamRef table = m.store().find("model.language_model.embed_tokens.weight")->ref;
  const int64_t H = config.text.hidden_size;
  const model::ModelInputs in = model::load_inputs(batch_file);
  const std::set<int64_t> ids(in.input_ids.begin(), in.input_ids.end());
  for (const auto& u : m.store().units()) {
    if (table.offset < u.begin || table.offset >= u.end) continue;
    const int64_t chunk = (u.end - u.begin) / c.ranks;
    int64_t most = 0;
    for (int k = 0; k < c.ranks; ++k) {
      const int64_t lo = u.begin + chunk * k, hi = lo + chunk;
      int64_t n = 0;
      for (int64_t v : ids)
        n += std::max<int64_t>(
            0, std::min(hi, table.offset + (v + 1) * H) - std::max(lo, table.offset + v * H));
      most = std::max(most, n);
    }
    return c.ranks * most * static_cast<int64_t>(sizeof(float));
  }
  return -1;
}

class TrainDist : public ::testing::TestWithParam<DistCase> {};

TEST_P(TrainDist, MatchesOneRankWithTheCombinedBatch) {
  const DistCase& c = GetParam();
  const std::string one = fresh(std::string(c.name) + "_1"),
                    many = fresh(std::string(c.name) + "_n");
  std::string flags = c.flags;
  std::string batch_file = fixture(c.fixture) + "/inputs.safetensors";
  if (c.own_batch) {
    batch_file = c.ranks == 4 ? testing::four_row_text_batch(one) : mixed_batch_file(one);
    flags += " --training.dataset_path " + batch_file;
  }
  auto r = testing::run_shell(train_cmd(fixed_batch_config(c.fixture, one, 3, 10)) + flags);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = testing::run_shell(testing::mpirun(c.ranks) +
                         train_cmd(fixed_batch_config(c.fixture, many, 3, 10)) + flags + " " +
                         c.multi_flags);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  if (std::string(c.multi_flags).find("expert_parallel_degree") != std::string::npos) {
    EXPECT_NE(r.output.find("expert parallel: degree"), std::string::npos) << r.output;
  }
  Agreement tol =
      std::string(c.flags).find("bfloat16") != std::string::npos ? bf16_agreement() : Agreement{};
  if (std::string(c.fixture) == "hf-tiny-text") tol.weights = 2e-5;
  expect_same_training(one, many, tol);
  if (const int64_t rows = expected_row_bytes(c, batch_file); rows >= 0) {
    const auto metrics = read_metrics(many);
    for (const auto& m : metrics) {
      EXPECT_EQ(m.value("gathered_row_bytes", int64_t{-1}), rows) << m.dump();
      std::printf("[%s] step %lld: gathered %lld bytes, of which embedding rows %lld\n", c.name,
                  static_cast<long long>(m["step"].get<int64_t>()),
                  static_cast<long long>(m.value("gathered_bytes", int64_t{-1})),
                  static_cast<long long>(rows));
    }
  }
}

const char* kShard2 =
    "--parallelism.data_parallel_replicate_degree 1 --parallelism.data_parallel_shard_degree 2";

const char* kShard2Ep2 =
    "--parallelism.data_parallel_replicate_degree 1 --parallelism.data_parallel_shard_degree 2 "
    "--parallelism.expert_parallel_degree 2";

INSTANTIATE_TEST_SUITE_P(
    Modes, TrainDist,
    ::testing::Values(DistCase{"zero3_full_ac", "hf-tiny-text", 2,
                               " --activation_checkpoint.mode full", kShard2, false},
                      DistCase{"zero3_selective_ac", "hf-tiny-text", 2,
                               " --activation_checkpoint.mode selective", kShard2, false},
                      DistCase{"zero3_image_on_one_rank", "hf-tiny-image", 2, "", kShard2, true},
                      DistCase{"zero3_bf16", "hf-tiny-image", 2,
                               " --training.mixed_precision_param bfloat16", kShard2, true},
                      // bf16 gathers on 4 shards (the text fixture's rows twice).
                      DistCase{"zero3_bf16_4", "hf-tiny-text", 4,
                               " --training.mixed_precision_param bfloat16",
                               "--parallelism.data_parallel_replicate_degree 1 "
                               "--parallelism.data_parallel_shard_degree 4",
                               true},
                      // MoE: expert weights sharded as part of their layer's unit.
                      DistCase{"zero3_moe", "hf-tiny-moe", 2, "", kShard2, true},
                      // Expert parallelism (EP) inside the shard group; the single process is
                      // the same as for zero3_moe. Same bounds: EP's expert products see the
                      // same rows in the same order as one process, the rest is ZeRO-3's.
                      DistCase{"ep2_zero3_moe", "hf-tiny-moe", 2, "", kShard2Ep2, true},
                      // bf16: the own experts' slice gathered as bf16.
                      DistCase{"ep2_zero3_bf16_moe", "hf-tiny-moe", 2,
                               " --training.mixed_precision_param bfloat16", kShard2Ep2, true},
                      DistCase{"ep2_zero3_full_ac_moe", "hf-tiny-moe", 2,
                               " --activation_checkpoint.mode full", kShard2Ep2, true},
                      DistCase{"ep4_zero3_moe", "hf-tiny-moe", 4, "",
                               "--parallelism.data_parallel_replicate_degree 1 "
                               "--parallelism.data_parallel_shard_degree 4 "
                               "--parallelism.expert_parallel_degree 4",
                               true},
                      DistCase{"ep2_hybrid_2x2_moe", "hf-tiny-moe", 4, "",
                               "--parallelism.data_parallel_replicate_degree 2 "
                               "--parallelism.data_parallel_shard_degree 2 "
                               "--parallelism.expert_parallel_degree 2",
                               true},
                      // LoRA: frozen base, adapters as their own units; the merged export
                      // compares the adapted weights.
                      DistCase{"zero3_lora", "hf-tiny-text", 2,
                               " --lora.rank 4 --lora.alpha 8 --lora.merge_on_export true "
                               "--lora.target_modules q_proj,v_proj,o_proj,down_proj",
                               kShard2, false},
                      DistCase{"zero3_lora_bf16", "hf-tiny-text", 2,
                               " --lora.rank 4 --lora.alpha 8 --lora.merge_on_export true "
                               "--lora.target_modules q_proj,v_proj,o_proj,down_proj "
                               "--training.mixed_precision_param bfloat16",
                               kShard2, false},
                      DistCase{"replicate_lora", "hf-tiny-text", 2,
                               " --lora.rank 4 --lora.alpha 8 --lora.merge_on_export true "
                               "--lora.target_modules q_proj,k_proj,gate_proj,up_proj",
                               "--parallelism.data_parallel_replicate_degree 2 "
                               "--parallelism.data_parallel_shard_degree 1",
                               false},
                      DistCase{"zero3_frozen_vision", "hf-tiny-image", 2, " --model.freeze visual",
                               kShard2, true},
                      DistCase{"hybrid_2x2", "hf-tiny-text", 4, "",
                               "--parallelism.data_parallel_replicate_degree 2 "
                               "--parallelism.data_parallel_shard_degree 2",
                               true},
                      DistCase{"replicate_blocking", "hf-tiny-text", 2, "",
                               "--parallelism.data_parallel_replicate_degree 2 "
                               "--parallelism.data_parallel_shard_degree 1 "
                               "--parallelism.overlap_grad_reduce false",
                               false}),
    [](const auto& info) { return std::string(info.param.name); });

// An expert-parallel degree that does not fit is a clear error before training starts.
TEST(TrainDistConfig, ExpertParallelDegreeThatDoesNotFitIsNamed) {
  const std::string dir = fresh("ep_bad_degree");
  const std::string cmd = train_cmd(fixed_batch_config("hf-tiny-moe", dir, 1, 10));
  auto r = testing::run_shell(cmd + " --parallelism.expert_parallel_degree 3");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("expert_parallel_degree (3) must divide the model's num_experts (4)"),
            std::string::npos)
      << r.output;
  r = testing::run_shell(cmd + " --parallelism.expert_parallel_degree 2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("must divide data_parallel_shard_degree (1 of 1 ranks)"),
            std::string::npos)
      << r.output;
}

// A rank that exits or stalls at step 3 ends the job with a non-zero code and a message; the
// time bound only guards against a hang.
class TrainDistFault : public ::testing::TestWithParam<const char*> {};

TEST_P(TrainDistFault, JobEndsWithAnErrorInsteadOfHanging) {
  const std::string kind = GetParam();
  const std::string dir = fresh("fault_" + kind);
  const std::string cfg =
      fixed_batch_config("hf-tiny-text", dir, 6, 10, "[comm]\ntrain_timeout_seconds = 5\n");
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = testing::run_shell(testing::mpirun(2) + "-x QWEN3VL_FAULT=" + kind +
                                    "@step:3,rank:1 " + train_cmd(cfg));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_LT(seconds, 120) << r.output;
  EXPECT_NE(r.output.find("QWEN3VL_FAULT: rank 1"), std::string::npos) << r.output;
  if (kind == "stall") {
    EXPECT_NE(r.output.find("did not complete within 5 s"), std::string::npos) << r.output;
  }
  EXPECT_LE(read_metrics(dir).size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Kinds, TrainDistFault, ::testing::Values("exit", "stall"));

}  // namespace
}  // namespace qv
