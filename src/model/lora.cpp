#include "model/lora.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "core/allocator.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "kernels/gemm.h"
#include "kernels/host_staging.h"
#include "kernels/linear.h"

namespace qv::model {

namespace fs = std::filesystem;
namespace k = qv::kernels;

namespace {

constexpr const char* kTargetModule[kLoraTargets] = {
    "self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp"};
const std::string kPeftPrefix = "base_model.model.";

uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// dst = dropout(src): each element kept with probability 1 - p (scaled by 1 / (1 - p)) by a
// hash of (stream, key, index), so the same call always draws the same mask.
template <typename T>
void apply_dropout(const T* src, T* dst, int64_t n, double p, uint64_t stream, int64_t key) {
  const uint64_t base = splitmix64(stream ^ splitmix64(static_cast<uint64_t>(key)));
  const T keep_scale = static_cast<T>(1.0 / (1.0 - p));
  const uint64_t threshold = static_cast<uint64_t>(p * 16777216.0);  // p in 24-bit steps
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = (splitmix64(base + static_cast<uint64_t>(i)) >> 40) >= threshold;
    dst[i] = keep ? src[i] * keep_scale : T(0);
  }
}

bool dropout_on(double p, int64_t key) {
  return p > 0 && key >= 0;
}

}  // namespace

template <typename T>
void lora_forward(const T* x, const T* A, const T* B, T* y, T* v, int64_t M, int64_t K, int64_t N,
                  int64_t r, double scaling, double dropout, uint64_t stream, int64_t dropout_key) {
  DeviceBuffer<T> dropped;
  const T* in = x;
  if (dropout_on(dropout, dropout_key)) {
    dropped.resize(M * K);
    apply_dropout(x, dropped.data(), M * K, dropout, stream, dropout_key);
    in = dropped.data();
  }
  k::gemm<T>(false, true, M, r, K, static_cast<T>(scaling), in, K, A, K, T(0), v, r);
  k::gemm<T>(false, true, M, N, r, T(1), v, r, B, r, T(1), y, N);
}

template <typename T>
void lora_backward(const T* x, const T* A, const T* B, const T* v, const T* dy, T* dx, T* dA, T* dB,
                   int64_t M, int64_t K, int64_t N, int64_t r, double scaling, double dropout,
                   uint64_t stream, int64_t dropout_key) {
  const bool drop = dropout_on(dropout, dropout_key);
  if (dB) k::gemm<T>(true, false, N, r, M, T(1), dy, N, v, r, T(1), dB, r);
  DeviceBuffer<T> du(M * r);  // d(dropout(x) A^T), the scaling included
  k::gemm<T>(false, false, M, r, N, static_cast<T>(scaling), dy, N, B, r, T(0), du.data(), r);
  DeviceBuffer<T> dropped;
  if (dA) {
    const T* in = x;
    if (drop) {
      dropped.resize(M * K);
      apply_dropout(x, dropped.data(), M * K, dropout, stream, dropout_key);
      in = dropped.data();
    }
    k::gemm<T>(true, false, r, K, M, T(1), du.data(), r, in, K, T(1), dA, K);
  }
  if (!dx) return;
  if (!drop) {
    k::gemm<T>(false, false, M, K, r, T(1), du.data(), r, A, K, T(1), dx, K);
    return;
  }
  // The mask's derivative is the mask: dx += dropout(du A) with the forward's mask.
  DeviceBuffer<T> d_in(M * K), masked(M * K);
  k::gemm<T>(false, false, M, K, r, T(1), du.data(), r, A, K, T(0), d_in.data(), K);
  apply_dropout(d_in.data(), masked.data(), M * K, dropout, stream, dropout_key);
  for (int64_t i = 0; i < M * K; ++i) dx[i] += masked[i];
}

