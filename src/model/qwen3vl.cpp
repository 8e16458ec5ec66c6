#include "model/qwen3vl.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "kernels/activations.h"
#include "kernels/cross_entropy.h"
#include "kernels/device.h"
#include "kernels/device_buffer.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/norms.h"
#include "kernels/rows.h"
#include "model/hf_weights.h"

namespace qv::model {

namespace k = qv::kernels;

namespace {
// Adds the seconds since `start` to `acc` and restarts the clock.
void lap(std::chrono::steady_clock::time_point& start, double& acc) {
  const auto now = std::chrono::steady_clock::now();
  acc += std::chrono::duration<double>(now - start).count();
  start = now;
}

const uint8_t* or_null(const HostVector<uint8_t>& v) {
  return v.empty() ? nullptr : v.data();
}
}  // namespace

// Where the vision placeholders sit. HF's masked_scatter fills the image placeholders in order
// with the image tower's rows (the n-th image token gets merged row n), and the video ones with
// the video tower's.
struct Placeholders {
  bool has_images = false, has_videos = false;
  int64_t image_rows = 0, video_rows = 0;  // merged rows each tower produces
  Mirrored<int64_t> image_pos, video_pos;  // token index of each image / video placeholder
  Mirrored<uint8_t> is_visual;             // per token: an image or video placeholder
};

// Everything one forward keeps for its backward. The object lives as long as the model and its
// containers draw from the activation arena, so a step of a shape seen before allocates nothing.
struct Qwen3VLModel::State {
  bool ready = false;  // holds a forward(backward = true) that backward() has not consumed
  int64_t batch = 0, seq = 0, tokens = 0;
  Mirrored<int64_t> input_ids;
  const int64_t* token_ids = nullptr;  // on the device: input_ids' copy or the ahead upload's
  Placeholders ph;
  VisionActs image_acts, video_acts;
  int64_t idle_vision_passes = 0;  // see ForwardOptions::vision_passes
  DecoderContext ctx;
  PoolVector<DecoderLayerActs> layers;
  HostVector<uint8_t> recompute;  // layers whose activations were dropped after forward
  Buffer final_in, final_rstd;
  Buffer d_final_out;  // gradient of the final-norm output, from the fused classifier
  Mirrored<int64_t> targets, loss_rows;  // classifier scratch
  RouterStats router;                    // sparse layers' routing (MoE)
  Mirrored<float> aux_grad;              // d objective / d router probs per expert (empty: off)

  // Returns every buffer to the arena (the arena keeps them for the next step). Swapping with
  // an empty object frees storage; `v = {}` on a vector would only clear it.
  void release() {
    ready = false;
    State empty;
    std::swap(*this, empty);
  }
};

// The towers' outputs of one forward: read by the embedding scatter and the DeepStack adds.
struct Qwen3VLModel::VisionFeatures {
  VisionOutputs image, video;
};

HostVector<int64_t> shifted_targets(const ModelInputs& in) {
  HostVector<int64_t> t;
  shifted_targets_into(in, t);
  return t;
}

void shifted_targets_into(const ModelInputs& in, HostVector<int64_t>& t) {
  const int64_t B = in.batch, S = in.seq;
  t.assign(B * S, k::kIgnoreIndex);
  if (in.labels.empty()) return;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s + 1 < S; ++s) {
      const int64_t i = b * S + s;
      if (!in.document_ids.empty() && in.document_ids[i] != in.document_ids[i + 1]) continue;
      t[i] = in.labels[i + 1];
    }
}

Qwen3VLModel::Qwen3VLModel(const ModelConfig& config, int64_t unit_align)
    : config_(config), store_(unit_align) {
  config_.validate();
  params_ = layout_params(config_, store_);
  store_.allocate();
}

void Qwen3VLModel::enable_bf16_matmuls() {
  const int64_t embed = params_.text.embed.offset, lm_head = params_.text.lm_head.offset,
                pos = params_.vision.pos_embed.offset;
  store_.enable_bf16_copies([&](const ParamEntry& e) {
    const int64_t o = e.ref.offset;
    return e.is_matrix && o != pos && (o != embed || embed == lm_head);
  });
  // Read in float as well, so not bf16-only: the LoRA adapters (lora_forward multiplies in
  // float). Every other copied matrix is read only through weight() / the experts' bf16
  // operands; a tied embedding's lookup reads float rows too, but only those it asks for with
  // gather_rows(), so a whole-unit gather (the classifier's) needs just its bf16 copy.
  std::set<int64_t> float_read;
  for (const LoraLayer& l : lora_params_.layers)
    for (const LoraAdapter& a : l.adapters)
      if (a.a.valid()) float_read.insert({a.a.offset, a.b.offset});
  store_.set_bf16_only([&](const ParamEntry& e) { return float_read.count(e.ref.offset) == 0; });
}

