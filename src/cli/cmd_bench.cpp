// qwen3vl bench train|forward: full training steps (or prefill forwards) on synthetic data of a
// given shape, with the model FLOP rate against the machine's GEMM peak for the precision in use
// (MFU) and a time split by part.
#include <chrono>
#include <cstdio>
#include <random>

#include "cli/bench_kernels.h"
#include "cli/command.h"
#include "cli/device_flag.h"
#include "core/buffer_pool.h"
#include "core/error.h"
#include "kernels/device_info.h"
#include "kernels/gemm.h"
#include "model/activation_memory.h"
#include "model/qwen3vl.h"
#include "train/adamw.h"
#include "train/metrics.h"

namespace qv::cli {
namespace {

struct Shape {
  int64_t seq = 2048, batch = 1, images = 4, width = 448, height = 448, steps = 3;
};

// Rows of random text with `images` images each, spread evenly, every image W x H pixels.
model::ModelInputs synthetic_batch(const model::ModelConfig& c, const Shape& s, int64_t& patches) {
  const int64_t factor = c.vision.patch_size * c.vision.spatial_merge_size;
  const int64_t gh = std::max<int64_t>(1, s.height / factor) * c.vision.spatial_merge_size;
  const int64_t gw = std::max<int64_t>(1, s.width / factor) * c.vision.spatial_merge_size;
  const int64_t merged = gh * gw / c.vision.merge_unit();
  QV_CHECK(s.images * (merged + 2) < s.seq, "bench: ", s.images, " images of ", merged,
           " tokens do not fit in seq_len ", s.seq);
  std::mt19937 rng(1);
  std::uniform_int_distribution<int64_t> tok(0, std::min<int64_t>(c.text.vocab_size, 150000) - 1);
  model::ModelInputs in;
  in.batch = s.batch;
  in.seq = s.seq;
  for (int64_t b = 0; b < s.batch; ++b) {
    const int64_t text_per_gap = (s.seq - s.images * (merged + 2)) / (s.images + 1);
    std::vector<int64_t> row;
    for (int64_t k = 0; k < s.images; ++k) {
      for (int64_t i = 0; i < text_per_gap; ++i) row.push_back(tok(rng));
      row.push_back(c.vision_start_token_id);
      for (int64_t i = 0; i < merged; ++i) row.push_back(c.image_token_id);
      row.push_back(c.vision_end_token_id);
      in.image_grids.push_back({1, gh, gw});
    }
    while (static_cast<int64_t>(row.size()) < s.seq) row.push_back(tok(rng));
    in.input_ids.insert(in.input_ids.end(), row.begin(), row.end());
  }
  in.labels = in.input_ids;
  for (auto& l : in.labels)
    if (l == c.image_token_id || l == c.vision_start_token_id || l == c.vision_end_token_id)
      l = -100;
  patches = static_cast<int64_t>(in.image_grids.size()) * gh * gw;
  if (patches > 0) {
    in.pixel_values = Tensor(DType::kF32, {patches, c.vision.patch_dim()});
    std::normal_distribution<float> n(0, 1);
    for (int64_t i = 0; i < in.pixel_values.numel(); ++i) in.pixel_values.data<float>()[i] = n(rng);
  }
  return in;
}

int run_bench(const Args& args) {
  if (!args.empty() && args[0] == "kernels")
    return run_bench_kernels(Args(args.begin() + 1, args.end()));
  QV_CHECK(!args.empty() && (args[0] == "train" || args[0] == "forward"),
           "usage: qwen3vl bench train|forward|kernels --flavor F --seq-len S --batch B --images K "
           "--image-size WxH [--steps N] [--ac none|selective|full] [--classifier-chunk ROWS] "
           "[--mixed-precision float32|bfloat16]");
  const bool train = args[0] == "train";
  Flags f(Args(args.begin() + 1, args.end()));
  f.allow_only({"flavor", "model", "seq-len", "batch", "images", "image-size", "steps", "ac",
                "classifier-chunk", "mixed-precision", "device"});
  const DeviceChoice device = parse_device_flag(f.get("device", "cpu"));
  std::string device_text;
  // The model, its optimizer state and the activation arena live on the device; ops run there.
  const Device d = activate_device(device, &device_text);
  const DeviceScope on_device(d);
  std::printf("device %s\n", device_text.c_str());
  const std::string precision = f.get("mixed-precision", "float32");
  QV_CHECK(precision == "float32" || precision == "bfloat16",
           "--mixed-precision must be float32 or bfloat16, got '", precision, "'");
  const bool bf16 = precision == "bfloat16";
  const model::ModelConfig c =
      f.has("model") ? model::ModelConfig::from_json_file(f.get("model") + "/config.json")
                     : model::ModelConfig::flavor(f.get("flavor", "debugmodel"));
  Shape s;
  s.seq = f.get_int("seq-len", s.seq);
  s.batch = f.get_int("batch", s.batch);
  s.images = f.get_int("images", s.images);
  s.steps = f.get_int("steps", s.steps);
  if (f.has("image-size")) {
    QV_CHECK(std::sscanf(f.get("image-size").c_str(), "%ldx%ld", &s.width, &s.height) == 2,
             "--image-size must look like 448x448");
  }
  model::Qwen3VLModel m(c);
  model::init_params(c, m.store(), 1);
  if (bf16) m.enable_bf16_matmuls();
  int64_t patches = 0;
  const model::ModelInputs in = synthetic_batch(c, s, patches);
  std::vector<train::ParamSpan> spans;
  for (const auto& e : m.store().entries()) spans.push_back({e.ref.offset, e.ref.numel});
  train::AdamW opt({}, spans, {{0, m.store().total()}});
  if (bf16) opt.write_bf16_copies(m.store().values_bf16().data(), m.store().bf16_entries());
  std::vector<uint8_t> active(spans.size(), 1);
  model::ForwardOptions o;
  o.backward = train;
  const std::string ac = f.get("ac", "none");
  o.checkpointing = model::Checkpointing::parse(ac, "2");
  o.classifier_chunk = f.get_int("classifier-chunk", o.classifier_chunk);
  std::printf("%s\n", kernels::gemm_description().c_str());
  const double peak = kernels::measure_peak_gflops(bf16 ? DType::kBF16 : DType::kF32);
  double total = 0, optim = 0;
  for (int64_t step = -1; step < s.steps; ++step) {  // step -1 warms up
    if (step == 0) m.timings() = {};
    const auto t0 = std::chrono::steady_clock::now();
    if (train) m.store().zero_grads();
    m.forward(in, o);
    if (train) m.backward();
    kernels::synchronize_device();  // a GPU's ops return before they finish
    const auto t1 = std::chrono::steady_clock::now();
    if (train) opt.step(m.store().values().data(), m.store().grads().data(), active, 1e-5);
    kernels::synchronize_device();
    const auto t2 = std::chrono::steady_clock::now();
    BufferPool::instance().end_step();
    if (step >= 0) {
      total += std::chrono::duration<double>(t2 - t0).count();
      optim += std::chrono::duration<double>(t2 - t1).count();
    }
  }
  const double per_step = total / s.steps;
  const double mult = train ? 1.0 : 1.0 / 3.0;  // forward only = a third of training FLOPs
  const int64_t tokens = s.batch * s.seq;
  const double patches_per_image =
      s.images > 0 ? static_cast<double>(patches) / (s.images * s.batch) : 0;
  int64_t kept = 0;  // tokens that take a loss: the classifier runs on these only
  for (int64_t t : model::shifted_targets(in)) kept += t != -100;
  const double flops = mult * (model::decoder_train_flops_per_token(c, s.seq) * tokens +
                               model::classifier_train_flops_per_token(c) * kept +
                               model::vision_train_flops_per_patch(c, patches_per_image) * patches);
  const auto& t = m.timings();
  const BufferPoolStats arena = BufferPool::instance().stats();
  const double mib = 1.0 / (1024.0 * 1024.0);
  // Parameters, gradients and the two AdamW moments, all fp32, and the bf16 weight copies.
  const double state_mib =
      (16.0 + (bf16 ? 2.0 : 0.0)) * static_cast<double>(m.store().total()) * mib;
  std::printf("bench %s: flavor %s, batch %lld x seq %lld, %lld images (%lld patches), ac %s, %s\n",
              train ? "train" : "forward", f.get("flavor", "debugmodel").c_str(),
              (long long)s.batch, (long long)s.seq, (long long)(s.images * s.batch),
              (long long)patches, ac.c_str(), precision.c_str());
  std::printf(
      "step %.3f s | %.1f tokens/s | %.3g GFLOP/step | %.1f GFLOP/s | %s GEMM peak %.1f GFLOP/s "
      "| MFU %.1f%% | peak RSS %.0f MiB\n",
      per_step, tokens / per_step, flops / 1e9, flops / per_step / 1e9, bf16 ? "bf16" : "float32",
      peak, 100 * flops / per_step / 1e9 / peak, train::peak_rss_mib());
  const double n = static_cast<double>(s.steps);
  std::printf(
      "split per step: vision fwd %.3f s, decoder fwd %.3f s, classifier+loss %.3f s, "
      "decoder bwd %.3f s, vision bwd %.3f s, optimizer %.3f s\n",
      t.vision_forward / n, t.decoder_forward / n, t.classifier / n, t.decoder_backward / n,
      t.vision_backward / n, optim / n);
  model::StepShape shape;
  shape.tokens = tokens;
  shape.loss_tokens = kept;
  shape.patches = patches;
  shape.checkpointing = o.checkpointing;
  shape.classifier_chunk = o.classifier_chunk;
  const model::ActivationBytes plan = model::activation_arena_bytes(c, shape);
  std::printf(
      "memory: params+grads+AdamW %.0f MiB | activation arena: formula %.0f MiB (decoder %.0f, "
      "vision %.0f, other %.0f, transient %.0f), measured peak %.0f MiB live / %.0f MiB "
      "reserved | peak RSS / (state + arena) = %.3f\n",
      state_mib, plan.total() * mib, plan.decoder_saved * mib, plan.vision_saved * mib,
      plan.other_saved * mib, plan.transient * mib, arena.peak_in_use_bytes * mib,
      arena.peak_reserved_bytes * mib,
      train::peak_rss_mib() / (state_mib + arena.peak_reserved_bytes * mib));
  if (!d.is_cpu()) std::printf("%s\n", kernels::format_device_memory(d).c_str());
  return 0;
}

const Registration kRegistration({"bench",
                                  "time training steps or prefill on synthetic data (bench "
                                  "train|forward --flavor F --seq-len S --batch B --images K "
                                  "--image-size WxH)",
                                  run_bench});

}  // namespace
}  // namespace qv::cli
