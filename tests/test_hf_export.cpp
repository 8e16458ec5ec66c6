// The Hugging Face export of a training run is complete: every file transformers'
// from_pretrained readers look for is there, holds only keys those readers take, and says what
// training used (dtype, pixel limits, tokenizer, special tokens, chat template); our own loaders
// read it back. Also: `generate` prints text on such an export when asked for a minimum length.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "cli_test_utils.h"
#include "data/image/image_processor_config.h"
#include "data/tokenizer/tokenizer.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "loader_test_utils.h"
#include "model/qwen3vl.h"
#include "train/hf_export.h"
#include "train/job_config.h"
#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The keys transformers (umsanmaru/transformers-qwen3-vl-cache at a59124e2) reads from each file.
// config.json, top level: Qwen3VLConfig.__init__ (models/qwen3_vl/configuration_qwen3_vl.py,
// class Qwen3VLConfig) and PretrainedConfig.__init__ (configuration_utils.py: architectures,
// dtype, the legacy torch_dtype, model_type via AutoConfig, transformers_version).
const std::set<std::string> kConfigKeys = {
    "architectures",         "model_type",           "dtype",
    "torch_dtype",           "transformers_version", "text_config",
    "vision_config",         "image_token_id",       "video_token_id",
    "vision_start_token_id", "vision_end_token_id",  "tie_word_embeddings"};
// text_config: Qwen3VLTextConfig.__init__ (same file, class Qwen3VLTextConfig).
const std::set<std::string> kTextConfigKeys = {"model_type",          "vocab_size",
                                               "hidden_size",         "intermediate_size",
                                               "num_hidden_layers",   "num_attention_heads",
                                               "num_key_value_heads", "head_dim",
                                               "hidden_act",          "max_position_embeddings",
                                               "initializer_range",   "rms_norm_eps",
                                               "use_cache",           "tie_word_embeddings",
                                               "rope_theta",          "rope_scaling",
                                               "attention_bias",      "attention_dropout"};
// vision_config: Qwen3VLVisionConfig.__init__ (same file, class Qwen3VLVisionConfig).
const std::set<std::string> kVisionConfigKeys = {"model_type",
                                                 "depth",
                                                 "hidden_size",
                                                 "hidden_act",
                                                 "intermediate_size",
                                                 "num_heads",
                                                 "in_channels",
                                                 "patch_size",
                                                 "spatial_merge_size",
                                                 "temporal_patch_size",
                                                 "out_hidden_size",
                                                 "num_position_embeddings",
                                                 "deepstack_visual_indexes",
                                                 "initializer_range"};
// generation_config.json: GenerationConfig.__init__ (generation/configuration_utils.py, the
// kwargs.pop calls: bos/eos/pad_token_id, do_sample, temperature, top_k, top_p, ...).
const std::set<std::string> kGenerationKeys = {"bos_token_id",
                                               "eos_token_id",
                                               "pad_token_id",
                                               "do_sample",
                                               "temperature",
                                               "top_k",
                                               "top_p",
                                               "max_new_tokens",
                                               "min_new_tokens",
                                               "repetition_penalty",
                                               "transformers_version"};
// preprocessor_config.json: Qwen2VLImageProcessor(Fast) class attributes and __init__ kwargs
// (models/qwen2_vl/image_processing_qwen2_vl_fast.py, Qwen2VLImageProcessorKwargs in
// image_processing_qwen2_vl.py), image_processor_type (image_processing_base.py, read by
// AutoImageProcessor) and processor_class (image_processing_base.py __init__).
const std::set<std::string> kPreprocessorKeys = {"image_processor_type",
                                                 "processor_class",
                                                 "do_resize",
                                                 "resample",
                                                 "do_rescale",
                                                 "rescale_factor",
                                                 "do_normalize",
                                                 "image_mean",
                                                 "image_std",
                                                 "do_convert_rgb",
                                                 "patch_size",
                                                 "temporal_patch_size",
                                                 "merge_size",
                                                 "size",
                                                 "min_pixels",
                                                 "max_pixels"};
// video_preprocessor_config.json: Qwen3VLVideoProcessor class attributes and init kwargs
// (models/qwen3_vl/video_processing_qwen3_vl.py), video_processor_type (video_processing_utils.py).
const std::set<std::string> kVideoPreprocessorKeys = {
    "video_processor_type", "processor_class",     "do_resize",       "resample",  "do_rescale",
    "rescale_factor",       "do_normalize",        "image_mean",      "image_std", "do_convert_rgb",
    "patch_size",           "temporal_patch_size", "merge_size",      "size",      "fps",
    "min_frames",           "max_frames",          "do_sample_frames"};