void Qwen3VLModel::relayout(int64_t unit_align) {
  ParamStore fresh(unit_align, store_.device());
  ModelParams p = layout_params(config_, fresh);
  LoraParams lp = layout_lora(config_, lora_config_, fresh);
  fresh.allocate();
  fresh.copy_from(store_);
  const bool bf16 = store_.has_bf16_copies();
  store_ = std::move(fresh);
  params_ = std::move(p);
  lora_params_ = std::move(lp);
  if (bf16) enable_bf16_matmuls();  // the copies follow the new layout
  state_.reset();
}

void Qwen3VLModel::enable_lora(const LoraConfig& lora) {
  QV_CHECK(!lora_config_.enabled(), "enable_lora: the model has adapters already");
  QV_CHECK(lora.enabled(), "enable_lora: lora.rank must be positive");
  lora_config_ = lora;
  relayout(store_.unit_align());
  init_lora(lora_params_, lora_config_, store_);
  // Base weights frozen: only the adapters ("base_model.model." names) receive gradients.
  store_.set_frozen_prefix("model.", true);
  store_.set_frozen_prefix("lm_head.", true);
}

void Qwen3VLModel::load_lora_adapter(const std::string& dir) {
  enable_lora(
      read_lora_adapter_config((std::filesystem::path(dir) / "adapter_config.json").string()));
  load_lora_tensors(dir, store_);
}

ParamStore Qwen3VLModel::merged_store() const {
  ParamStore out(16, store_.device());
  layout_params(config_, out);
  out.allocate();
  for (const ParamEntry& e : out.entries()) {
    const ParamEntry* src = store_.find(e.name);
    QV_CHECK(src && src->ref.numel == e.ref.numel, "merged_store: parameter '", e.name,
             "' missing");
    kernels::copy_bytes(out.value(e.ref), out.device(), store_.value(src->ref), store_.device(),
                        static_cast<size_t>(e.ref.numel) * sizeof(float));
  }
  merge_lora(config_, lora_config_, store_, out);
  return out;
}

DecoderLayer Qwen3VLModel::decoder_layer(int64_t l) const {
  return DecoderLayer(config_.text, params_.text.layers[l],
                      lora_config_.enabled() ? &lora_params_.layers[l] : nullptr);
}

void Qwen3VLModel::gather_layer(int64_t l) {
  gather(params_.text.layer_units[l]);
  if (const ExpertUnits& e = params_.text.expert_units[l]; e.valid()) {
    gather(e.gate_up);
    gather(e.down);
  }
  if (lora_config_.enabled()) gather(lora_params_.layer_units[l]);
}

void Qwen3VLModel::release_layer(int64_t l) {
  release(params_.text.layer_units[l]);
  if (const ExpertUnits& e = params_.text.expert_units[l]; e.valid()) {
    release(e.gate_up);
    release(e.down);
  }
  if (lora_config_.enabled()) release(lora_params_.layer_units[l]);
}

Qwen3VLModel::~Qwen3VLModel() = default;

std::unique_ptr<Qwen3VLModel> Qwen3VLModel::from_pretrained(const std::string& dir) {
  const auto config =
      ModelConfig::from_json_file((std::filesystem::path(dir) / "config.json").string());
  auto model = std::make_unique<Qwen3VLModel>(config);
  load_hf_weights(dir, model->store());
  return model;
}

void Qwen3VLModel::validate(const ModelInputs& in) const {
  const int64_t N = in.tokens();
  QV_CHECK(in.batch > 0 && in.seq > 0, "inputs: batch and seq must be positive");
  QV_CHECK(static_cast<int64_t>(in.input_ids.size()) == N, "inputs: input_ids has ",
           in.input_ids.size(), " entries for batch ", in.batch, " x seq ", in.seq);
  for (const auto* v : {&in.labels, &in.attention_mask, &in.document_ids})
    QV_CHECK(v->empty() || static_cast<int64_t>(v->size()) == N,
             "inputs: labels / attention_mask / document_ids must have batch x seq entries");
  auto check_pixels = [&](const Tensor& px, const std::vector<Grid>& grids, const char* what) {
    if (!px.defined()) {
      QV_CHECK(grids.empty(), "inputs: ", what, " grids given without pixel values");
      return;
    }
    int64_t patches = 0;
    for (const Grid& g : grids) {
      QV_CHECK(g.t > 0 && g.h > 0 && g.w > 0, "inputs: ", what, " grid [", g.t, ", ", g.h, ", ",
               g.w, "] must be positive");
      patches += g.patches();
    }
    QV_CHECK(px.dtype() == DType::kF32 && px.ndim() == 2, "inputs: ", what,
             " pixel values must be a 2-D float32 tensor, got ", dtype_name(px.dtype()), " ",
             shape_str(px.shape()));
    QV_CHECK(
        px.dim(1) == config_.vision.patch_dim(), "inputs: ", what, " pixel values have ", px.dim(1),
        " values per patch but the config's patch needs C*T*P*P = ", config_.vision.in_channels,
        "*", config_.vision.temporal_patch_size, "*", config_.vision.patch_size, "*",
        config_.vision.patch_size, " = ", config_.vision.patch_dim());
    QV_CHECK(px.dim(0) == patches, "inputs: ", what, " pixel values have ", px.dim(0),
             " patches but the grids describe ", patches);
  };
  check_pixels(in.pixel_values, in.image_grids, "image");
  check_pixels(in.pixel_values_videos, in.video_grids, "video");
  const int64_t V = config_.text.vocab_size;
  for (int64_t i = 0; i < N; ++i)
    QV_CHECK(in.input_ids[i] >= 0 && in.input_ids[i] < V, "inputs: token id ", in.input_ids[i],
             " at position ", i, " is outside the vocabulary [0, ", V, ")");
}