#define QV_INSTANTIATE(T)                                                                        \
  template void lora_forward<T>(const T*, const T*, const T*, T*, T*, int64_t, int64_t, int64_t, \
                                int64_t, double, double, uint64_t, int64_t);                     \
  template void lora_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*,   \
                                 int64_t, int64_t, int64_t, int64_t, double, double, uint64_t,   \
                                 int64_t);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

void dense_forward(ParamStore& s, ParamRef w, const LoraAdapter* lora, const float* x, float* y,
                   int64_t M, int64_t K, int64_t N, LoraActs* acts, int64_t dropout_key) {
  k::linear_forward(x, s.weight(w), static_cast<const float*>(nullptr), y, M, K, N);
  if (!lora) return;
  DeviceBuffer<float> scratch;
  DeviceBuffer<float>& v = acts ? acts->v : scratch;
  v.resize(M * lora->rank);
  lora_forward<float>(x, s.value(lora->a), s.value(lora->b), y, v.data(), M, K, N, lora->rank,
                      lora->scaling, lora->dropout, lora->stream, dropout_key);
}

void dense_backward(ParamStore& s, ParamRef w, const LoraAdapter* lora, const float* x,
                    const LoraActs* acts, const float* dy, float* dx, int64_t M, int64_t K,
                    int64_t N, bool accumulate_dx, int64_t dropout_key) {
  k::linear_backward(x, s.weight(w), dy, dx, s.grad(w), static_cast<float*>(nullptr), M, K, N,
                     accumulate_dx);
  if (!lora) return;
  QV_CHECK(acts && static_cast<int64_t>(acts->v.size()) == M * lora->rank,
           "LoRA backward without the forward's activations");
  lora_backward<float>(x, s.value(lora->a), s.value(lora->b), acts->v.data(), dy, dx,
                       s.grad(lora->a), s.grad(lora->b), M, K, N, lora->rank, lora->scaling,
                       lora->dropout, lora->stream, dropout_key);
}

std::string lora_base_name(int64_t layer, LoraTarget t) {
  const int i = static_cast<int>(t);
  return "model.language_model.layers." + std::to_string(layer) + "." + kTargetModule[i] + "." +
         lora_target_name(static_cast<LoraTarget>(i)) + ".weight";
}

std::string lora_param_name(int64_t layer, LoraTarget t, char which) {
  std::string base = lora_base_name(layer, t);
  base.resize(base.size() - std::string(".weight").size());
  return kPeftPrefix + base + ".lora_" + which + ".weight";
}

bool is_lora_param(const std::string& name) {
  return name.rfind(kPeftPrefix, 0) == 0;
}

LoraParams layout_lora(const ModelConfig& config, const LoraConfig& lora, ParamStore& s) {
  lora.validate();
  LoraParams p;
  if (!lora.enabled()) return p;
  const TextConfig& t = config.text;
  const int64_t H = t.hidden_size, q = t.num_heads * t.head_dim, kv = t.num_kv_heads * t.head_dim,
                I = t.intermediate_size;
  // [out, in] of each target, in LoraTarget order.
  const int64_t shapes[kLoraTargets][2] = {{q, H}, {kv, H}, {kv, H}, {H, q},
                                           {I, H}, {I, H},  {H, I}};
  const float scaling = static_cast<float>(lora.scaling());
  for (int64_t l = 0; l < t.num_layers; ++l) {
    p.layer_units.push_back(s.begin_unit("lora.layers." + std::to_string(l)));
    LoraLayer layer;
    for (const auto& name : lora.target_modules) {
      const LoraTarget tg = lora_target_from_name(name);
      const int i = static_cast<int>(tg);
      LoraAdapter& a = layer.adapters[i];
      a.a = s.add(lora_param_name(l, tg, 'A'), {lora.rank, shapes[i][1]});
      a.b = s.add(lora_param_name(l, tg, 'B'), {shapes[i][0], lora.rank});
      a.rank = lora.rank;
      a.scaling = scaling;
      a.dropout = static_cast<float>(lora.dropout);
      a.stream = splitmix64(lora.seed * kLoraTargets * 1000003ull + l * kLoraTargets + i);
    }
    p.layers.push_back(layer);
  }
  return p;
}

