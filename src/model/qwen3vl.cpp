#include "model/qwen3vl.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "kernels/activations.h"
#include "kernels/cross_entropy.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/norms.h"
#include "model/activation_checkpoint.h"
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
}  // namespace

// Everything one forward keeps for its backward. The object lives as long as the model and its
// containers draw from the activation arena, so a step of a shape seen before allocates nothing.
struct Qwen3VLModel::State {
  bool ready = false;  // holds a forward(backward = true) that backward() has not consumed
  int64_t batch = 0, seq = 0, tokens = 0;
  PoolVector<int64_t> input_ids;
  bool has_images = false, has_videos = false;
  VisionActs image_acts, video_acts;
  int64_t image_rows = 0, video_rows = 0;  // merged rows
  // visual_pos[j]: token index of the j-th vision placeholder; visual_src[j]: its merged row
  // (images first, then videos, in the concatenated [image rows | video rows] numbering).
  PoolVector<int64_t> visual_pos, visual_src;
  PoolVector<uint8_t> is_visual;
  DecoderContext ctx;
  PoolVector<DecoderLayerActs> layers;
  PoolVector<uint8_t> recompute;   // layers whose activations were dropped after forward
  int64_t idle_vision_passes = 0;  // see ForwardOptions::vision_passes
  Buffer final_in, final_rstd;
  Buffer d_final_out;  // gradient of the final-norm output, from the fused classifier
  PoolVector<int64_t> targets, loss_rows, chunk_targets;  // classifier scratch
  RouterStats router;                                     // sparse layers' routing (MoE)
  PoolVector<double> aux_grad;  // d objective / d router probs per expert (empty: off)

  // Returns every buffer to the arena (the arena keeps them for the next step). Swapping with
  // an empty object frees storage; `v = {}` on a vector would only clear it.
  void release() {
    ready = false;
    State empty;
    std::swap(*this, empty);
  }
};

PoolVector<int64_t> shifted_targets(const ModelInputs& in) {
  PoolVector<int64_t> t;
  shifted_targets_into(in, t);
  return t;
}

void shifted_targets_into(const ModelInputs& in, PoolVector<int64_t>& t) {
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
}