// The forward pass, stage by stage. With options.backward set, State keeps what backward() needs.
ForwardResult Qwen3VLModel::forward(const ModelInputs& in, const ForwardOptions& opt) {
  validate(in);
  if (!state_) state_ = std::make_unique<State>();
  State& st = *state_;
  st.release();
  st.batch = in.batch;
  st.seq = in.seq;
  st.tokens = in.tokens();
  st.input_ids.host.assign(in.input_ids.begin(), in.input_ids.end());
  const int64_t* ahead = opt.uploaded ? opt.uploaded->input_ids() : nullptr;
  if (!ahead) st.input_ids.upload();
  st.token_ids = ahead ? ahead : st.input_ids.data();
  ForwardResult res;
  const Recorder rec = opt.record ? Recorder::into(res.recorded) : Recorder();
  plan_placeholders(in, st, res, rec);  // 1. vision placeholders, 3-D rotary positions
  auto clock = std::chrono::steady_clock::now();
  VisionFeatures vis;
  vision_forward(in, opt, st, vis, rec);  // 2. vision tower(s)
  lap(clock, timings_.vision_forward);
  Buffer x = embed_tokens(vis, st, rec);                 // 3. embeddings + vision scatter
  attention_layout(in, opt, st, res.rope, rec);          // 4. rotary tables, documents, padding
  x = decoder_forward(std::move(x), vis, opt, st, rec);  // 5. decoder layers + DeepStack
  lap(clock, timings_.decoder_forward);
  const double scale = classifier_forward(in, std::move(x), opt, st, res, rec);  // 6. loss
  lap(clock, timings_.classifier);
  if (config_.text.is_moe())
    finish_router(opt, scale * static_cast<double>(res.kept_tokens), res, rec);
  if (opt.backward)
    st.ready = true;  // backward() reads State, and the pixels through the vision acts
  else
    st.release();
  return res;
}

// Stage 1: which tokens are vision placeholders (HF checks the same counts before
// masked_scatter), and every token's 3-D rotary position (HF get_rope_index).
void Qwen3VLModel::plan_placeholders(const ModelInputs& in, State& st, ForwardResult& res,
                                     const Recorder& rec) {
  Placeholders& ph = st.ph;
  const int64_t N = st.tokens, unit = config_.vision.merge_unit();
  ph.is_visual.host.assign(N, 0);
  for (int64_t i = 0; i < N; ++i) {
    const bool img = in.input_ids[i] == config_.image_token_id;
    const bool vid = in.input_ids[i] == config_.video_token_id;
    if (img) ph.image_pos.host.push_back(i);
    if (vid) ph.video_pos.host.push_back(i);
    ph.is_visual.host[i] = img || vid;
  }
  ph.image_pos.upload();
  ph.video_pos.upload();
  ph.is_visual.upload();
  auto merged_rows = [&](const std::vector<Grid>& grids) {
    int64_t n = 0;
    for (const Grid& g : grids) {
      QV_CHECK(g.h % config_.vision.spatial_merge_size == 0 &&
                   g.w % config_.vision.spatial_merge_size == 0,
               "inputs: grid [", g.t, ", ", g.h, ", ", g.w,
               "] is not divisible by spatial_merge_size ", config_.vision.spatial_merge_size);
      n += g.patches() / unit;
    }
    return n;
  };
  ph.has_images = in.pixel_values.defined();
  ph.has_videos = in.pixel_values_videos.defined();
  used_vision_ = ph.has_images || ph.has_videos;
  ph.image_rows = ph.has_images ? merged_rows(in.image_grids) : 0;
  ph.video_rows = ph.has_videos ? merged_rows(in.video_grids) : 0;
  const auto n_image_tokens = static_cast<int64_t>(ph.image_pos.size());
  const auto n_video_tokens = static_cast<int64_t>(ph.video_pos.size());
  QV_CHECK(n_image_tokens == ph.image_rows || (!ph.has_images && n_image_tokens == 0),
           "Image features and image tokens do not match: tokens: ", n_image_tokens,
           ", features: ", ph.image_rows);
  QV_CHECK(n_video_tokens == ph.video_rows || (!ph.has_videos && n_video_tokens == 0),
           "Video features and video tokens do not match: tokens: ", n_video_tokens,
           ", features: ", ph.video_rows);

  res.rope = compute_rope_index(config_, in);
  rec.tensor("position_ids", [&] {
    Tensor pos(DType::kI64, {3, st.batch, st.seq});
    std::memcpy(pos.raw(), res.rope.positions.data(), pos.nbytes());
    return pos;
  });
  rec.tensor("rope_deltas", [&] { return Tensor::from_i64(res.rope.deltas, {st.batch, 1}); });
}

