// LoRA (low-rank adapters, as Hugging Face PEFT defines them) on the decoder's dense layers:
// y = x W^T + scaling * (dropout(x) A^T) B^T with A [rank, in], B [out, rank] and scaling =
// alpha / rank. The adapters are ordinary parameters of the ParamStore (one unit per decoder
// layer, fp32, trainable) so the optimizer, clipping, checkpoints and data parallelism treat
// them like any other; the base weights are frozen (and may have bf16 copies).
//
// Names follow PEFT (checked against huggingface/peft at 5d602fd: save_and_load.py's
// get_peft_model_state_dict drops the adapter name, ".default", from the module keys;
// tuners/lora/layer.py for scaling, kaiming_uniform_(A, a=sqrt(5)) and zeros_(B);
// tuners/lora/config.py and config.py for adapter_config.json's keys; utils/constants.py for
// the file names): the saved tensor of the q_proj adapter of layer 0 is
// base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/device_buffer.h"
#include "model/config.h"
#include "model/lora_config.h"
#include "model/params.h"

namespace qv::model {

// One adapter; absent (rank 0) when its projection is not a target.
struct LoraAdapter {
  ParamRef a, b;  // A [rank, in], B [out, rank]
  int64_t rank = 0;
  float scaling = 0, dropout = 0;
  uint64_t stream = 0;  // dropout-mask stream, distinct per adapter and seed
  bool present() const { return rank > 0; }
};

struct LoraLayer {
  std::array<LoraAdapter, kLoraTargets> adapters;
  const LoraAdapter* get(LoraTarget t) const {
    const LoraAdapter& a = adapters[static_cast<int>(t)];
    return a.present() ? &a : nullptr;
  }
};

struct LoraParams {
  std::vector<int> layer_units;  // ParamStore units, one per decoder layer
  std::vector<LoraLayer> layers;
};

// What an adapter keeps from forward for backward: v = scaling * dropout(x) A^T, [M, rank].
struct LoraActs {
  DeviceBuffer<float> v;
};

// dropout_key < 0: no dropout (inference); otherwise the masks are a pure function of the
// adapter's stream, this key and the element's index, so a recomputed forward (activation
// checkpointing) and backward see the same mask.
constexpr int64_t kNoDropout = -1;

// The adapter's arithmetic on plain arrays (float for the model, double for gradient checks).
// Forward: v = scaling * dropout(x) A^T [M, r] (stored), y += v B^T. Backward: dB += dy^T v,
// dA += (scaling * dy B)^T dropout(x), dx += dropout'(scaling * dy B A) (dx accumulated).
template <typename T>
void lora_forward(const T* x, const T* A, const T* B, T* y, T* v, int64_t M, int64_t K, int64_t N,
                  int64_t r, double scaling, double dropout, uint64_t stream, int64_t dropout_key);
template <typename T>
void lora_backward(const T* x, const T* A, const T* B, const T* v, const T* dy, T* dx, T* dA, T* dB,
                   int64_t M, int64_t K, int64_t N, int64_t r, double scaling, double dropout,
                   uint64_t stream, int64_t dropout_key);

// The dense layer y[M, N] = x[M, K] W^T through kernels::linear_forward (bf16 when the store has
// copies) plus the adapter's term when `lora` is non-null (fp32). acts may be null (no backward).
void dense_forward(ParamStore& s, ParamRef w, const LoraAdapter* lora, const float* x, float* y,
                   int64_t M, int64_t K, int64_t N, LoraActs* acts = nullptr,
                   int64_t dropout_key = kNoDropout);
// Backward of dense_forward: dx (overwritten, or added to when accumulate_dx), W's gradient when
// W is not frozen, A's and B's gradients accumulated.
void dense_backward(ParamStore& s, ParamRef w, const LoraAdapter* lora, const float* x,
                    const LoraActs* acts, const float* dy, float* dx, int64_t M, int64_t K,
                    int64_t N, bool accumulate_dx = false, int64_t dropout_key = kNoDropout);

// PEFT's name of a decoder projection's adapter matrix (which: 'A' or 'B').
std::string lora_param_name(int64_t layer, LoraTarget t, char which);
// The base weight the target wraps, e.g. model.language_model.layers.3.mlp.up_proj.weight.
std::string lora_base_name(int64_t layer, LoraTarget t);

// Registers the adapters of every decoder layer in `store` (one unit per layer); call before
// store.allocate().
LoraParams layout_lora(const ModelConfig& config, const LoraConfig& lora, ParamStore& store);
// PEFT's default initialisation: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)),
// B = 0. Deterministic for lora.seed.
void init_lora(const LoraParams& params, const LoraConfig& lora, ParamStore& store);
// Elements [begin, end) of the merged weight W + scaling * B A (W [out, in] flattened row-major,
// A [r, in], B [out, r]) into out[0, end - begin), w holding the same elements of W (out may be
// w). Each element: the products B[o, k] A[k, j] summed in double over k ascending, times
// scaling, added to W in double, rounded to float. A pure function of the element, so a weight
// merged whole (merge_lora) and merged range by range (LoraMergedValues) are the same bits.
void lora_merge_range(const float* A, const float* B, int64_t r, int64_t in, double scaling,
                      int64_t begin, int64_t end, const float* w, float* out);
// W += scaling * B A for every adapter, in `target` (a store with the base layout, e.g. a plain
// model's), reading the adapters from `source`; target's base weights must equal source's.
void merge_lora(const ModelConfig& config, const LoraConfig& lora, const ParamStore& source,
                ParamStore& target);

// The merged model's values read range by range from a store with adapters, without building
// the merged store: what merged_store() holds for each base parameter, element for element.
// The adapters are copied to the host when it is made (they must be present in `store` then:
// gathered under ZeRO-3); base weights are read when asked for, so under ZeRO-3 a rank reads
// only the ranges it owns.
class LoraMergedValues {
 public:
  LoraMergedValues(const ModelConfig& config, const LoraConfig& lora, const ParamStore& store);
  // Flat elements [begin, begin + n) of `store` into out (host memory): the store's values,
  // merged where they belong to an adapted base weight.
  void read(int64_t begin, int64_t n, float* out) const;

 private:
  struct Target {
    ParamRef w;             // the base weight [out, in]
    int64_t in = 0, r = 0;  // its columns, the adapter's rank
    std::vector<float> a, b;
  };
  const ParamStore& store_;
  double scaling_ = 0;
  std::vector<Target> targets_;  // by offset
};

// adapter_config.json's text for `lora` (PEFT's keys, sorted, as PEFT writes them).
std::string lora_adapter_config_json(const LoraConfig& lora, const std::string& base_model);
// Reads adapter_config.json; refuses what this system does not implement (DoRA, rsLoRA, rank or
// alpha patterns, biases, layer subsets, regex targets, modules_to_save) naming the key.
LoraConfig read_lora_adapter_config(const std::string& path);
// The adapter folder as PEFT's save_pretrained writes it: adapter_config.json and
// adapter_model.safetensors (every adapter parameter of `store`, fp32, PEFT's names).
void save_lora_adapter(const std::string& dir, const LoraConfig& lora, const ParamStore& store,
                       const std::string& base_model);
// Reads every adapter parameter of `store` from dir/adapter_model.safetensors. Missing,
// unexpected or mis-shaped tensors are errors naming the tensor.
void load_lora_tensors(const std::string& dir, ParamStore& store);
// True for an adapter parameter's name (PEFT's "base_model.model." prefix).
bool is_lora_param(const std::string& name);

}  // namespace qv::model
