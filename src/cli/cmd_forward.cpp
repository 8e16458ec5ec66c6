// qwen3vl forward: run the model on a batch from a safetensors file and write every output
// (logits, loss, positions, vision features, per-layer states and, with --backward, gradients)
// under the Hugging Face fixture names.
#include <chrono>
#include <cstdio>

#include "cli/command.h"
#include "cli/device_flag.h"
#include "core/device.h"
#include "io/safetensors.h"
#include "kernels/device.h"
#include "model/inputs_io.h"
#include "model/qwen3vl.h"

namespace qv::cli {
namespace {

int run_forward(const Args& args) {
  Flags f(args, {"backward", "no-record"});
  f.allow_only({"model", "inputs", "out", "backward", "no-record", "device"});
  const DeviceChoice device = parse_device_flag(f.get("device", "cpu"));
  // The model is made and run on the device; what is printed and written comes back to the
  // host through explicit copies (the logits and intermediate tensors by the model, the
  // gradients here).
  const DeviceScope on_device(activate_device(device));
  const std::string dir = f.require("model");
  const auto t0 = std::chrono::steady_clock::now();
  auto model = model::Qwen3VLModel::from_pretrained(dir);
  const model::ModelInputs inputs = model::load_inputs(f.require("inputs"));
  model::ForwardOptions opt;
  opt.want_logits = true;
  opt.record = !f.has("no-record");
  opt.backward = f.has("backward");
  if (opt.backward) model->store().zero_grads();
  const auto t1 = std::chrono::steady_clock::now();
  model::ForwardResult r = model->forward(inputs, opt);
  const auto t2 = std::chrono::steady_clock::now();
  io::TensorMap out = std::move(r.recorded);
  out["logits"] = r.logits;
  if (opt.backward) {
    model->backward();
    for (const model::ParamEntry& e : model->store().entries()) {
      Tensor g(DType::kF32, e.shape);
      kernels::copy_bytes(g.raw(), kCpuDevice, model->store().grads().data() + e.ref.offset,
                          model->device(), g.nbytes());
      out["grad." + e.name] = g;
    }
  }
  const auto t3 = std::chrono::steady_clock::now();
  if (f.has("out")) io::save_safetensors(f.get("out"), out);
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  std::printf("loss %.7f over %lld tokens | load %.1f ms, forward %.1f ms, backward %.1f ms\n",
              r.loss, static_cast<long long>(r.kept_tokens), ms(t0, t1), ms(t1, t2),
              opt.backward ? ms(t2, t3) : 0.0);
  return 0;
}

const Registration kRegistration({"forward",
                                  "run the model on a batch (--model DIR --inputs IN.safetensors "
                                  "--out OUT.safetensors [--backward])",
                                  run_forward});

}  // namespace
}  // namespace qv::cli
