// The whole Qwen3-VL model: vision tower(s), placeholder scatter, decoder with DeepStack
// injection, final norm, and the classifier fused with the cross-entropy loss. forward() and
// backward() are short lists of named stages (qwen3vl.cpp, docs/ARCHITECTURE.md).
#pragma once
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/activation_checkpoint.h"
#include "model/config.h"
#include "model/device_inputs.h"
#include "model/inputs.h"
#include "model/lora.h"
#include "model/loss_terms.h"
#include "model/params.h"
#include "model/positions.h"
#include "model/recorder.h"
#include "model/text_decoder.h"
#include "model/unit_hooks.h"
#include "model/vision_encoder.h"

namespace qv::model {

// The decoder's keys/values for incremental generation (batch of one).
struct KvCache {
  std::vector<KvLayer> layers;
  int64_t length = 0;      // tokens cached
  int64_t rope_delta = 0;  // HF rope_deltas: a new token's position is length + rope_delta
};

struct ForwardOptions {
  bool backward = false;  // keep activations and compute the loss gradient in the same pass
  // d(objective)/d(sum of token losses). 0 = the mean over this batch's kept tokens (HF loss).
  // A trainer accumulating micro-batches passes 1 / (kept tokens of the whole global batch).
  double loss_grad_scale = 0;
  bool want_logits = false;  // return the full [batch, seq, vocab] logits (memory: tokens x vocab)
  bool record = false;       // return intermediate tensors under HF fixture names
  int64_t classifier_chunk = 256;  // rows of logits held at once when want_logits is false
  // Activation checkpointing of decoder layers and vision blocks (model/activation_checkpoint.h
  // says which are dropped after forward and recomputed in backward); default: none.
  Checkpointing checkpointing;
  // When set (batch of one, no padding), every layer's keys and values are stored for decode().
  KvCache* kv_cache = nullptr;
  // Sharded training: the most vision-tower passes (images, videos) any rank runs for this
  // micro-batch. A rank with fewer makes up the difference with idle passes, so that every rank
  // makes the same unit-hook calls (each one is a collective).
  int64_t vision_passes = 0;
  // MoE: weight of HF's load-balancing loss in the objective (0 = off). The objective is
  // loss_grad_scale x (sum of token losses) + coef x aux_loss x (this batch's share of the
  // global batch's kept tokens), so one micro-batch gives HF's loss + coef x aux_loss.
  double router_aux_loss_coef = 0;
  // LoRA dropout (model/lora.h) applies in passes with backward set; its masks are a function of
  // this key, so a trainer passing e.g. the micro-batch's global index gets the same masks after
  // a resume.
  int64_t lora_dropout_key = 0;
  // Training: the classifier's row loss terms go here, on the device, and are summed later
  // (LossTerms::sum); the result's loss and loss_sum are then NaN. Null: summed in the forward,
  // which off the CPU waits for the device once per classifier chunk.
  LossTerms* loss_terms = nullptr;
  // The batch's token ids and pixels already on the device (a trainer's ahead upload of these
  // very inputs); null: the forward uploads them. Unused on the CPU.
  const DeviceInputs* uploaded = nullptr;
};

struct ForwardResult {
  double loss = std::numeric_limits<double>::quiet_NaN();  // mean over kept tokens
  double loss_sum = 0;
  int64_t kept_tokens = 0;
  Tensor logits;
  RopeIndex rope;
  std::map<std::string, Tensor> recorded;
  // MoE models: HF's load-balancing loss of this batch (computed whether or not it is trained)
  // and the slots routed to each expert, summed over the sparse layers (empty when dense).
  double aux_loss = std::numeric_limits<double>::quiet_NaN();
  HostVector<int64_t> tokens_per_expert;  // host memory whatever the device
};

// Targets of a batch: labels shifted left by one within each row and document (-100 elsewhere).
HostVector<int64_t> shifted_targets(const ModelInputs& inputs);
void shifted_targets_into(const ModelInputs& inputs, HostVector<int64_t>& targets);

// Seconds spent per part, accumulated over calls (reset by the caller).
struct ModelTimings {
  double vision_forward = 0, decoder_forward = 0, classifier = 0, decoder_backward = 0,
         vision_backward = 0;
};

class Qwen3VLModel {
 public:
  // Parameters allocated, zero; parameter units aligned to unit_align floats (see ParamStore).
  // The model lives on the device current when it is made (parameters, gradients, and the
  // activations of its passes, which run under that device's scope).
  explicit Qwen3VLModel(const ModelConfig& config, int64_t unit_align = 16);
  Qwen3VLModel(const Qwen3VLModel&) = delete;
  Qwen3VLModel& operator=(const Qwen3VLModel&) = delete;

