// bench kernels (cli/bench_kernels.h).
#include "cli/bench_kernels.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "cli/device_flag.h"
#include "core/bf16.h"
#include "core/error.h"
#ifdef QWEN3VL_HAS_CUDA
#include "kernels/cuda/attention.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/runtime.h"
#endif

namespace qv::cli {

#ifndef QWEN3VL_HAS_CUDA
int run_bench_kernels(const Args& args) {
  Flags f(args);
  activate_device(parse_device_flag(f.get("device", "cuda")));
  return 1;  // not reached: activate_device throws in a build without CUDA
}
#else
namespace {

namespace gpu = qv::kernels::cuda;

// Mean seconds per call of fn over `reps` calls after one warm-up, the stream drained.
template <typename Fn>
double time_it(int reps, Fn fn) {
  fn();
  gpu::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) fn();
  gpu::synchronize();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

template <typename T>
void fill(gpu::DeviceArray<T>& d, float scale) {
  std::vector<T> h(static_cast<size_t>(d.size()));
  for (size_t i = 0; i < h.size(); ++i) {
    const float v = scale * std::sin(0.37f * static_cast<float>(i % 10007));
    if constexpr (std::is_same_v<T, bf16>)
      h[i] = to_bf16(v);
    else
      h[i] = v;
  }
  d.upload(h.data());
}

}  // namespace

int run_bench_kernels(const Args& args) {
  Flags f(args);
  f.allow_only({"device", "seq-len", "gemm-size"});
  const DeviceChoice d = parse_device_flag(f.get("device", "cuda"));
  QV_CHECK(d.cuda, "bench kernels times the CUDA backend: --device cuda[:N]");
  std::printf("device %s\n", activate_device(d).c_str());
  const int dev = gpu::current_device_index();
  const double peak = gpu::bf16_dense_peak_tflops(dev);
  const int64_t n = f.get_int("gemm-size", 8192);
  const int64_t S = f.get_int("seq-len", 4096);
  std::printf("%s\n", gpu::gemm_describe().c_str());
  auto mfu = [&](double tflops) { return peak > 0 ? 100 * tflops / peak : 0.0; };

  {  // GEMMs
    gpu::DeviceArray<bf16> a(n * n), b(n * n);
    gpu::DeviceArray<float> c(n * n), af(n * n), bf(n * n);
    fill(a, 1), fill(b, 1), fill(af, 1), fill(bf, 1);
    const double flop = 2.0 * n * n * n;
    const double t_bf16 = time_it(10, [&] {
      gpu::gemm_bf16(false, true, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
    });
    const double t_f32 = time_it(3, [&] {
      gpu::gemm<float>(false, true, n, n, n, 1.f, af.data(), n, bf.data(), n, 0.f, c.data(), n);
    });
    std::printf("gemm bf16 %lldx%lldx%lld: %.3f ms, %.1f TFLOP/s (%.1f%% of bf16 peak %.0f)\n",
                (long long)n, (long long)n, (long long)n, t_bf16 * 1e3, flop / t_bf16 / 1e12,
                mfu(flop / t_bf16 / 1e12), peak);
    std::printf("gemm fp32 %lldx%lldx%lld: %.3f ms, %.1f TFLOP/s\n", (long long)n, (long long)n,
                (long long)n, t_f32 * 1e3, flop / t_f32 / 1e12);
  }
  {  // attention, the 2B decoder's shape: 16 heads, 8 kv heads, head_dim 128, one causal document
    const int64_t heads = 16, kv = 8, hd = 128;
    kernels::AttentionDims dims{S, heads, kv, hd, true, 1 / std::sqrt(128.0)};
    gpu::DeviceArray<bf16> q(S * heads * hd), k(S * kv * hd), v(S * kv * hd), o(S * heads * hd),
        dout(S * heads * hd), dq(S * heads * hd), dk(S * kv * hd), dv(S * kv * hd);
    gpu::DeviceArray<float> lse(S * heads);
    fill(q, 1), fill(k, 1), fill(v, 1), fill(dout, 1);
    const std::vector<int64_t> cu = {0, S};
    gpu::DeviceArray<int64_t> dcu(cu.data(), 2);
    const double fwd = time_it(3, [&] {
      gpu::attention_forward(q.data(), k.data(), v.data(), o.data(), lse.data(), dcu.data(), 1,
                             dims);
    });
    const double bwd = time_it(3, [&] {
      gpu::attention_backward(q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(),
                              dq.data(), dk.data(), dv.data(), dcu.data(), 1, dims);
    });
    // Causal: half of the S x S scores; 2 GEMMs forward (4 S^2 hd / 2 per head), 5 backward.
    const double f_flop = 2.0 * S * S * hd * heads, b_flop = 2.5 * f_flop;
    std::printf(
        "attention bf16 seq %lld causal, 16/8 heads, hd 128: forward %.3f ms (%.1f "
        "TFLOP/s), backward %.3f ms (%.1f TFLOP/s)\n",
        (long long)S, fwd * 1e3, f_flop / fwd / 1e12, bwd * 1e3, b_flop / bwd / 1e12);
  }
  const gpu::MemoryStats m = gpu::memory_stats(dev);
  std::printf("%s\n", gpu::format_memory(m).c_str());
  return 0;
}
#endif

}  // namespace qv::cli