// Stage 2: the vision tower, once over the images and once over the videos (as HF). A rank of a
// sharded job with fewer passes than opt.vision_passes makes idle ones (its unit hooks only).
void Qwen3VLModel::vision_forward(const ModelInputs& in, const ForwardOptions& opt, State& st,
                                  VisionFeatures& vis, const Recorder& rec) {
  const VisionEncoder encoder(config_.vision, params_.vision, hooks_);
  const int64_t H = config_.text.hidden_size, depth = config_.vision.depth;
  if (opt.backward)
    for (VisionActs* acts : {&st.image_acts, &st.video_acts}) {
      acts->recompute.resize(depth);
      for (int64_t b = 0; b < depth; ++b)
        acts->recompute[b] = opt.checkpointing.vision_block(b, config_.text.num_layers);
    }
  auto tower = [&](const Tensor& pixels, const float* uploaded, const std::vector<Grid>& grids,
                   int64_t rows, VisionActs& acts, VisionOutputs& out, const char* debug,
                   const char* name) {
    out = encoder.forward(store_, pixels.data<float>(), grids, acts, rec.under(debug), uploaded);
    const Recorder named = rec.under(name);
    named("embeds", out.embeds, {rows, H});
    for (size_t d = 0; d < out.deepstack.size(); ++d)
      named("deepstack", static_cast<int64_t>(d), out.deepstack[d], {rows, H});
  };
  if (st.ph.has_images)
    tower(in.pixel_values, opt.uploaded ? opt.uploaded->pixel_values() : nullptr, in.image_grids,
          st.ph.image_rows, st.image_acts, vis.image, "debug.image.", "image_");
  if (st.ph.has_videos)
    tower(in.pixel_values_videos, opt.uploaded ? opt.uploaded->pixel_values_videos() : nullptr,
          in.video_grids, st.ph.video_rows, st.video_acts, vis.video, "debug.video.", "video_");
  st.idle_vision_passes =
      std::max<int64_t>(0, opt.vision_passes - st.ph.has_images - st.ph.has_videos);
  for (int64_t p = 0; p < st.idle_vision_passes; ++p) encoder.idle_forward();
}

// Stage 3: token embeddings, each placeholder's row replaced by its vision feature.
Buffer Qwen3VLModel::embed_tokens(const VisionFeatures& vis, State& st, const Recorder& rec) {
  const int64_t N = st.tokens, H = config_.text.hidden_size, V = config_.text.vocab_size;
  Buffer x(N * H);
  // Only the rows of this batch's tokens are read (sharded training gathers just those); the
  // gather is planned on the host, the lookup reads the device copy.
  gather_rows(params_.text.embed_unit, params_.text.embed, H, st.input_ids.host.data(), N);
  k::embedding_forward(st.token_ids, store_.value(params_.text.embed), x.data(), N, V, H);
  release(params_.text.embed_unit);
  const Placeholders& ph = st.ph;
  k::copy_rows(vis.image.embeds.data(), nullptr, x.data(), ph.image_pos.data(),
               static_cast<int64_t>(ph.image_pos.size()), H);
  k::copy_rows(vis.video.embeds.data(), nullptr, x.data(), ph.video_pos.data(),
               static_cast<int64_t>(ph.video_pos.size()), H);
  rec("hidden_states.0", x, {st.batch, st.seq, H});
  return x;
}