// tokenizer_config.json: PreTrainedTokenizerBase (tokenization_utils_base.py:
// SPECIAL_TOKENS_ATTRIBUTES, chat_template, model_max_length, clean_up_tokenization_spaces,
// split_special_tokens, added_tokens_decoder), Qwen2Tokenizer.__init__ (errors;
// models/qwen2/tokenization_qwen2.py), tokenizer_class (models/auto/tokenization_auto.py),
// processor_class (models/auto/processing_auto.py).
const std::set<std::string> kTokenizerConfigKeys = {"tokenizer_class",
                                                    "processor_class",
                                                    "added_tokens_decoder",
                                                    "additional_special_tokens",
                                                    "bos_token",
                                                    "eos_token",
                                                    "pad_token",
                                                    "unk_token",
                                                    "chat_template",
                                                    "clean_up_tokenization_spaces",
                                                    "errors",
                                                    "model_max_length",
                                                    "split_special_tokens"};

json read_json(const fs::path& p) {
  return json::parse(io::read_file(p.string()));
}

void expect_keys_within(const json& j, const std::set<std::string>& allowed,
                        const std::string& what) {
  ASSERT_TRUE(j.is_object()) << what;
  for (const auto& [k, _] : j.items()) EXPECT_TRUE(allowed.count(k)) << what << ": " << k;
}

// One short bf16-exporting run of the debug config on the bundled shard (one test, as CTest runs
// each test in a process of its own, and the checks below share the run).
struct ExportRun {
  std::string dump;
  testing::CommandResult result;
  train::JobConfig config;
  fs::path dir() const { return fs::path(dump) / "hf_export"; }
};

ExportRun train_debug_export() {
  ExportRun run;
  run.dump = testing::fresh_dir("export", "debug_" + std::to_string(getpid()));
  // --checkpoint.enable is a bare boolean override.
  const std::string args = "train --config " + testing::kRoot + "/configs/debug_model.toml" +
                           " --job.dump_folder " + run.dump + " --model.tokenizer_path " +
                           testing::kTokenizer + " --training.dataset_path " + testing::kRoot +
                           "/data/cc12m-train-0000.tar" +
                           " --training.steps 2 --training.seq_len 256 --checkpoint.enable" +
                           " --checkpoint.export_dtype bfloat16";
  run.result = testing::run_qwen3vl(args);
  run.config = train::JobConfig::load(
      testing::kRoot + "/configs/debug_model.toml",
      {{"training.dataset_path", testing::kRoot + "/data/cc12m-train-0000.tar"},
       {"model.tokenizer_path", testing::kTokenizer}});
  return run;
}

void check_RunSucceedsWithTimestampedLogLines(const ExportRun& run) {
  // "YYYY-MM-DD HH:MM:SS.mmm [info] ..."
  const size_t at = run.result.output.find(" [info] ");
  ASSERT_NE(at, std::string::npos) << run.result.output;
  ASSERT_GE(at, 23u);
  const std::string stamp = run.result.output.substr(at - 23, 23);
  EXPECT_EQ(stamp[4], '-');
  EXPECT_EQ(stamp[10], ' ');
  EXPECT_EQ(stamp[13], ':');
  EXPECT_EQ(stamp[19], '.');
}

void check_ConfigSaysBfloat16AndOurLoaderReadsTheModelBack(const ExportRun& run) {
  const json cfg = read_json(run.dir() / "config.json");
  EXPECT_EQ(cfg["dtype"], "bfloat16");
  EXPECT_EQ(cfg["torch_dtype"], "bfloat16");
  expect_keys_within(cfg, kConfigKeys, "config.json");
  expect_keys_within(cfg["text_config"], kTextConfigKeys, "config.json text_config");
  expect_keys_within(cfg["vision_config"], kVisionConfigKeys, "config.json vision_config");
  io::SafetensorsFile weights((run.dir() / "model.safetensors").string());
  EXPECT_EQ(weights.info("model.language_model.embed_tokens.weight").dtype, DType::kBF16);
  auto model = model::Qwen3VLModel::from_pretrained(run.dir().string());
  EXPECT_EQ(model->config().to_json_text(), train::model_config(run.config).to_json_text());
}

void check_ProcessorConfigsHoldThePixelLimitsTrainedWith(const ExportRun& run) {
  const json pre = read_json(run.dir() / "preprocessor_config.json");
  expect_keys_within(pre, kPreprocessorKeys, "preprocessor_config.json");
  expect_keys_within(read_json(run.dir() / "video_preprocessor_config.json"),
                     kVideoPreprocessorKeys, "video_preprocessor_config.json");
  const data::ImageProcessorConfig trained =
      train::trained_image_config(run.config, train::model_config(run.config));
  // debug_model.toml: min_pixels 3136, max_pixels min(50176, 64 merged tokens x 28 x 28).
  EXPECT_EQ(trained.min_pixels, 3136);
  EXPECT_EQ(trained.max_pixels, 50176);
  const data::ImageProcessorConfig back =
      data::image_processor_config_for_model(run.dir().string());
  EXPECT_EQ(back.min_pixels, trained.min_pixels);
  EXPECT_EQ(back.max_pixels, trained.max_pixels);
  EXPECT_EQ(back.patch_size, 14);
  EXPECT_EQ(back.merge_size, 2);
  EXPECT_EQ(back.image_mean, trained.image_mean);
  EXPECT_EQ(pre["min_pixels"], trained.min_pixels);  // the key transformers 4.57 honours
}

