// The Qwen3 decoder layer: RMSNorm -> GQA attention with per-head q/k RMSNorm and interleaved
// MRoPE over packed documents -> residual -> RMSNorm -> feed-forward -> residual. The
// feed-forward is the dense SwiGLU MLP, or in a sparse layer of a MoE model the MoeBlock
// (model/moe_block.h).
#pragma once
#include <vector>

#include "model/config.h"
#include "model/lora.h"
#include "model/moe_block.h"
#include "model/params.h"
#include "model/vision_encoder.h"

namespace qv::model {

// Per-call attention layout shared by all layers.
struct DecoderContext {
  int64_t tokens = 0;
  // Computed on the host, uploaded once per forward (kernels/device_buffer.h, Mirrored).
  Mirrored<int64_t> cu_seqlens;           // documents (rows split at document boundaries)
  Mirrored<uint8_t> key_valid;            // attention_mask as bytes (empty = all valid)
  Mirrored<float> cos, sin;               // [tokens, head_dim]
  int64_t lora_dropout_key = kNoDropout;  // LoRA dropout masks of this pass (model/lora.h)

  // After the host arrays are filled: their device copies (nothing to do on the CPU).
  void upload() {
    cu_seqlens.upload();
    key_valid.upload();
    cos.upload();
    sin.upload();
  }
};

struct DenseMlpActs {
  Buffer gate, up, act;
};

struct DecoderLayerActs {
  Buffer x_in, h1, rstd1, q_raw, k_raw, rstd_q, rstd_k, q, k, v, attn, lse, x_mid, h2, rstd2;
  DenseMlpActs mlp;                         // dense layers
  MoeActs moe;                              // sparse layers
  std::array<LoraActs, kLoraTargets> lora;  // per LoraTarget, when the layer has adapters
};

// Keys (after q/k norm and rotary) and values of the tokens seen so far, for incremental decoding.
struct KvLayer {
  Buffer k, v;  // [length, kv_heads * head_dim]
};

class DecoderLayer {
 public:
  // lora: the layer's adapters (nullptr: none).
  DecoderLayer(const TextConfig& config, const TextLayerParams& params,
               const LoraLayer* lora = nullptr)
      : config_(config), p_(params), lora_(lora) {}
  // x: [tokens, hidden] in; out: layer output (x may not alias out). Saves activations in acts.
  // The one path of training, prefill and decode: with a cache, the pass's keys and values are
  // appended to it; an empty cache (prefill) attends as without one, a filled one (decode: one
  // new token, ctx.cos / sin at its position) attends over every cached position.
  void forward(ParamStore& store, const DecoderContext& ctx, Buffer x_in, DecoderLayerActs& acts,
               Buffer& out, KvLayer* cache = nullptr) const;
  // d_out: gradient of the layer output; d_in receives the gradient of its input. aux: the
  // load-balancing loss's gradient (sparse layers; null = none).
  void backward(ParamStore& store, const DecoderContext& ctx, const DecoderLayerActs& acts,
                const Buffer& d_out, Buffer& d_in, const MoeAuxGrad* aux = nullptr) const;

 private:
  // Attention of A.q over A.k / A.v (or the cache, see forward()) into A.attn.
  void attend(const DecoderContext& ctx, DecoderLayerActs& A, KvLayer* cache,
              bool bf16_products) const;
  // The feed-forward on h [tokens, hidden]: out (overwritten) and d_h (overwritten).
  void mlp_forward(ParamStore& store, const float* h, int64_t tokens, DecoderLayerActs& acts,
                   float* out, int64_t dropout_key) const;
  void mlp_backward(ParamStore& store, const float* h, int64_t tokens, const DecoderLayerActs& acts,
                    const float* d_out, const MoeAuxGrad* aux, float* d_h,
                    int64_t dropout_key) const;
  // A projection through model/lora.h's dense layer: the base weight plus its adapter, if any.
  void linear(ParamStore& s, LoraTarget t, ParamRef w, const float* x, float* y, int64_t M,
              int64_t K, int64_t N, DecoderLayerActs* acts, int64_t dropout_key) const;
  void linear_backward(ParamStore& s, LoraTarget t, ParamRef w, const float* x,
                       const DecoderLayerActs& acts, const float* dy, float* dx, int64_t M,
                       int64_t K, int64_t N, bool accumulate_dx, int64_t dropout_key) const;
  const TextConfig& config_;
  const TextLayerParams& p_;
  const LoraLayer* lora_ = nullptr;
};

}  // namespace qv::model