void init_lora(const LoraParams& params, const LoraConfig& lora, ParamStore& s) {
  std::mt19937_64 rng(lora.seed);
  std::vector<float> staging;  // off the CPU: A is drawn here, then copied over
  for (const LoraLayer& layer : params.layers)
    for (const LoraAdapter& a : layer.adapters) {
      if (!a.present()) continue;
      const int64_t in = a.a.numel / a.rank;
      const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(in)));
      std::uniform_real_distribution<float> uniform(-bound, bound);
      const auto n = static_cast<size_t>(a.a.numel);
      float* A = k::host_writable(s.value(a.a), s.device(), n, staging);
      for (size_t i = 0; i < n; ++i) A[i] = uniform(rng);
      k::upload_staged(s.value(a.a), s.device(), staging);
      allocator_for(s.device()).zero(s.value(a.b), static_cast<size_t>(a.b.numel) * sizeof(float));
    }
  s.sync_bf16();
}

void lora_merge_range(const float* A, const float* B, int64_t r, int64_t in, double scaling,
                      int64_t begin, int64_t end, const float* w, float* out) {
  std::vector<double> acc;
  for (int64_t i = begin; i < end;) {
    // The part of row o inside the range: columns [j0, j1).
    const int64_t o = i / in, j0 = i % in, j1 = std::min(in, j0 + (end - i));
    acc.assign(j1 - j0, 0.0);
    for (int64_t k = 0; k < r; ++k) {
      const double bk = B[o * r + k];
      const float* a = A + k * in;
      for (int64_t j = j0; j < j1; ++j) acc[j - j0] += bk * static_cast<double>(a[j]);
    }
    for (int64_t j = j0; j < j1; ++j, ++i)
      out[i - begin] =
          static_cast<float>(static_cast<double>(w[i - begin]) + scaling * acc[j - j0]);
  }
}

namespace {

// Calls fn(A, B, W) for every adapted layer and target module, in that order: the adapter pair
// from `adapters`, the base weight from `base`. `who` names the caller when one is missing.
template <class Fn>
void for_each_adapted(const ModelConfig& config, const LoraConfig& lora, const ParamStore& adapters,
                      const ParamStore& base, const char* who, Fn fn) {
  for (int64_t l = 0; l < config.text.num_layers; ++l)
    for (const auto& name : lora.target_modules) {
      const LoraTarget t = lora_target_from_name(name);
      const ParamEntry* A = adapters.find(lora_param_name(l, t, 'A'));
      const ParamEntry* B = adapters.find(lora_param_name(l, t, 'B'));
      const ParamEntry* W = base.find(lora_base_name(l, t));
      QV_CHECK(A && B && W, who, ": adapter or base weight of layer ", l, " ", name, " missing");
      fn(*A, *B, *W);
    }
}

}  // namespace

void merge_lora(const ModelConfig& config, const LoraConfig& lora, const ParamStore& source,
                ParamStore& target) {
  if (!lora.enabled()) return;
  const double scaling = lora.scaling();
  for_each_adapted(config, lora, source, target, "merge_lora",
                   [&](const ParamEntry& A, const ParamEntry& B, const ParamEntry& W) {
                     // Off the CPU through host copies of the three (on the CPU in place).
                     std::vector<float> a_host, b_host, w_host;
                     const float* a = k::host_readable(source.value(A.ref), source.device(),
                                                       static_cast<size_t>(A.ref.numel), a_host);
                     const float* b = k::host_readable(source.value(B.ref), source.device(),
                                                       static_cast<size_t>(B.ref.numel), b_host);
                     float* w = k::host_writable(target.value(W.ref), target.device(),
                                                 static_cast<size_t>(W.ref.numel), w_host,
                                                 /*keep_contents=*/true);
                     lora_merge_range(a, b, A.shape[0], W.shape[1], scaling, 0, W.ref.numel, w, w);
                     k::upload_staged(target.value(W.ref), target.device(), w_host);
                   });
}