// Stage 4: what every decoder layer's attention reads: rotary tables at the tokens' positions,
// documents (each row split where document_ids change), padding, the LoRA dropout key; and, for
// generation, an emptied KV cache that the layers fill.
void Qwen3VLModel::attention_layout(const ModelInputs& in, const ForwardOptions& opt, State& st,
                                    const RopeIndex& rope, const Recorder& rec) {
  const TextConfig& tc = config_.text;
  const int64_t N = st.tokens, S = st.seq;
  if (opt.kv_cache) {
    QV_CHECK(st.batch == 1 && in.attention_mask.empty() && in.document_ids.empty(),
             "a kv cache needs a single row without padding or packing");
    opt.kv_cache->layers.assign(tc.num_layers, {});
    opt.kv_cache->length = N;
    opt.kv_cache->rope_delta = rope.deltas[0];
  }
  DecoderContext& ctx = st.ctx;
  ctx.tokens = N;
  ctx.lora_dropout_key = opt.backward ? opt.lora_dropout_key : kNoDropout;
  text_rope_tables(tc, rope.positions, N, ctx.cos.host, ctx.sin.host);
  rec("debug.text_rope_cos", ctx.cos.host, {st.batch, S, tc.head_dim});
  rec("debug.text_rope_sin", ctx.sin.host, {st.batch, S, tc.head_dim});
  ctx.cu_seqlens.host.push_back(0);
  for (int64_t i = 1; i <= N; ++i) {
    const bool row_end = i % S == 0;
    const bool doc_end =
        !row_end && !in.document_ids.empty() && in.document_ids[i] != in.document_ids[i - 1];
    if (row_end || doc_end) ctx.cu_seqlens.host.push_back(i);
  }
  if (!in.attention_mask.empty()) {
    ctx.key_valid.host.resize(N);
    for (int64_t i = 0; i < N; ++i) ctx.key_valid.host[i] = in.attention_mask[i] != 0;
  }
  ctx.upload();
}

// Stage 5: the decoder layers. After each of the first layers, DeepStack adds the matching
// level of vision features to the placeholder rows. A layer's activations are kept for
// backward, reduced to its input (activation checkpointing), or dropped (no backward).
Buffer Qwen3VLModel::decoder_forward(Buffer x, const VisionFeatures& vis, const ForwardOptions& opt,
                                     State& st, const Recorder& rec) {
  const TextConfig& tc = config_.text;
  const int64_t B = st.batch, S = st.seq, N = st.tokens, H = tc.hidden_size;
  const auto n_deepstack = static_cast<int64_t>(config_.vision.deepstack_visual_indexes.size());
  const Placeholders& ph = st.ph;
  st.layers.assign(tc.num_layers, {});
  st.recompute.assign(tc.num_layers, 0);
  for (int64_t l = 0; l < tc.num_layers; ++l) {
    rec("layer_input", l, x, {B, S, H});
    Buffer out;
    gather_layer(l);
    decoder_layer(l).forward(store_, st.ctx, std::move(x), st.layers[l], out,
                             opt.kv_cache ? &opt.kv_cache->layers[l] : nullptr);
    release_layer(l);
    if (params_.text.layers[l].sparse())
      st.router.add(st.layers[l].moe, MoeBlock(tc, params_.text.layers[l]).dims(N),
                    st.ctx.key_valid.data_or_null(), or_null(st.ctx.key_valid.host));
    rec("layer_output", l, out, {B, S, H});
    // HF 4.57 records every decoder layer's output (before DeepStack) as hidden_states[l + 1],
    // the last one included: the fixtures' hidden_states.L equals layer_output.(L-1), not the
    // final-norm output (which we record as final_norm).
    rec("hidden_states", l + 1, out, {B, S, H});
    if (l < n_deepstack) {
      if (ph.has_images)
        k::add_rows(vis.image.deepstack[l].data(), nullptr, out.data(), ph.image_pos.data(),
                    static_cast<int64_t>(ph.image_pos.size()), H);
      if (ph.has_videos)
        k::add_rows(vis.video.deepstack[l].data(), nullptr, out.data(), ph.video_pos.data(),
                    static_cast<int64_t>(ph.video_pos.size()), H);
    }
    x = std::move(out);
    DecoderLayerActs& acts = st.layers[l];
    if (!opt.backward) {
      acts = {};  // inference keeps no activations
    } else if (opt.checkpointing.decoder_layer(l)) {
      Buffer input = std::move(acts.x_in);
      acts = {};
      acts.x_in = std::move(input);
      st.recompute[l] = 1;
    }
  }
  return x;
}