void Qwen3VLModel::relayout(int64_t unit_align) {
  ParamStore fresh(unit_align);
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
  ParamStore out;
  layout_params(config_, out);
  out.allocate();
  for (const ParamEntry& e : out.entries()) {
    const ParamEntry* src = store_.find(e.name);
    QV_CHECK(src && src->ref.numel == e.ref.numel, "merged_store: parameter '", e.name,
             "' missing");
    std::copy_n(store_.value(src->ref), e.ref.numel, out.value(e.ref));
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
  if (lora_config_.enabled()) gather(lora_params_.layer_units[l]);
}

void Qwen3VLModel::release_layer(int64_t l) {
  release(params_.text.layer_units[l]);
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

ForwardResult Qwen3VLModel::forward(const ModelInputs& in, const ForwardOptions& opt) {
  validate(in);
  const TextConfig& tc = config_.text;
  const int64_t B = in.batch, S = in.seq, N = B * S, H = tc.hidden_size, V = tc.vocab_size;
  const int64_t unit = config_.vision.merge_unit();
  if (!state_) state_ = std::make_unique<State>();
  State* st = state_.get();
  st->release();
  st->batch = B;
  st->seq = S;
  st->tokens = N;
  st->input_ids.assign(in.input_ids.begin(), in.input_ids.end());
  ForwardResult res;
  // Callers guard with opt.record: building the names would allocate in every training step.
  auto record = [&](const std::string& name, const Buffer& b, Shape shape) {
    res.recorded[name] = Tensor::from_f32(b, std::move(shape));
  };

  // Placeholder bookkeeping (HF checks the same counts before masked_scatter).
  int64_t n_image_tokens = 0, n_video_tokens = 0;
  st->is_visual.assign(N, 0);
  for (int64_t i = 0; i < N; ++i) {
    const bool img = in.input_ids[i] == config_.image_token_id;
    const bool vid = in.input_ids[i] == config_.video_token_id;
    if (!img && !vid) continue;
    st->is_visual[i] = 1;
    st->visual_pos.push_back(i);
    st->visual_src.push_back(img ? n_image_tokens++ : -1 - n_video_tokens++);
  }
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
  st->has_images = in.pixel_values.defined();
  st->has_videos = in.pixel_values_videos.defined();
  used_vision_ = st->has_images || st->has_videos;
  st->image_rows = st->has_images ? merged_rows(in.image_grids) : 0;
  st->video_rows = st->has_videos ? merged_rows(in.video_grids) : 0;
  QV_CHECK(n_image_tokens == st->image_rows || (!st->has_images && n_image_tokens == 0),
           "Image features and image tokens do not match: tokens: ", n_image_tokens,
           ", features: ", st->image_rows);
  QV_CHECK(n_video_tokens == st->video_rows || (!st->has_videos && n_video_tokens == 0),
           "Video features and video tokens do not match: tokens: ", n_video_tokens,
           ", features: ", st->video_rows);
  for (auto& src : st->visual_src)
    if (src < 0) src = st->image_rows + (-1 - src);

  auto clock = std::chrono::steady_clock::now();
  // Vision towers (images and videos are separate calls, as in HF).
  VisionEncoder encoder(config_.vision, params_.vision, hooks_);
  const Checkpointing ac = Checkpointing::parse(opt.activation_checkpoint, opt.selective_ac_option);
  if (opt.backward)
    for (VisionActs* acts : {&st->image_acts, &st->video_acts}) {
      acts->recompute.resize(config_.vision.depth);
      for (int64_t b = 0; b < config_.vision.depth; ++b)
        acts->recompute[b] = ac.vision_block(b, tc.num_layers);
    }
  VisionOutputs img, vid;
  if (st->has_images) {
    img = encoder.forward(store_, in.pixel_values.data<float>(), in.image_grids, st->image_acts,
                          opt.record ? &res.recorded : nullptr, "debug.image.");
    if (opt.record) {
      record("image_embeds", img.embeds, {st->image_rows, H});
      for (size_t d = 0; d < img.deepstack.size(); ++d)
        record("image_deepstack." + std::to_string(d), img.deepstack[d], {st->image_rows, H});
    }
  }
  if (st->has_videos) {
    vid = encoder.forward(store_, in.pixel_values_videos.data<float>(), in.video_grids,
                          st->video_acts, opt.record ? &res.recorded : nullptr, "debug.video.");
    if (opt.record) {
      record("video_embeds", vid.embeds, {st->video_rows, H});
      for (size_t d = 0; d < vid.deepstack.size(); ++d)
        record("video_deepstack." + std::to_string(d), vid.deepstack[d], {st->video_rows, H});
    }
  }
  st->idle_vision_passes =
      std::max<int64_t>(0, opt.vision_passes - st->has_images - st->has_videos);
  for (int64_t p = 0; p < st->idle_vision_passes; ++p) encoder.idle_forward();
  auto merged_row = [&](const VisionOutputs& i_out, const VisionOutputs& v_out, int64_t d,
                        int64_t src) -> const float* {
    const bool from_image = src < st->image_rows;
    const VisionOutputs& o = from_image ? i_out : v_out;
    const int64_t row = from_image ? src : src - st->image_rows;
    const Buffer& buf = d < 0 ? o.embeds : o.deepstack[d];
    return buf.data() + row * H;
  };

  lap(clock, timings_.vision_forward);
  // Embeddings with the vision features scattered into the placeholder positions.
  Buffer x(N * H);
  gather(params_.text.embed_unit);
  k::embedding_forward(in.input_ids.data(), store_.value(params_.text.embed), x.data(), N, V, H);
  release(params_.text.embed_unit);
  for (size_t j = 0; j < st->visual_pos.size(); ++j)
    std::memcpy(&x[st->visual_pos[j] * H], merged_row(img, vid, -1, st->visual_src[j]),
                H * sizeof(float));
  if (opt.record) record("hidden_states.0", x, {B, S, H});

  // Positions, rotary tables, attention layout.
  res.rope = compute_rope_index(config_, in);
  if (opt.record) {
    Tensor pos(DType::kI64, {3, B, S});
    std::memcpy(pos.raw(), res.rope.positions.data(), pos.nbytes());
    res.recorded["position_ids"] = pos;
    res.recorded["rope_deltas"] = Tensor::from_i64(res.rope.deltas, {B, 1});
  }
  if (opt.kv_cache) {
    QV_CHECK(B == 1 && in.attention_mask.empty() && in.document_ids.empty(),
             "a kv cache needs a single row without padding or packing");
    opt.kv_cache->length = N;
    opt.kv_cache->rope_delta = res.rope.deltas[0];
  }
  DecoderContext& ctx = st->ctx;
  ctx.tokens = N;
  ctx.lora_dropout_key = opt.backward ? opt.lora_dropout_key : kNoDropout;
  text_rope_tables(tc, res.rope.positions, N, ctx.cos, ctx.sin);
  if (opt.record) {
    record("debug.text_rope_cos", ctx.cos, {B, S, tc.head_dim});
    record("debug.text_rope_sin", ctx.sin, {B, S, tc.head_dim});
  }
  ctx.cu_seqlens.push_back(0);
  for (int64_t i = 1; i <= N; ++i) {
    const bool row_end = i % S == 0;
    const bool doc_end =
        !row_end && !in.document_ids.empty() && in.document_ids[i] != in.document_ids[i - 1];
    if (row_end || doc_end) ctx.cu_seqlens.push_back(i);
  }
  if (!in.attention_mask.empty()) {
    ctx.key_valid.resize(N);
    for (int64_t i = 0; i < N; ++i) ctx.key_valid[i] = in.attention_mask[i] != 0;
  }

  // Decoder layers with DeepStack injection after the first layers.
  const size_t n_deepstack = config_.vision.deepstack_visual_indexes.size();
  st->layers.assign(tc.num_layers, {});
  st->recompute.assign(tc.num_layers, 0);
  for (int64_t l = 0; l < tc.num_layers; ++l) {
    if (opt.record) record("layer_input." + std::to_string(l), x, {B, S, H});
    const DecoderLayer layer = decoder_layer(l);
    Buffer out;
    gather_layer(l);
    layer.forward(store_, ctx, std::move(x), st->layers[l], out);
    release_layer(l);
    if (params_.text.layers[l].sparse())
      st->router.add(st->layers[l].moe, N, tc.num_experts_per_tok,
                     ctx.key_valid.empty() ? nullptr : ctx.key_valid.data());
    if (opt.kv_cache) {
      if (opt.kv_cache->layers.size() != static_cast<size_t>(tc.num_layers))
        opt.kv_cache->layers.assign(tc.num_layers, {});
      opt.kv_cache->layers[l].k = st->layers[l].k;
      opt.kv_cache->layers[l].v = st->layers[l].v;
    }
    if (opt.record) {
      record("layer_output." + std::to_string(l), out, {B, S, H});
      // HF 4.57 records every decoder layer's output (before DeepStack) as hidden_states[l + 1],
      // the last one included: the fixtures' hidden_states.L equals layer_output.(L-1), not the
      // final-norm output (which we record as final_norm).
      record("hidden_states." + std::to_string(l + 1), out, {B, S, H});
    }
    if (static_cast<size_t>(l) < n_deepstack && !st->visual_pos.empty()) {
      for (size_t j = 0; j < st->visual_pos.size(); ++j) {
        float* h = &out[st->visual_pos[j] * H];
        const float* f = merged_row(img, vid, l, st->visual_src[j]);
        for (int64_t c = 0; c < H; ++c) h[c] += f[c];
      }
    }
    x = std::move(out);
    const bool drop = ac.decoder_layer(l);
    if (!opt.backward) {
      st->layers[l] = {};  // inference keeps no activations
    } else if (drop) {
      Buffer input = std::move(st->layers[l].x_in);
      st->layers[l] = {};
      st->layers[l].x_in = std::move(input);
      st->recompute[l] = 1;
    }
  }
  lap(clock, timings_.decoder_forward);
  Buffer hN(N * H);
  st->final_rstd.resize(N);
  gather(params_.text.norm_unit);
  k::rmsnorm_forward(x.data(), store_.value(params_.text.norm), hN.data(), st->final_rstd.data(), N,
                     H, static_cast<float>(tc.rms_norm_eps));
  release(params_.text.norm_unit);
  st->final_in = std::move(x);
  if (opt.record) record("final_norm", hN, {B, S, H});

  // Classifier fused with the loss (and its gradient), in chunks of rows.
  PoolVector<int64_t>& targets = st->targets;
  shifted_targets_into(in, targets);
  for (int64_t t : targets)
    if (t != k::kIgnoreIndex) {
      QV_CHECK(t >= 0 && t < V, "inputs: label ", t, " is outside the vocabulary [0, ", V, ")");
      ++res.kept_tokens;
    }
  double scale = opt.loss_grad_scale;
  if (scale == 0 && res.kept_tokens > 0) scale = 1.0 / static_cast<double>(res.kept_tokens);
  PoolVector<int64_t>& rows = st->loss_rows;
  for (int64_t i = 0; i < N; ++i)
    if (opt.want_logits || targets[i] != k::kIgnoreIndex) rows.push_back(i);
  if (opt.want_logits) res.logits = Tensor(DType::kF32, {B, S, V});
  if (opt.backward) st->d_final_out.assign(N * H, 0.0f);
  gather(params_.text.lm_head_unit);
  const k::Weight W = store_.weight(params_.text.lm_head);
  float* dW = opt.backward ? store_.grad(params_.text.lm_head) : nullptr;
  const int64_t chunk = std::max<int64_t>(1, opt.classifier_chunk);
  Buffer h_chunk, logits_chunk, dh_chunk;
  PoolVector<int64_t>& t_chunk = st->chunk_targets;
  for (size_t r0 = 0; r0 < rows.size(); r0 += chunk) {
    const int64_t n = std::min<int64_t>(chunk, rows.size() - r0);
    h_chunk.resize(n * H);
    logits_chunk.resize(n * V);
    t_chunk.resize(n);
    for (int64_t r = 0; r < n; ++r) {
      std::memcpy(&h_chunk[r * H], &hN[rows[r0 + r] * H], H * sizeof(float));
      t_chunk[r] = targets[rows[r0 + r]];
    }
    k::linear_forward(h_chunk.data(), W, static_cast<const float*>(nullptr), logits_chunk.data(), n,
                      H, V);
    if (opt.want_logits)
      for (int64_t r = 0; r < n; ++r)
        std::memcpy(res.logits.data<float>() + rows[r0 + r] * V, &logits_chunk[r * V],
                    V * sizeof(float));
    const auto ce = k::cross_entropy(logits_chunk.data(), t_chunk.data(),
                                     opt.backward ? logits_chunk.data() : nullptr, n, V,
                                     static_cast<float>(scale));
    res.loss_sum += ce.loss_sum;
    if (opt.backward) {
      dh_chunk.resize(n * H);
      k::linear_backward(h_chunk.data(), W, logits_chunk.data(), dh_chunk.data(), dW,
                         static_cast<float*>(nullptr), n, H, V);
      for (int64_t r = 0; r < n; ++r)
        std::memcpy(&st->d_final_out[rows[r0 + r] * H], &dh_chunk[r * H], H * sizeof(float));
    }
  }
  // An untied LM head's gradient is complete here; a tied one also gets the embedding's in
  // backward().
  if (opt.backward && params_.text.lm_head_unit != params_.text.embed_unit && hooks_)
    hooks_->grads_ready(params_.text.lm_head_unit);
  release(params_.text.lm_head_unit);
  lap(clock, timings_.classifier);
  res.loss = res.kept_tokens > 0 ? res.loss_sum / static_cast<double>(res.kept_tokens)
                                 : std::numeric_limits<double>::quiet_NaN();
  if (opt.record && res.kept_tokens > 0)
    res.recorded["loss"] = Tensor::from_f32({static_cast<float>(res.loss)}, {});
  if (tc.is_moe()) finish_router(opt, scale * static_cast<double>(res.kept_tokens), res);
  if (opt.backward) {
    st->image_acts.pixels = st->has_images ? in.pixel_values.data<float>() : nullptr;
    st->video_acts.pixels = st->has_videos ? in.pixel_values_videos.data<float>() : nullptr;
    st->ready = true;
  } else {
    st->release();
  }
  return res;
}

void Qwen3VLModel::finish_router(const ForwardOptions& opt, double batch_share,
                                 ForwardResult& res) {
  State* st = state_.get();
  res.tokens_per_expert.assign(st->router.tokens_per_expert.begin(),
                               st->router.tokens_per_expert.end());
  res.aux_loss = st->router.aux_loss();
  if (opt.record) {
    res.recorded["aux_loss"] = Tensor::from_f32({static_cast<float>(res.aux_loss)}, {});
    const double with_aux = res.loss + config_.text.router_aux_loss_coef * res.aux_loss;
    res.recorded["loss_with_aux"] = Tensor::from_f32({static_cast<float>(with_aux)}, {});
  }
  if (opt.backward && opt.router_aux_loss_coef > 0)
    st->aux_grad = st->router.aux_grad(opt.router_aux_loss_coef * batch_share);
}

std::vector<float> Qwen3VLModel::decode(int64_t token, KvCache& cache) {
  const TextConfig& tc = config_.text;
  const int64_t H = tc.hidden_size, V = tc.vocab_size;
  QV_CHECK(cache.layers.size() == static_cast<size_t>(tc.num_layers),
           "decode() needs a cache filled by forward(kv_cache = ...)");
  Buffer x(H);
  k::embedding_forward(&token, store_.value(params_.text.embed), x.data(), 1, V, H);
  const int64_t pos = cache.length + cache.rope_delta;
  PoolVector<float> cos, sin;
  text_rope_tables(tc, {pos, pos, pos}, 1, cos, sin);
  for (int64_t l = 0; l < tc.num_layers; ++l)
    decoder_layer(l).decode(store_, cos.data(), sin.data(), cache.layers[l], x);
  ++cache.length;
  Buffer h(H), rstd(1);
  k::rmsnorm_forward(x.data(), store_.value(params_.text.norm), h.data(), rstd.data(), 1, H,
                     static_cast<float>(tc.rms_norm_eps));
  std::vector<float> logits(V);
  k::linear_forward(h.data(), store_.weight(params_.text.lm_head),
                    static_cast<const float*>(nullptr), logits.data(), 1, H, V);
  return logits;
}

void Qwen3VLModel::backward() {
  QV_CHECK(state_ && state_->ready,
           "backward() needs a preceding forward() with options.backward = true");
  State& st = *state_;
  const TextConfig& tc = config_.text;
  const int64_t N = st.tokens, H = tc.hidden_size;
  auto clock = std::chrono::steady_clock::now();
  Buffer d(N * H);
  gather(params_.text.norm_unit);
  k::rmsnorm_backward(st.final_in.data(), store_.value(params_.text.norm), st.final_rstd.data(),
                      st.d_final_out.data(), d.data(), store_.grad(params_.text.norm), N, H);
  grads_ready(params_.text.norm_unit);
  release(params_.text.norm_unit);
  const size_t n_deepstack = config_.vision.deepstack_visual_indexes.size();
  const int64_t total_rows = st.image_rows + st.video_rows;
  PoolVector<Buffer> d_deepstack(n_deepstack, Buffer(total_rows * H, 0.0f));
  Buffer d_in;
  for (int64_t l = tc.num_layers - 1; l >= 0; --l) {
    if (static_cast<size_t>(l) < n_deepstack)
      for (size_t j = 0; j < st.visual_pos.size(); ++j)
        std::memcpy(&d_deepstack[l][st.visual_src[j] * H], &d[st.visual_pos[j] * H],
                    H * sizeof(float));
    const DecoderLayer layer = decoder_layer(l);
    gather_layer(l);
    if (st.recompute[l]) {  // activation checkpointing: rebuild this layer's activations
      Buffer input = st.layers[l].x_in, unused;
      layer.forward(store_, st.ctx, std::move(input), st.layers[l], unused);
    }
    const MoeAuxGrad aux{st.aux_grad.empty() ? nullptr : st.aux_grad.data(),
                         st.ctx.key_valid.empty() ? nullptr : st.ctx.key_valid.data()};
    layer.backward(store_, st.ctx, st.layers[l], d, d_in, &aux);
    grads_ready(params_.text.layer_units[l]);
    if (lora_config_.enabled()) grads_ready(lora_params_.layer_units[l]);
    release_layer(l);
    std::swap(d, d_in);
    st.layers[l] = {};  // free as we go
  }
  lap(clock, timings_.decoder_backward);
  // d is the gradient of the embeddings after the vision scatter (no parameter is read).
  if (float* g = store_.grad(params_.text.embed))
    k::embedding_backward(st.input_ids.data(), d.data(), g, N, H, st.is_visual.data());
  grads_ready(params_.text.embed_unit);
  Buffer d_merged(total_rows * H, 0.0f);
  for (size_t j = 0; j < st.visual_pos.size(); ++j)
    std::memcpy(&d_merged[st.visual_src[j] * H], &d[st.visual_pos[j] * H], H * sizeof(float));
  VisionEncoder encoder(config_.vision, params_.vision, hooks_);
  auto slice = [&](const Buffer& b, int64_t row0, int64_t rows) {
    return Buffer(b.begin() + row0 * H, b.begin() + (row0 + rows) * H);
  };
  auto run = [&](const VisionActs& acts, int64_t row0, int64_t rows) {
    PoolVector<Buffer> dds;
    for (const Buffer& b : d_deepstack) dds.push_back(slice(b, row0, rows));
    encoder.backward(store_, acts, slice(d_merged, row0, rows), dds);
  };
  if (st.has_images) run(st.image_acts, 0, st.image_rows);
  if (st.has_videos) run(st.video_acts, st.image_rows, st.video_rows);
  for (int64_t p = 0; p < st.idle_vision_passes; ++p) encoder.idle_backward();
  lap(clock, timings_.vision_backward);
  st.release();
}

}  // namespace qv::model