LoraMergedValues::LoraMergedValues(const ModelConfig& config, const LoraConfig& lora,
                                   const ParamStore& store)
    : store_(store), scaling_(lora.enabled() ? lora.scaling() : 0.0) {
  if (!lora.enabled()) return;
  for_each_adapted(config, lora, store, store, "LoraMergedValues",
                   [&](const ParamEntry& A, const ParamEntry& B, const ParamEntry& W) {
                     Target x;
                     x.w = W.ref;
                     x.in = W.shape[1];
                     x.r = A.shape[0];
                     x.a.resize(A.ref.numel);
                     x.b.resize(B.ref.numel);
                     store.read_value(A.ref, x.a.data(), A.ref.numel);
                     store.read_value(B.ref, x.b.data(), B.ref.numel);
                     targets_.push_back(std::move(x));
                   });
  std::sort(targets_.begin(), targets_.end(),
            [](const Target& x, const Target& y) { return x.w.offset < y.w.offset; });
}

void LoraMergedValues::read(int64_t begin, int64_t n, float* out) const {
  store_.read_value({begin, n}, out, n);
  const int64_t end = begin + n;
  auto it = std::upper_bound(targets_.begin(), targets_.end(), begin,
                             [](int64_t v, const Target& t) { return v < t.w.offset + t.w.numel; });
  for (; it != targets_.end() && it->w.offset < end; ++it) {
    const int64_t lo = std::max(begin, it->w.offset);
    const int64_t hi = std::min(end, it->w.offset + it->w.numel);
    float* o = out + (lo - begin);
    lora_merge_range(it->a.data(), it->b.data(), it->r, it->in, scaling_, lo - it->w.offset,
                     hi - it->w.offset, o, o);
  }
}

std::string lora_adapter_config_json(const LoraConfig& lora, const std::string& base_model) {
  // The keys of PEFT's LoraConfig that describe what this system trains, with its defaults for
  // the features it does not use; PEFT writes them sorted, indented by 2 (config.py).
  nlohmann::json j = {{"alpha_pattern", nlohmann::json::object()},
                      {"auto_mapping", nullptr},
                      {"base_model_name_or_path",
                       base_model.empty() ? nlohmann::json(nullptr) : nlohmann::json(base_model)},
                      {"bias", "none"},
                      {"fan_in_fan_out", false},
                      {"inference_mode", true},
                      {"init_lora_weights", true},
                      {"layers_pattern", nullptr},
                      {"layers_to_transform", nullptr},
                      {"lora_alpha", lora.alpha},
                      {"lora_dropout", lora.dropout},
                      {"modules_to_save", nullptr},
                      {"peft_type", "LORA"},
                      {"r", lora.rank},
                      {"rank_pattern", nlohmann::json::object()},
                      {"revision", nullptr},
                      {"target_modules", lora.target_modules},
                      {"task_type", "CAUSAL_LM"},
                      {"use_dora", false},
                      {"use_rslora", false}};
  return j.dump(2) + "\n";
}