// Stage 6: the final norm, then the classifier fused with the cross-entropy loss (and, with
// backward, its gradient) over chunks of the rows that have a target (all rows when logits are
// wanted). Returns d(objective)/d(sum of token losses).
double Qwen3VLModel::classifier_forward(const ModelInputs& in, Buffer x, const ForwardOptions& opt,
                                        State& st, ForwardResult& res, const Recorder& rec) {
  const TextConfig& tc = config_.text;
  const int64_t N = st.tokens, H = tc.hidden_size, V = tc.vocab_size;
  Buffer hN(N * H);
  st.final_rstd.resize(N);
  gather(params_.text.norm_unit);
  k::rmsnorm_forward(x.data(), store_.value(params_.text.norm), hN.data(), st.final_rstd.data(), N,
                     H, static_cast<float>(tc.rms_norm_eps));
  release(params_.text.norm_unit);
  st.final_in = std::move(x);
  rec("final_norm", hN, {st.batch, st.seq, H});

  // The rows the classifier runs on, and their targets in the same order.
  HostVector<int64_t>& targets = st.targets.host;
  shifted_targets_into(in, targets);
  for (int64_t t : targets)
    if (t != k::kIgnoreIndex) {
      QV_CHECK(t >= 0 && t < V, "inputs: label ", t, " is outside the vocabulary [0, ", V, ")");
      ++res.kept_tokens;
    }
  double scale = opt.loss_grad_scale;
  if (scale == 0 && res.kept_tokens > 0) scale = 1.0 / static_cast<double>(res.kept_tokens);
  HostVector<int64_t>& rows = st.loss_rows.host;
  for (int64_t i = 0; i < N; ++i)
    if (opt.want_logits || targets[i] != k::kIgnoreIndex) rows.push_back(i);
  for (size_t r = 0; r < rows.size(); ++r) targets[r] = targets[rows[r]];  // r <= rows[r]
  targets.resize(rows.size());
  st.targets.upload();
  st.loss_rows.upload();

  if (opt.want_logits) res.logits = Tensor(DType::kF32, {st.batch, st.seq, V});
  DeviceOutput<float> logits_out(opt.want_logits ? res.logits.data<float>() : nullptr,
                                 opt.want_logits ? static_cast<size_t>(N * V) : 0);
  if (opt.backward) st.d_final_out.assign(N * H, 0.0f);
  gather(params_.text.lm_head_unit);
  const k::Weight W = store_.weight(params_.text.lm_head);
  float* dW = opt.backward ? store_.grad(params_.text.lm_head) : nullptr;
  const int64_t chunk = std::max<int64_t>(1, opt.classifier_chunk);
  double* terms = opt.loss_terms ? opt.loss_terms->add_batch(targets, chunk) : nullptr;
  Buffer h_chunk, logits_chunk, dh_chunk;
  for (size_t r0 = 0; r0 < rows.size(); r0 += chunk) {
    const int64_t n = std::min<int64_t>(chunk, rows.size() - r0);
    const int64_t* chunk_rows = st.loss_rows.data() + r0;
    h_chunk.resize(n * H);
    logits_chunk.resize(n * V);
    k::copy_rows(hN.data(), chunk_rows, h_chunk.data(), nullptr, n, H);
    k::linear_forward(h_chunk.data(), W, static_cast<const float*>(nullptr), logits_chunk.data(), n,
                      H, V);
    if (opt.want_logits)
      k::copy_rows(logits_chunk.data(), nullptr, logits_out.data(), chunk_rows, n, V);
    // With bf16 products the loss writes its gradient in bf16 directly (the backward products
    // would round it anyway), sparing a pass over the [n, V] chunk; each row's bf16 gradient
    // goes into the first half of its own float row (rows 2 V bf16 apart), so no second
    // [n, V] buffer is held.
    const bool bf16_grad = opt.backward && W.b16 != nullptr;
    bf16* dlogits_b16 = reinterpret_cast<bf16*>(logits_chunk.data());
    float* dlogits = opt.backward && !bf16_grad ? logits_chunk.data() : nullptr;
    const int64_t* chunk_targets = st.targets.data() + r0;
    const auto grad_scale = static_cast<float>(scale);
    if (terms && bf16_grad)
      k::cross_entropy_terms(logits_chunk.data(), chunk_targets, dlogits_b16, 2 * V, n, V,
                             grad_scale, terms + r0);
    else if (terms)
      k::cross_entropy_terms(logits_chunk.data(), chunk_targets, dlogits, n, V, grad_scale,
                             terms + r0);
    else if (bf16_grad)
      res.loss_sum +=
          k::cross_entropy(logits_chunk.data(), chunk_targets, dlogits_b16, 2 * V, n, V, grad_scale)
              .loss_sum;
    else
      res.loss_sum +=
          k::cross_entropy(logits_chunk.data(), chunk_targets, dlogits, n, V, grad_scale).loss_sum;
    if (opt.backward) {
      dh_chunk.resize(n * H);
      if (bf16_grad)
        k::linear_backward(h_chunk.data(), W, dlogits_b16, 2 * V, dh_chunk.data(), dW, n, H, V);
      else
        k::linear_backward(h_chunk.data(), W, logits_chunk.data(), dh_chunk.data(), dW,
                           static_cast<float*>(nullptr), n, H, V);
      k::copy_rows(dh_chunk.data(), nullptr, st.d_final_out.data(), chunk_rows, n, H);
    }
  }
  logits_out.download();
  // An untied LM head's gradient is complete here; a tied one also gets the embedding's in
  // backward().
  if (opt.backward && params_.text.lm_head_unit != params_.text.embed_unit)
    grads_ready(params_.text.lm_head_unit);
  release(params_.text.lm_head_unit);
  if (terms) res.loss_sum = std::numeric_limits<double>::quiet_NaN();  // in *opt.loss_terms
  res.loss = res.kept_tokens > 0 ? res.loss_sum / static_cast<double>(res.kept_tokens)
                                 : std::numeric_limits<double>::quiet_NaN();
  if (res.kept_tokens > 0)
    rec.tensor("loss", [&] { return Tensor::from_f32({static_cast<float>(res.loss)}, {}); });
  return scale;
}