void check_TokenizerFilesAndSpecialTokensMatchTheTokenizerTrainedWith(const ExportRun& run) {
  EXPECT_EQ(io::read_file((run.dir() / "tokenizer.json").string()),
            io::read_file(testing::kTokenizer));
  const data::Tokenizer tok = data::Tokenizer::load((run.dir() / "tokenizer.json").string());
  const data::SpecialTokens special = data::SpecialTokens::lookup(tok);
  const json tc = read_json(run.dir() / "tokenizer_config.json");
  expect_keys_within(tc, kTokenizerConfigKeys, "tokenizer_config.json");
  EXPECT_EQ(tok.token_id(tc["eos_token"].get<std::string>()), special.im_end);
  EXPECT_EQ(tok.token_id(tc["pad_token"].get<std::string>()), special.endoftext);
  for (const auto& t : tc["additional_special_tokens"])
    EXPECT_TRUE(tok.token_id(t.get<std::string>()).has_value()) << t;
  for (const auto& [id, entry] : tc["added_tokens_decoder"].items())
    EXPECT_EQ(tok.token_id(entry["content"].get<std::string>()), std::stoi(id)) << entry;
  EXPECT_EQ(tc["chat_template"], train::export_chat_template());
  EXPECT_EQ(io::read_file((run.dir() / "chat_template.jinja").string()),
            train::export_chat_template());
  const json gen = read_json(run.dir() / "generation_config.json");
  expect_keys_within(gen, kGenerationKeys, "generation_config.json");
  EXPECT_EQ(gen["eos_token_id"], json({special.im_end, special.endoftext}));
  EXPECT_EQ(gen["pad_token_id"], special.endoftext);
  // The slow tokenizer's files: every vocabulary entry with its id, every merge in order.
  const json vocab = read_json(run.dir() / "vocab.json");
  const json src = json::parse(io::read_file(testing::kTokenizer));
  EXPECT_EQ(vocab, src["model"]["vocab"]);
  const std::string merges = io::read_file((run.dir() / "merges.txt").string());
  EXPECT_EQ(static_cast<size_t>(std::count(merges.begin(), merges.end(), '\n')),
            src["model"]["merges"].size() + 1);  // + the "#version" line
}

// TensorBoard scalars carry torchtitan's tag names (torchtitan/components/metrics.py).
void check_TensorboardTagsAreTorchtitans(const ExportRun& run) {
  std::string events;
  for (const auto& e : fs::directory_iterator(fs::path(run.dump) / "tb"))
    events += io::read_file(e.path().string());
  for (const std::string tag :
       {"loss_metrics/global_avg_loss", "grad_norm", "lr", "throughput(tps)", "tflops", "mfu(%)",
        "time_metrics/end_to_end(s)", "time_metrics/data_loading(s)",
        "time_metrics/data_loading(%)", "memory/max_reserved(GiB)"})
    EXPECT_NE(events.find(tag), std::string::npos) << tag;
}

// The debug model ends its answer at once after two steps; --min-new-tokens makes it write.
void check_GenerateWithMinNewTokensPrintsText(const ExportRun& run) {
  const std::string base = "generate --model " + run.dir().string() + " --prompt 'Describe this.'";
  auto r = testing::run_shell(std::string(QWEN3VL_BINARY) + " " + base +
                              " --min-new-tokens 4 --max-new-tokens 4 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_GT(r.output.size(), 1u) << "'" << r.output << "'";  // text plus the final newline
  r = testing::run_qwen3vl(base + " --max-new-tokens 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  if (r.output.find("0 new tokens") != std::string::npos) {
    EXPECT_NE(r.output.find("--min-new-tokens"), std::string::npos) << r.output;
  }
}

TEST(HfExport, ExportIsCompleteAndReadsBack) {
  const ExportRun run = train_debug_export();
  ASSERT_EQ(run.result.exit_code, 0) << run.result.output;
  {
    SCOPED_TRACE("RunSucceedsWithTimestampedLogLines");
    check_RunSucceedsWithTimestampedLogLines(run);
  }
  {
    SCOPED_TRACE("ConfigSaysBfloat16AndOurLoaderReadsTheModelBack");
    check_ConfigSaysBfloat16AndOurLoaderReadsTheModelBack(run);
  }
  {
    SCOPED_TRACE("ProcessorConfigsHoldThePixelLimitsTrainedWith");
    check_ProcessorConfigsHoldThePixelLimitsTrainedWith(run);
  }
  {
    SCOPED_TRACE("TokenizerFilesAndSpecialTokensMatchTheTokenizerTrainedWith");
    check_TokenizerFilesAndSpecialTokensMatchTheTokenizerTrainedWith(run);
  }
  {
    SCOPED_TRACE("TensorboardTagsAreTorchtitans");
    check_TensorboardTagsAreTorchtitans(run);
  }
  {
    SCOPED_TRACE("GenerateWithMinNewTokensPrintsText");
    check_GenerateWithMinNewTokensPrintsText(run);
  }
  fs::remove_all(run.dump);
}

}  // namespace
}  // namespace qv