LoraConfig read_lora_adapter_config(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(io::read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
  QV_CHECK(j.is_object(), path, ": not a JSON object");
  QV_CHECK(j.value("peft_type", "") == "LORA", path, ": peft_type is not \"LORA\"");
  auto refuse_if = [&](const char* key, bool bad, const char* why) {
    QV_CHECK(!(j.contains(key) && bad), path, ": ", key, " ", why, " is not supported");
  };
  auto truthy = [&](const char* key) { return j.contains(key) && j[key].is_boolean() && j[key]; };
  auto non_empty = [&](const char* key) {
    return j.contains(key) && !j[key].is_null() && !j[key].empty();
  };
  refuse_if("use_dora", truthy("use_dora"), "= true (DoRA)");
  refuse_if("use_rslora", truthy("use_rslora"), "= true (rsLoRA scaling)");
  refuse_if("fan_in_fan_out", truthy("fan_in_fan_out"), "= true");
  refuse_if("rank_pattern", non_empty("rank_pattern"), "(per-module ranks)");
  refuse_if("alpha_pattern", non_empty("alpha_pattern"), "(per-module alphas)");
  refuse_if("layers_to_transform", non_empty("layers_to_transform"), "(a subset of layers)");
  refuse_if("modules_to_save", non_empty("modules_to_save"), "(fully trained modules)");
  refuse_if("bias", j.contains("bias") && j["bias"] != "none", "other than \"none\"");
  QV_CHECK(j.contains("r") && j["r"].is_number_integer(), path, ": r must be an integer");
  QV_CHECK(j.contains("lora_alpha") && j["lora_alpha"].is_number(), path,
           ": lora_alpha must be a number");
  QV_CHECK(j.contains("target_modules") && j["target_modules"].is_array(), path,
           ": target_modules must be a list of module names (a regular expression is not "
           "supported)");
  LoraConfig c;
  c.rank = j["r"].get<int64_t>();
  c.alpha = j["lora_alpha"].get<double>();
  c.dropout = j.value("lora_dropout", 0.0);
  c.target_modules.clear();
  for (const auto& t : j["target_modules"]) {
    QV_CHECK(t.is_string(), path, ": target_modules entries must be strings");
    c.target_modules.push_back(t.get<std::string>());
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  QV_CHECK(c.enabled(), path, ": r must be positive");
  return c;
}

void save_lora_adapter(const std::string& dir, const LoraConfig& lora, const ParamStore& store,
                       const std::string& base_model) {
  fs::create_directories(dir);
  std::vector<io::TensorSource> tensors;
  std::vector<std::vector<float>> host_copies;  // off the CPU (the adapters are small)
  for (const ParamEntry& e : store.entries())
    if (is_lora_param(e.name)) {
      host_copies.emplace_back();
      const float* values = k::host_readable(store.value(e.ref), store.device(),
                                             static_cast<size_t>(e.ref.numel), host_copies.back());
      tensors.push_back({e.name, DType::kF32, e.shape, values, DType::kF32});
    }
  QV_CHECK(!tensors.empty(), "save_lora_adapter: the model has no adapters");
  io::write_safetensors((fs::path(dir) / "adapter_model.safetensors").string(), tensors);
  io::write_file_atomic((fs::path(dir) / "adapter_config.json").string(),
                        lora_adapter_config_json(lora, base_model));
}

void load_lora_tensors(const std::string& dir, ParamStore& store) {
  const std::string path = (fs::path(dir) / "adapter_model.safetensors").string();
  io::SafetensorsFile f(path);
  std::set<std::string> used;
  for (const ParamEntry& e : store.entries()) {
    if (!is_lora_param(e.name)) continue;
    QV_CHECK(f.has(e.name), path, ": adapter tensor '", e.name, "' is missing (expected shape ",
             shape_str(e.shape), ")");
    const io::TensorInfo& info = f.info(e.name);
    QV_CHECK(info.shape == e.shape, path, ": tensor '", e.name, "' has shape ",
             shape_str(info.shape), " but the adapter config gives ", shape_str(e.shape));
    QV_CHECK(info.dtype == DType::kF32 || info.dtype == DType::kBF16 || info.dtype == DType::kF16,
             path, ": tensor '", e.name, "' has dtype ", dtype_name(info.dtype),
             " (expected a float type)");
    Tensor t = f.read(e.name).to(DType::kF32);
    store.write_value(e.ref, t.data<float>(), e.ref.numel);
    used.insert(e.name);
  }
  for (const auto& name : f.names())
    QV_CHECK(used.count(name), path, ": unexpected tensor '", name,
             "' (not an adapter of this model and adapter config)");
  store.sync_bf16();
}

}  // namespace qv::model
