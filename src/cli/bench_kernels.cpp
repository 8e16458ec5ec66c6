// bench kernels (cli/bench_kernels.h): the neutral ops (kernels/<family>.h) timed on a GPU under
// a DeviceScope, with memory from the device's allocator.
#include "cli/bench_kernels.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "cli/device_flag.h"
#include "core/allocator.h"
#include "core/bf16.h"
#include "core/error.h"
#include "kernels/attention.h"
#include "kernels/device.h"
#include "kernels/device_info.h"
#include "kernels/gemm.h"

namespace qv::cli {
namespace {

// n elements of T on the current device, filled from a smooth pattern.
template <typename T>
class Buffer {
 public:
  Buffer(Device d, int64_t n, float scale = 1)
      : d_(d), bytes_(static_cast<size_t>(n) * sizeof(T)), p_(allocator_for(d).allocate(bytes_)) {
    std::vector<T> h(static_cast<size_t>(n));
    for (size_t i = 0; i < h.size(); ++i) {
      const float v = scale * std::sin(0.37f * static_cast<float>(i % 10007));
      if constexpr (std::is_same_v<T, bf16>)
        h[i] = to_bf16(v);
      else
        h[i] = static_cast<T>(v);
    }
    kernels::copy_bytes(p_, d_, h.data(), kCpuDevice, bytes_);
  }
  ~Buffer() { allocator_for(d_).deallocate(p_, bytes_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  T* get() { return static_cast<T*>(p_); }

 private:
  Device d_;
  size_t bytes_;
  void* p_;
};

// Mean seconds per call over `reps` calls after one warm-up. A one-byte copy back to the host
// drains the device's stream before each clock reading.
template <typename Fn>
double time_it(Device d, int reps, Fn fn) {
  Buffer<float> probe(d, 1);
  float sink = 0;
  auto drain = [&] { kernels::copy_bytes(&sink, kCpuDevice, probe.get(), d, sizeof sink); };
  fn();
  drain();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) fn();
  drain();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

}  // namespace

int run_bench_kernels(const Args& args) {
  Flags f(args);
  f.allow_only({"device", "seq-len", "gemm-size"});
  const DeviceChoice choice = parse_device_flag(f.get("device", "cuda"));
  QV_CHECK(!choice.device.is_cpu(), "bench kernels times the CUDA backend: --device cuda[:N]");
  std::string text;
  const Device d = activate_device(choice, &text);
  DeviceScope scope(d);
  std::printf("device %s\n%s\n", text.c_str(), kernels::gemm_description().c_str());
  const double peak = kernels::bf16_dense_peak_tflops(d);
  auto pct = [&](double tflops) { return peak > 0 ? 100 * tflops / peak : 0.0; };
  const int64_t n = f.get_int("gemm-size", 8192);
  const int64_t S = f.get_int("seq-len", 4096);
  QV_CHECK(n > 0 && S > 0, "--gemm-size and --seq-len must be positive");

  {  // GEMMs, the shape of a dense layer's forward (x . w^T)
    Buffer<bf16> a(d, n * n), b(d, n * n);
    Buffer<float> af(d, n * n), bf(d, n * n), c(d, n * n);
    const double flop = 2.0 * n * n * n;
    const double t_bf16 = time_it(d, 10, [&] {
      kernels::gemm_bf16(false, true, n, n, n, 1.f, a.get(), n, b.get(), n, 0.f, c.get(), n);
    });
    const double t_f32 = time_it(d, 3, [&] {
      kernels::gemm<float>(false, true, n, n, n, 1.f, af.get(), n, bf.get(), n, 0.f, c.get(), n);
    });
    std::printf("gemm bf16 %lld^3: %.3f ms, %.1f TFLOP/s (%.1f%% of the bf16 dense peak %.0f)\n",
                static_cast<long long>(n), t_bf16 * 1e3, flop / t_bf16 / 1e12,
                pct(flop / t_bf16 / 1e12), peak);
    std::printf("gemm fp32 %lld^3: %.3f ms, %.1f TFLOP/s\n", static_cast<long long>(n), t_f32 * 1e3,
                flop / t_f32 / 1e12);
  }
  // Attention, the 2B decoder's shape: 16 query heads, 8 kv heads, head_dim 128, causal; fp32 on
  // CUDA cores, then mixed precision (bf16 products on tensor cores, as training in bf16 runs it).
  for (const bool bf16_products : {false, true}) {
    const int64_t heads = 16, kv = 8, hd = 128;
    kernels::AttentionDims dims{S, heads, kv, hd, true, 1 / std::sqrt(128.0)};
    dims.bf16_products = bf16_products;
    Buffer<float> q(d, S * heads * hd), k(d, S * kv * hd), v(d, S * kv * hd), o(d, S * heads * hd),
        lse(d, S * heads), dout(d, S * heads * hd), dq(d, S * heads * hd), dk(d, S * kv * hd),
        dv(d, S * kv * hd);
    Buffer<int64_t> cu(d, 2);
    const int64_t cu_h[2] = {0, S};
    kernels::copy_bytes(cu.get(), d, cu_h, kCpuDevice, sizeof cu_h);
    const double fwd = time_it(d, 3, [&] {
      kernels::attention_forward<float>(q.get(), k.get(), v.get(), o.get(), lse.get(), cu.get(), 1,
                                        dims);
    });
    const double bwd = time_it(d, 2, [&] {
      kernels::attention_backward<float>(q.get(), k.get(), v.get(), o.get(), lse.get(), dout.get(),
                                         dq.get(), dk.get(), dv.get(), cu.get(), 1, dims);
    });
    // Causal: half of the S x S scores; forward 2 products of 2 S^2 hd / 2 per head, backward 2.5x.
    const double f_flop = 2.0 * S * S * hd * heads, b_flop = 2.5 * f_flop;
    std::printf(
        "attention %s seq %lld causal, 16/8 heads, hd 128: forward %.2f ms (%.1f "
        "TFLOP/s), backward %.2f ms (%.1f TFLOP/s)\n",
        bf16_products ? "bf16 products (tensor cores)" : "fp32 (CUDA cores)",
        static_cast<long long>(S), fwd * 1e3, f_flop / fwd / 1e12, bwd * 1e3, b_flop / bwd / 1e12);
  }
  std::printf("%s\n", kernels::format_device_memory(d).c_str());
  return 0;
}

}  // namespace qv::cli
