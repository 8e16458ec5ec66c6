// The golden comparison against Hugging Face transformers' own Qwen3-VL outputs
// (tests/fixtures/hf-tiny-*): the fixture's model and inputs, forward (logits, loss, every
// recorded intermediate tensor) and backward (every parameter's gradient), each compared with
// expected.safetensors. Runs on the calling thread's current device (tests/test_golden.cpp on the
// CPU, tests/test_cuda_model.cpp on a GPU): results come back through explicit copies.
//
// Tolerances: forward tensors 2e-5 absolute + 2e-5 relative, gradients 3e-6 + 1e-5 relative,
// the loss 1e-5 absolute (float32 against PyTorch's float32, summation order only).
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "io/safetensors.h"
#include "kernels/device.h"
#include "model/inputs_io.h"
#include "model/qwen3vl.h"

namespace qv::testing {

// The fixtures folder: $QWEN3VL_SOURCE_DIR/tests/fixtures/ when set (scripts/gpu_check.sh runs a
// bundled binary on another machine, where the build's source path does not exist), else the
// build's.
inline std::string golden_fixtures() {
  const char* env = std::getenv("QWEN3VL_SOURCE_DIR");
  return std::string(env && *env ? env : QWEN3VL_SOURCE_DIR) + "/tests/fixtures/";
}

struct Worst {
  double abs_err = 0;
  std::string where;
};

// Max |a - b| over a float tensor pair, with an atol + rtol * |b| budget per element.
inline void expect_close(const Tensor& got, const Tensor& want, double atol, double rtol,
                         const std::string& name, Worst& worst) {
  ASSERT_TRUE(got.defined()) << name << " was not produced";
  ASSERT_EQ(got.shape(), want.shape()) << name;
  const Tensor g = got.to(DType::kF64), w = want.to(DType::kF64);
  int64_t bad = 0;
  double max_err = 0;
  for (int64_t i = 0; i < g.numel(); ++i) {
    const double a = g.data<double>()[i], b = w.data<double>()[i];
    const double err = std::fabs(a - b);
    max_err = std::max(max_err, err);
    if (!(err <= atol + rtol * std::fabs(b))) ++bad;
  }
  if (max_err > worst.abs_err) worst = {max_err, name};
  EXPECT_EQ(bad, 0) << name << ": " << bad << " of " << g.numel()
                    << " elements outside tolerance; max |err| = " << max_err;
}

inline void expect_equal_ints(const Tensor& got, const Tensor& want, const std::string& name) {
  ASSERT_TRUE(got.defined()) << name << " was not produced";
  ASSERT_EQ(got.shape(), want.shape()) << name;
  const Tensor g = got.to(DType::kI64), w = want.to(DType::kI64);
  for (int64_t i = 0; i < g.numel(); ++i)
    ASSERT_EQ(g.data<int64_t>()[i], w.data<int64_t>()[i]) << name << " at flat index " << i;
}

// The fixture's forward + backward on the current device, compared with HF's.
inline void run_golden(const std::string& fixture) {
  const std::string dir = golden_fixtures() + fixture;
  auto model = model::Qwen3VLModel::from_pretrained(dir);
  const model::ModelInputs inputs = model::load_inputs(dir + "/inputs.safetensors");
  const io::TensorMap expected = io::load_safetensors(dir + "/expected.safetensors");
  model::ForwardOptions opt;
  opt.want_logits = true;
  opt.record = true;
  opt.backward = true;
  model->store().zero_grads();
  model::ForwardResult r = model->forward(inputs, opt);
  model->backward();
  r.recorded["logits"] = r.logits;

  Worst forward_worst, grad_worst;
  int compared = 0;
  for (const auto& [name, want] : expected) {
    if (name.rfind("grad.", 0) == 0) {
      const model::ParamEntry* e = model->store().find(name.substr(5));
      ASSERT_NE(e, nullptr) << "no parameter for " << name;
      Tensor g(DType::kF32, e->shape);
      kernels::copy_bytes(g.raw(), kCpuDevice, model->store().grads().data() + e->ref.offset,
                          model->device(), g.nbytes());
      expect_close(g, want, 3e-6, 1e-5, name, grad_worst);
    } else if (want.dtype() == DType::kI64) {
      expect_equal_ints(r.recorded[name], want, name);
    } else if (name == "loss") {
      const double got = r.loss, w = want.data<float>()[0];
      EXPECT_NEAR(got, w, 1e-5) << "loss";
      if (std::fabs(got - w) > forward_worst.abs_err) forward_worst = {std::fabs(got - w), "loss"};
    } else {
      expect_close(r.recorded[name], want, 2e-5, 2e-5, name, forward_worst);
    }
    ++compared;
  }
  std::printf(
      "[golden %s] %d tensors compared; worst forward |err| %.3g (%s), worst grad |err| "
      "%.3g (%s)\n",
      fixture.c_str(), compared, forward_worst.abs_err, forward_worst.where.c_str(),
      grad_worst.abs_err, grad_worst.where.c_str());
}

}  // namespace qv::testing