// MoE: the router statistics and load-balancing loss of the forward (and its gradient).
void Qwen3VLModel::finish_router(const ForwardOptions& opt, double batch_share, ForwardResult& res,
                                 const Recorder& rec) {
  State* st = state_.get();
  st->router.download();  // the one device-to-host copy of the statistics per forward
  res.tokens_per_expert.assign(st->router.tokens_per_expert.begin(),
                               st->router.tokens_per_expert.end());
  res.aux_loss = st->router.aux_loss();
  const double with_aux = res.loss + config_.text.router_aux_loss_coef * res.aux_loss;
  rec.tensor("aux_loss", [&] { return Tensor::from_f32({static_cast<float>(res.aux_loss)}, {}); });
  rec.tensor("loss_with_aux", [&] { return Tensor::from_f32({static_cast<float>(with_aux)}, {}); });
  if (opt.backward && opt.router_aux_loss_coef > 0) {
    const HostVector<double> g = st->router.aux_grad(opt.router_aux_loss_coef * batch_share);
    st->aux_grad.host.assign(g.begin(), g.end());  // the float the gradient is added in
    st->aux_grad.upload();
  }
}

// One new token through the same decoder layers as forward(), attending over the cache.
std::vector<float> Qwen3VLModel::decode(int64_t token, KvCache& cache) {
  const TextConfig& tc = config_.text;
  const int64_t H = tc.hidden_size, V = tc.vocab_size;
  QV_CHECK(cache.layers.size() == static_cast<size_t>(tc.num_layers),
           "decode() needs a cache filled by forward(kv_cache = ...)");
  Buffer x(H);
  Mirrored<int64_t> id;  // on the CPU the host value itself
  id.host.push_back(token);
  id.upload();
  k::embedding_forward(id.data(), store_.value(params_.text.embed), x.data(), 1, V, H);
  DecoderContext ctx;
  ctx.tokens = 1;
  ctx.cu_seqlens.host = {0, 1};
  const int64_t pos = cache.length + cache.rope_delta;
  text_rope_tables(tc, {pos, pos, pos}, 1, ctx.cos.host, ctx.sin.host);
  ctx.upload();
  DecoderLayerActs scratch;
  for (int64_t l = 0; l < tc.num_layers; ++l) {
    Buffer out;
    decoder_layer(l).forward(store_, ctx, std::move(x), scratch, out, &cache.layers[l]);
    x = std::move(out);
  }
  ++cache.length;
  Buffer h(H), rstd(1);
  k::rmsnorm_forward(x.data(), store_.value(params_.text.norm), h.data(), rstd.data(), 1, H,
                     static_cast<float>(tc.rms_norm_eps));
  std::vector<float> logits(V);
  DeviceOutput<float> out(logits.data(), logits.size());
  k::linear_forward(h.data(), store_.weight(params_.text.lm_head),
                    static_cast<const float*>(nullptr), out.data(), 1, H, V);
  out.download();
  return logits;
}

// The gradients a backward pass hands to the vision towers: of their outputs at the placeholder
// rows, per tower (rows in tower order).
struct Qwen3VLModel::VisionGrads {
  Buffer image_embeds, video_embeds;
  PoolVector<Buffer> image_deepstack, video_deepstack;  // per DeepStack level
};