  // config.json + safetensors from a Hugging Face model folder.
  static std::unique_ptr<Qwen3VLModel> from_pretrained(const std::string& dir);

  const ModelConfig& config() const { return config_; }
  ParamStore& store() { return store_; }
  const ParamStore& store() const { return store_; }
  Device device() const { return store_.device(); }
  const ModelParams& params() const { return params_; }
  // Moves the parameters into a store whose units are aligned to unit_align floats.
  void relayout(int64_t unit_align);
  // bf16 mixed precision: keeps bf16 copies of the weights that matrix products read (every
  // matrix but the position table and an untied input embedding, which are gathered in float),
  // so dense layers and the classifier multiply in bf16 with float accumulation.
  void enable_bf16_matmuls();
  // Adds LoRA adapters (model/lora.h) to the decoder's target projections, initialised as PEFT
  // does, and freezes every base parameter. Once per model.
  void enable_lora(const LoraConfig& lora);
  // enable_lora with dir/adapter_config.json, then the adapters from dir (PEFT's folder).
  void load_lora_adapter(const std::string& dir);
  // The plain model's parameters (the base layout, no adapters) with every adapter merged:
  // W + scaling * B A. Without adapters, a copy. Memory: one more copy of the base weights.
  ParamStore merged_store() const;
  const LoraConfig& lora_config() const { return lora_config_; }
  const LoraParams& lora_params() const { return lora_params_; }
  // Hooks called around every parameter unit (nullptr: none). Not owned.
  void set_unit_hooks(UnitHooks* hooks) { hooks_ = hooks; }

  ForwardResult forward(const ModelInputs& inputs, const ForwardOptions& options = {});
  // Accumulates parameter gradients of the last forward(options.backward = true).
  void backward();
  // Appends one token to a cache filled by forward(kv_cache = &cache); returns its logits.
  std::vector<float> decode(int64_t token, KvCache& cache);
  // Whether the last forward ran the vision tower (its parameters then received gradients).
  bool used_vision() const { return used_vision_; }
  ModelTimings& timings() { return timings_; }
  ~Qwen3VLModel();

 private:
  struct State;
  struct VisionFeatures;
  struct VisionGrads;
  void validate(const ModelInputs& in) const;
  // The stages of forward() and backward(), in the order they run (qwen3vl.cpp).
  void plan_placeholders(const ModelInputs& in, State& st, ForwardResult& res, const Recorder& rec);
  void vision_forward(const ModelInputs& in, const ForwardOptions& opt, State& st,
                      VisionFeatures& vis, const Recorder& rec);
  Buffer embed_tokens(const VisionFeatures& vis, State& st, const Recorder& rec);
  void attention_layout(const ModelInputs& in, const ForwardOptions& opt, State& st,
                        const RopeIndex& rope, const Recorder& rec);
  Buffer decoder_forward(Buffer x, const VisionFeatures& vis, const ForwardOptions& opt, State& st,
                         const Recorder& rec);
  double classifier_forward(const ModelInputs& in, Buffer x, const ForwardOptions& opt, State& st,
                            ForwardResult& res, const Recorder& rec);
  Buffer final_norm_backward(State& st);
  Buffer decoder_backward(Buffer d, State& st, VisionGrads& vg);
  void embed_backward(const Buffer& d, State& st);
  void vision_backward(const Buffer& d, VisionGrads& vg, State& st);
  // MoE: router statistics and the load-balancing loss (and its gradient) of the last forward.
  void finish_router(const ForwardOptions& opt, double batch_share, ForwardResult& res,
                     const Recorder& rec);
  void gather(int unit) {
    if (hooks_) hooks_->gather(unit);
  }
  void gather_rows(int unit, ParamRef table, int64_t cols, const int64_t* ids, int64_t n) {
    if (hooks_) hooks_->gather_rows(unit, table.offset, table.numel / cols, cols, ids, n);
  }
  void release(int unit) {
    if (hooks_) hooks_->release(unit);
  }
  void grads_ready(int unit) {
    if (hooks_) hooks_->grads_ready(unit);
  }
  // Decoder layer l with its adapters; gather / release its parameter units (adapters included).
  DecoderLayer decoder_layer(int64_t l) const;
  void gather_layer(int64_t l);
  void release_layer(int64_t l);
  ModelConfig config_;
  ParamStore store_;
  ModelParams params_;
  LoraConfig lora_config_;  // rank 0: no adapters
  LoraParams lora_params_;
  std::unique_ptr<State> state_;
  bool used_vision_ = false;
  ModelTimings timings_;
  UnitHooks* hooks_ = nullptr;
};

}  // namespace qv::model