// The backward pass: the forward's stages in reverse (the placeholder plan has no gradient).
void Qwen3VLModel::backward() {
  QV_CHECK(state_ && state_->ready,
           "backward() needs a preceding forward() with options.backward = true");
  State& st = *state_;
  auto clock = std::chrono::steady_clock::now();
  VisionGrads vg;
  Buffer d = final_norm_backward(st);          // 6. (the classifier's ran in forward)
  d = decoder_backward(std::move(d), st, vg);  // 5.
  lap(clock, timings_.decoder_backward);
  embed_backward(d, st);       // 3. (stage 4 has no parameters)
  vision_backward(d, vg, st);  // 2.
  lap(clock, timings_.vision_backward);
  st.release();
}

Buffer Qwen3VLModel::final_norm_backward(State& st) {
  const int64_t N = st.tokens, H = config_.text.hidden_size;
  Buffer d(N * H);
  gather(params_.text.norm_unit);
  k::rmsnorm_backward(st.final_in.data(), store_.value(params_.text.norm), st.final_rstd.data(),
                      st.d_final_out.data(), d.data(), store_.grad(params_.text.norm), N, H);
  grads_ready(params_.text.norm_unit);
  release(params_.text.norm_unit);
  return d;
}

// Decoder layers in reverse. The gradient reaching layer l's output is also that of the
// DeepStack features added there: it is gathered at the placeholder rows first.
Buffer Qwen3VLModel::decoder_backward(Buffer d, State& st, VisionGrads& vg) {
  const TextConfig& tc = config_.text;
  const int64_t H = tc.hidden_size;
  const auto n_deepstack = static_cast<int64_t>(config_.vision.deepstack_visual_indexes.size());
  const Placeholders& ph = st.ph;
  vg.image_deepstack.assign(n_deepstack, Buffer(ph.image_rows * H));
  vg.video_deepstack.assign(n_deepstack, Buffer(ph.video_rows * H));
  Buffer d_in;
  for (int64_t l = tc.num_layers - 1; l >= 0; --l) {
    if (l < n_deepstack) {
      k::copy_rows(d.data(), ph.image_pos.data(), vg.image_deepstack[l].data(), nullptr,
                   static_cast<int64_t>(ph.image_pos.size()), H);
      k::copy_rows(d.data(), ph.video_pos.data(), vg.video_deepstack[l].data(), nullptr,
                   static_cast<int64_t>(ph.video_pos.size()), H);
    }
    const DecoderLayer layer = decoder_layer(l);
    gather_layer(l);
    if (st.recompute[l]) {  // activation checkpointing: rebuild this layer's activations
      Buffer input = st.layers[l].x_in, unused;
      layer.forward(store_, st.ctx, std::move(input), st.layers[l], unused);
    }
    const MoeAuxGrad aux{st.aux_grad.data_or_null(), st.ctx.key_valid.data_or_null()};
    layer.backward(store_, st.ctx, st.layers[l], d, d_in, &aux);
    // In reverse layout order (the replicated strategy's buckets grow downwards).
    if (const ExpertUnits& e = params_.text.expert_units[l]; e.valid()) {
      grads_ready(e.down);
      grads_ready(e.gate_up);
    }
    grads_ready(params_.text.layer_units[l]);
    if (lora_config_.enabled()) grads_ready(lora_params_.layer_units[l]);
    release_layer(l);
    std::swap(d, d_in);
    st.layers[l] = {};  // free as we go
  }
  return d;
}

// d is the gradient of the embeddings after the vision scatter: placeholder rows belong to the
// vision features, the others to the embedding table (its parameters are not read).
void Qwen3VLModel::embed_backward(const Buffer& d, State& st) {
  if (float* g = store_.grad(params_.text.embed))
    k::embedding_backward(st.token_ids, d.data(), g, st.tokens, config_.text.hidden_size,
                          st.ph.is_visual.data());
  grads_ready(params_.text.embed_unit);
}

void Qwen3VLModel::vision_backward(const Buffer& d, VisionGrads& vg, State& st) {
  const int64_t H = config_.text.hidden_size;
  const Placeholders& ph = st.ph;
  const VisionEncoder encoder(config_.vision, params_.vision, hooks_);
  vg.image_embeds.resize(ph.image_rows * H);
  vg.video_embeds.resize(ph.video_rows * H);
  k::copy_rows(d.data(), ph.image_pos.data(), vg.image_embeds.data(), nullptr,
               static_cast<int64_t>(ph.image_pos.size()), H);
  k::copy_rows(d.data(), ph.video_pos.data(), vg.video_embeds.data(), nullptr,
               static_cast<int64_t>(ph.video_pos.size()), H);
  if (ph.has_images) encoder.backward(store_, st.image_acts, vg.image_embeds, vg.image_deepstack);
  if (ph.has_videos) encoder.backward(store_, st.video_acts, vg.video_embeds, vg.video_deepstack);
  for (int64_t p = 0; p < st.idle_vision_passes; ++p) encoder.idle_backward();
}

}  // namespace qv::model
