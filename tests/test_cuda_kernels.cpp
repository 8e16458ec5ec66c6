// Every CUDA op against its CPU op on the same inputs (kernels/cuda/ vs kernels/cpu/).
// Tolerances, relative to the largest |value| of the CPU result (testing::rel_err):
//  - float: 1e-5 (the bound). Differences come from summation order (float partial sums
//    on the GPU where the CPU sums rows in double) and from the device's expf/tanhf/erff (within
//    2 ulp); both are orders of magnitude below 1e-5 at these sizes.
//  - bf16 storage: the GPU op computes in float and rounds its output to bf16 once, so it is
//    held to 2^-8 (one bf16 rounding, core/bf16.h) of the CPU float op on the same (bf16-exact)
//    inputs, plus the float bound.
//  - bf16 GEMMs: products of bf16 values are exact in float on both sides; the sums differ in
//    order and, on tensor cores, in intermediate alignment: 1e-4.
//  - fused AdamW: bit-identical to train::AdamW (same roundings, no FMA).
// Without a GPU every test here prints "skipped: no CUDA device".
#include <gtest/gtest.h>

#include "cuda_test_utils.h"

#ifndef QWEN3VL_HAS_CUDA
TEST(CudaKernels, NotBuilt) {
  GTEST_SKIP() << "skipped: this build has no CUDA backend";
}
#else
#include <cmath>
#include <cstring>

#include "core/allocator.h"
#include "core/bf16.h"
#include "core/device.h"
#include "core/error.h"
#include "kernel_test_utils.h"
#include "kernels/cpu/activations.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/moe.h"
#include "kernels/cpu/norms.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/rows.h"
#include "kernels/cuda/activations.h"
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_tc.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/norms.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/rows.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device.h"
#include "kernels/linear.h"
#include "kernels/moe.h"
#include "kernels/norms.h"
#include "train/adamw.h"

namespace qv {
namespace {

namespace cpu = qv::kernels::cpu;  // the CPU op set
namespace gpu = qv::kernels::cuda;
using testing::cast_vector;
using testing::random_vector;
using testing::to_device;
using testing::to_host;

constexpr double kF32 = 1e-5;
constexpr double kBf16Round = 1.0 / 256;

std::vector<float> rand_f(size_t n, uint64_t seed, double lo = -1, double hi = 1) {
  return cast_vector<float>(random_vector(n, seed, lo, hi));
}
// Values exactly representable in bf16, as float.
std::vector<float> bf16_exact(std::vector<float> v) {
  for (float& x : v) x = to_float(to_bf16(x));
  return v;
}
std::vector<bf16> to_b(const std::vector<float>& v) {
  std::vector<bf16> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = to_bf16(v[i]);
  return b;
}
std::vector<float> from_b(const std::vector<bf16>& b) {
  std::vector<float> v(b.size());
  for (size_t i = 0; i < b.size(); ++i) v[i] = to_float(b[i]);
  return v;
}

// ---- runtime ----

TEST(CudaRuntime, AllocatorCountsAllocatedReservedAndPeak) {
  QV_REQUIRE_CUDA();
  const int dev = gpu::current_device_index();
  const gpu::MemoryStats before = gpu::memory_stats(dev);
  {
    gpu::DeviceArray<float> a(1 << 20);  // 4 MiB: a 2 MiB multiple
    const gpu::MemoryStats during = gpu::memory_stats(dev);
    EXPECT_EQ(during.allocated - before.allocated, 4 << 20);
    EXPECT_GE(during.peak, during.allocated);
    EXPECT_GE(during.reserved, during.allocated);
  }
  const gpu::MemoryStats after = gpu::memory_stats(dev);
  EXPECT_EQ(after.allocated, before.allocated);
  EXPECT_GE(after.reserved, after.allocated + (4 << 20));  // the block stays cached
  gpu::DeviceArray<float> again(1 << 20);                  // and is reused
  EXPECT_EQ(gpu::memory_stats(dev).reserved, after.reserved);
  EXPECT_NE(gpu::format_memory(after).find("reserved"), std::string::npos);
}

TEST(CudaRuntime, CopiesRoundTrip) {
  QV_REQUIRE_CUDA();
  const std::vector<float> h = rand_f(1000, 1);
  gpu::DeviceArray<float> d = to_device(h), e(1000);
  gpu::copy_on_device(e.data(), d.data(), e.bytes());
  EXPECT_EQ(to_host(e), h);
  float* pinned = static_cast<float*>(gpu::allocate_pinned(e.bytes()));
  std::memcpy(pinned, h.data(), e.bytes());
  gpu::fill_zero(e.data(), e.bytes());
  gpu::copy_to_device_async(e.data(), pinned, e.bytes());
  gpu::synchronize();
  gpu::free_pinned(pinned);
  EXPECT_EQ(to_host(e), h);
}

TEST(CudaRuntime, BatchUploaderCopiesInOrderAndReusesSlots) {
  QV_REQUIRE_CUDA();
  gpu::BatchUploader up;
  std::vector<gpu::DeviceArray<float> > dst;
  std::vector<std::vector<float> > want;
  const int n = 2 * gpu::BatchUploader::kSlots + 1;  // every slot reused, growing sizes
  for (int i = 0; i < n; ++i) {
    std::vector<float> h = rand_f(1000 * (i + 1), 100 + i);
    dst.emplace_back(static_cast<int64_t>(h.size()));
    up.upload(dst.back().data(), h.data(), dst.back().bytes());
    std::fill(h.begin(), h.end(), 0.f);  // the host buffer is free once upload() returns
    want.push_back(rand_f(1000 * (i + 1), 100 + i));
  }
  for (int i = 0; i < n; ++i) EXPECT_EQ(to_host(dst[i]), want[i]) << i;
}

// The seam end to end: memory from the registered CUDA allocator, copies through
// kernels::copy_bytes, and a neutral op (kernels/norms.h) under a DeviceScope lands on the GPU.
TEST(CudaRuntime, NeutralOpsDispatchToCudaUnderADeviceScope) {
  QV_REQUIRE_CUDA();
  const Device gpu0{DeviceKind::kCuda, 0};
  const int64_t rows = 8, D = 64;
  const std::vector<float> x = rand_f(rows * D, 40), w = rand_f(D, 41, 0.5, 1.5);
  std::vector<float> want(rows * D), rstd(rows);
  cpu::rmsnorm_forward(x.data(), w.data(), want.data(), rstd.data(), rows, D, 1e-6f);
  DeviceScope scope(gpu0);
  Allocator& a = allocator_for(gpu0);
  EXPECT_EQ(a.device().kind, DeviceKind::kCuda);
  const size_t xb = x.size() * sizeof(float), wb = w.size() * sizeof(float);
  float* dx = static_cast<float*>(a.allocate(xb));
  float* dw = static_cast<float*>(a.allocate(wb));
  float* dy = static_cast<float*>(a.allocate(xb));
  float* dr = static_cast<float*>(a.allocate(rows * sizeof(float)));
  kernels::copy_bytes(dx, gpu0, x.data(), kCpuDevice, xb);
  kernels::copy_bytes(dw, gpu0, w.data(), kCpuDevice, wb);
  kernels::rmsnorm_forward<float>(dx, dw, dy, dr, rows, D, 1e-6f);
  std::vector<float> got(rows * D);
  kernels::copy_bytes(got.data(), kCpuDevice, dy, gpu0, xb);
  QV_EXPECT_REL(got, want, kF32);
  for (void* p : {static_cast<void*>(dx), static_cast<void*>(dw), static_cast<void*>(dy),
                  static_cast<void*>(dr)})
    a.deallocate(p, 0);
}

// ---- activations, rope, embedding ----

TEST(CudaKernels, ActivationsMatchCpuInFloatAndBf16) {
  QV_REQUIRE_CUDA();
  const int64_t n = 10007;  // not a multiple of the block size
  const std::vector<float> a = bf16_exact(rand_f(n, 2, -4, 4)), b = bf16_exact(rand_f(n, 3)),
                           g = bf16_exact(rand_f(n, 4));
  auto check = [&](auto cpu_fn, auto gpu_fn, auto gpu_fn_b16, const char* name) {
    SCOPED_TRACE(name);
    std::vector<float> want(n);
    cpu_fn(a.data(), b.data(), want.data());
    auto da = to_device(a), db = to_device(b);
    gpu::DeviceArray<float> out(n);
    gpu_fn(da.data(), db.data(), out.data());
    QV_EXPECT_REL(to_host(out), want, kF32);
    auto ba = to_device(to_b(a)), bb = to_device(to_b(b));
    gpu::DeviceArray<bf16> outb(n);
    gpu_fn_b16(ba.data(), bb.data(), outb.data());
    QV_EXPECT_REL(from_b(to_host(outb)), want, kBf16Round + kF32);
  };
  check([&](const float* x, const float* y, float* o) { cpu::swiglu_forward(x, y, o, n); },
        [&](const float* x, const float* y, float* o) { gpu::swiglu_forward(x, y, o, n); },
        [&](const bf16* x, const bf16* y, bf16* o) { gpu::swiglu_forward(x, y, o, n); }, "swiglu");
  check([&](const float* x, const float*, float* o) { cpu::gelu_tanh_forward(x, o, n); },
        [&](const float* x, const float*, float* o) { gpu::gelu_tanh_forward(x, o, n); },
        [&](const bf16* x, const bf16*, bf16* o) { gpu::gelu_tanh_forward(x, o, n); }, "gelu_tanh");
  check([&](const float* x, const float*, float* o) { cpu::gelu_erf_forward(x, o, n); },
        [&](const float* x, const float*, float* o) { gpu::gelu_erf_forward(x, o, n); },
        [&](const bf16* x, const bf16*, bf16* o) { gpu::gelu_erf_forward(x, o, n); }, "gelu_erf");
  check([&](const float* x, const float* y, float* o) { cpu::gelu_tanh_backward(x, y, o, n); },
        [&](const float* x, const float* y, float* o) { gpu::gelu_tanh_backward(x, y, o, n); },
        [&](const bf16* x, const bf16* y, bf16* o) { gpu::gelu_tanh_backward(x, y, o, n); },
        "gelu_tanh_backward");
  check([&](const float* x, const float* y, float* o) { cpu::gelu_erf_backward(x, y, o, n); },
        [&](const float* x, const float* y, float* o) { gpu::gelu_erf_backward(x, y, o, n); },
        [&](const bf16* x, const bf16* y, bf16* o) { gpu::gelu_erf_backward(x, y, o, n); },
        "gelu_erf_backward");
  check(
      [&](const float* x, const float* y, float* o) {
        std::copy_n(x, n, o);
        cpu::add_inplace(o, y, n);
      },
      [&](const float* x, const float* y, float* o) {
        gpu::copy_on_device(o, x, n * 4);
        gpu::add_inplace(o, y, n);
      },
      [&](const bf16* x, const bf16* y, bf16* o) {
        gpu::copy_on_device(o, x, n * 2);
        gpu::add_inplace(o, y, n);
      },
      "add_inplace");
  // SwiGLU backward: two outputs.
  std::vector<float> dg(n), du(n);
  cpu::swiglu_backward(a.data(), b.data(), g.data(), dg.data(), du.data(), n);
  auto da = to_device(a), db = to_device(b), dgo = to_device(g);
  gpu::DeviceArray<float> odg(n), odu(n);
  gpu::swiglu_backward(da.data(), db.data(), dgo.data(), odg.data(), odu.data(), n);
  QV_EXPECT_REL(to_host(odg), dg, kF32);
  QV_EXPECT_REL(to_host(odu), du, kF32);
}

TEST(CudaKernels, RopeForwardBackwardMatchCpuAndWorkInPlace) {
  QV_REQUIRE_CUDA();
  const int64_t rows = 37, heads = 3, hd = 128;  // MRoPE / 2-D vision tables are [rows, hd]
  const std::vector<float> x = rand_f(rows * heads * hd, 5);
  std::vector<float> cos(rows * hd), sin(rows * hd);
  for (int64_t i = 0; i < rows * hd; ++i)
    cos[i] = std::cos(0.01f * i), sin[i] = std::sin(0.01f * i);
  std::vector<float> y(x.size()), dx(x.size());
  cpu::rope_forward(x.data(), cos.data(), sin.data(), y.data(), rows, heads, hd);
  cpu::rope_backward(x.data(), cos.data(), sin.data(), dx.data(), rows, heads, hd);
  auto dxv = to_device(x), dc = to_device(cos), ds = to_device(sin);
  gpu::rope_forward(dxv.data(), dc.data(), ds.data(), dxv.data(), rows, heads, hd);  // in place
  QV_EXPECT_REL(to_host(dxv), y, kF32);
  auto dyv = to_device(x);
  gpu::rope_backward(dyv.data(), dc.data(), ds.data(), dyv.data(), rows, heads, hd);
  QV_EXPECT_REL(to_host(dyv), dx, kF32);
}

TEST(CudaKernels, EmbeddingGatherScatterMatchCpuAndBadIdsAreNamed) {
  QV_REQUIRE_CUDA();
  const int64_t vocab = 50, D = 300, n = 64;
  const std::vector<float> table = rand_f(vocab * D, 6), dout = rand_f(n * D, 7);
  std::vector<int64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = (i * 7) % vocab;  // repeats: the backward must add
  std::vector<uint8_t> skip(n, 0);
  skip[3] = 1;
  std::vector<float> out(n * D), dtable(vocab * D, 0.5f);
  cpu::embedding_forward(ids.data(), table.data(), out.data(), n, vocab, D);
  cpu::embedding_backward(ids.data(), dout.data(), dtable.data(), n, D, skip.data());
  auto did = to_device(ids);
  auto dt = to_device(table), ddo = to_device(dout);
  auto dskip = to_device(skip);
  gpu::DeviceArray<float> o(n * D);
  auto dtab = to_device(std::vector<float>(vocab * D, 0.5f));
  gpu::embedding_forward(did.data(), dt.data(), o.data(), n, vocab, D);
  gpu::embedding_backward(did.data(), ddo.data(), dtab.data(), n, D, dskip.data());
  EXPECT_EQ(to_host(o), out);  // a copy: exact
  QV_EXPECT_REL(to_host(dtab), dtable, kF32);

  ids[5] = vocab;  // out of range: the error names the id and the position
  auto bad = to_device(ids);
  try {
    gpu::embedding_forward(bad.data(), dt.data(), o.data(), n, vocab, D);
    FAIL() << "no error for an id outside the vocabulary";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token id 50 at position 5"), std::string::npos)
        << e.what();
  }

  // Weighted gathers (bilinear position tables): 4 taps.
  const int64_t taps = 4;
  std::vector<int64_t> index(n * taps);
  for (size_t i = 0; i < index.size(); ++i) index[i] = (i * 13) % vocab;
  const std::vector<float> w = rand_f(n * taps, 8, 0, 1);
  std::vector<float> wg(n * D), wdt(vocab * D, 0.f);
  cpu::weighted_gather_forward(index.data(), w.data(), table.data(), wg.data(), n, taps, D);
  cpu::weighted_gather_backward(index.data(), w.data(), dout.data(), wdt.data(), n, taps, D);
  auto dix = to_device(index);
  auto dw = to_device(w);
  auto dwdt = to_device(std::vector<float>(vocab * D, 0.f));
  gpu::weighted_gather_forward(dix.data(), dw.data(), dt.data(), o.data(), n, taps, D);
  gpu::weighted_gather_backward(dix.data(), dw.data(), ddo.data(), dwdt.data(), n, taps, D);
  QV_EXPECT_REL(to_host(o), wg, kF32);
  QV_EXPECT_REL(to_host(dwdt), wdt, kF32);

  // Row moves (kernels/rows.h): the vision scatter into placeholder rows, its gather backward,
  // a row add, and a column block; each equals the CPU op exactly.
  std::vector<int64_t> rows_at = {9, 2, 40, 17};
  auto dra = to_device(rows_at);
  auto dst = to_device(std::vector<float>(vocab * D, 0.f));
  gpu::copy_rows(dt.data(), nullptr, dst.data(), dra.data(), 4, D);
  gpu::DeviceArray<float> back(4 * D);
  gpu::copy_rows(dst.data(), dra.data(), back.data(), nullptr, 4, D);
  gpu::add_rows(dt.data(), nullptr, dst.data(), dra.data(), 4, D);
  std::vector<float> want(vocab * D, 0.f);
  cpu::copy_rows(table.data(), nullptr, want.data(), rows_at.data(), 4, D);
  cpu::add_rows(table.data(), nullptr, want.data(), rows_at.data(), 4, D);
  EXPECT_EQ(to_host(dst), want);
  const std::vector<float> back_h = to_host(back);
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < D; ++j) ASSERT_EQ(back_h[i * D + j], table[i * D + j]);
  gpu::DeviceArray<float> cols(4 * 3);
  gpu::copy_columns(dt.data() + 1, D, cols.data(), 3, 4, 3);
  std::vector<float> cols_want(4 * 3);
  cpu::copy_columns(table.data() + 1, D, cols_want.data(), 3, 4, 3);
  EXPECT_EQ(to_host(cols), cols_want);
}

// ---- norms ----

TEST(CudaKernels, NormsForwardBackwardMatchCpu) {
  QV_REQUIRE_CUDA();
  const int64_t rows = 300, D = 1000;  // 300 rows: several row chunks for the weight gradients
  const std::vector<float> x = rand_f(rows * D, 9, -3, 3), w = rand_f(D, 10, 0.5, 1.5),
                           b = rand_f(D, 11), dy = rand_f(rows * D, 12);
  const float eps = 1e-6f;
  // RMSNorm
  std::vector<float> y(rows * D), rstd(rows), dx(rows * D), dw(D, 0.25f);
  cpu::rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, D, eps);
  cpu::rmsnorm_backward(x.data(), w.data(), rstd.data(), dy.data(), dx.data(), dw.data(), rows, D);
  auto dxv = to_device(x), dwv = to_device(w), dbv = to_device(b), ddy = to_device(dy);
  gpu::DeviceArray<float> gy(rows * D), grs(rows), gdx(rows * D);
  auto gdw = to_device(std::vector<float>(D, 0.25f));
  gpu::rmsnorm_forward(dxv.data(), dwv.data(), gy.data(), grs.data(), rows, D, eps);
  gpu::rmsnorm_backward(dxv.data(), dwv.data(), grs.data(), ddy.data(), gdx.data(), gdw.data(),
                        rows, D);
  QV_EXPECT_REL(to_host(gy), y, kF32);
  QV_EXPECT_REL(to_host(grs), rstd, kF32);
  QV_EXPECT_REL(to_host(gdx), dx, kF32);
  QV_EXPECT_REL(to_host(gdw), dw, kF32);
  // LayerNorm (rows with a large mean: the two-pass variance must hold)
  std::vector<float> xs = x;
  for (float& v : xs) v += 100.f;
  auto dxs = to_device(xs);
  std::vector<float> ly(rows * D), mean(rows), lrs(rows), ldx(rows * D), ldw(D, 0.f), ldb(D, 0.f);
  cpu::layernorm_forward(xs.data(), w.data(), b.data(), ly.data(), mean.data(), lrs.data(), rows, D,
                         eps);
  cpu::layernorm_backward(xs.data(), w.data(), mean.data(), lrs.data(), dy.data(), ldx.data(),
                          ldw.data(), ldb.data(), rows, D);
  gpu::DeviceArray<float> gly(rows * D), gmean(rows), glrs(rows), gldx(rows * D);
  auto gldw = to_device(std::vector<float>(D, 0.f)), gldb = to_device(std::vector<float>(D, 0.f));
  gpu::layernorm_forward(dxs.data(), dwv.data(), dbv.data(), gly.data(), gmean.data(), glrs.data(),
                         rows, D, eps);
  gpu::layernorm_backward(dxs.data(), dwv.data(), gmean.data(), glrs.data(), ddy.data(),
                          gldx.data(), gldw.data(), gldb.data(), rows, D);
  QV_EXPECT_REL(to_host(gly), ly, kF32);
  QV_EXPECT_REL(to_host(gmean), mean, kF32);
  QV_EXPECT_REL(to_host(glrs), lrs, kF32);
  QV_EXPECT_REL(to_host(gldx), ldx, kF32);
  QV_EXPECT_REL(to_host(gldw), ldw, kF32);
  QV_EXPECT_REL(to_host(gldb), ldb, kF32);
}

// ---- cross-entropy ----

TEST(CudaKernels, CrossEntropyMatchesCpuWithIgnoredRowsAndInPlaceGradient) {
  QV_REQUIRE_CUDA();
  const int64_t rows = 17, V = 5003;
  const std::vector<float> logits = rand_f(rows * V, 13, -8, 8);
  std::vector<int64_t> targets(rows);
  for (int64_t r = 0; r < rows; ++r)
    targets[r] = r % 5 == 2 ? kernels::kIgnoreIndex : (r * 977) % V;
  std::vector<float> d(rows * V);
  const float scale = 1.f / 13;
  const auto want = cpu::cross_entropy(logits.data(), targets.data(), d.data(), rows, V, scale);
  auto dl = to_device(logits);
  auto dt = to_device(targets);
  const auto got = gpu::cross_entropy(dl.data(), dt.data(), dl.data(), rows, V, scale);  // aliased
  EXPECT_EQ(got.kept, want.kept);
  EXPECT_NEAR(got.loss_sum, want.loss_sum, kF32 * std::fabs(want.loss_sum));
  QV_EXPECT_REL(to_host(dl), d, kF32);
  // Loss only, and a bad target named.
  auto dl2 = to_device(logits);
  const auto loss_only = gpu::cross_entropy<float>(dl2.data(), dt.data(), nullptr, rows, V, 1.f);
  EXPECT_NEAR(loss_only.loss_sum, want.loss_sum, kF32 * std::fabs(want.loss_sum));
  targets[4] = V;
  auto bad = to_device(targets);
  EXPECT_THROW(gpu::cross_entropy<float>(dl2.data(), bad.data(), nullptr, rows, V, 1.f), Error);
}

// The bf16-gradient form: the CUDA float gradient rounded to bf16 (the same kernel arithmetic),
// so within one bf16 rounding (2^-8 relative) plus the float bound of the CPU gradient.
TEST(CudaKernels, CrossEntropyBf16GradientMatchesCpu) {
  QV_REQUIRE_CUDA();
  const int64_t rows = 9, V = 4099;
  const std::vector<float> logits = rand_f(rows * V, 23, -8, 8);
  std::vector<int64_t> targets(rows);
  for (int64_t r = 0; r < rows; ++r) targets[r] = r == 4 ? kernels::kIgnoreIndex : (r * 577) % V;
  std::vector<float> scratch = logits;
  std::vector<bf16> want(rows * V);
  const auto w =
      cpu::cross_entropy(scratch.data(), targets.data(), want.data(), V, rows, V, 1.f / 9);
  auto dl = to_device(logits);
  auto dt = to_device(targets);
  gpu::DeviceArray<bf16> dd(rows * V);
  const auto got = gpu::cross_entropy(dl.data(), dt.data(), dd.data(), V, rows, V, 1.f / 9);
  EXPECT_EQ(got.kept, w.kept);
  EXPECT_NEAR(got.loss_sum, w.loss_sum, kF32 * std::fabs(w.loss_sum));
  std::vector<bf16> host(rows * V);
  dd.download(host.data());
  std::vector<float> got_f(rows * V), want_f(rows * V);
  to_float(host.data(), got_f.data(), rows * V);
  to_float(want.data(), want_f.data(), rows * V);
  QV_EXPECT_REL(got_f, want_f, std::ldexp(1.0, -8) + kF32);
  // In place: each row's bf16 gradient in the first half of its own float row (ld = 2 V).
  auto in_place = to_device(logits);
  bf16* over = reinterpret_cast<bf16*>(in_place.data());
  const auto got2 = gpu::cross_entropy(in_place.data(), dt.data(), over, 2 * V, rows, V, 1.f / 9);
  EXPECT_EQ(got2.loss_sum, got.loss_sum);
  std::vector<float> raw(rows * V);
  in_place.download(raw.data());
  const bf16* raw_b = reinterpret_cast<const bf16*>(raw.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < V; ++j) ASSERT_EQ(raw_b[r * 2 * V + j].bits, host[r * V + j].bits);
}

// The deferred forms (a training step's losses, kept on the device): the same kernel, so the
// gradients equal the returning op's bit for bit, and the row terms read back and summed by
// the shared sum_row_losses give its loss_sum exactly (double(float) is exact). Invalid
// targets are not checked here (the model checks them on the host).
TEST(CudaKernels, CrossEntropyTermsEqualTheReturningOp) {
  QV_REQUIRE_CUDA();
  const int64_t rows = 11, V = 3001;
  const std::vector<float> logits = rand_f(rows * V, 31, -8, 8);
  std::vector<int64_t> targets(rows);
  for (int64_t r = 0; r < rows; ++r)
    targets[r] = r % 4 == 1 ? kernels::kIgnoreIndex : (r * 733) % V;
  auto dt = to_device(targets);
  // float gradient, aliased with the logits
  auto want_l = to_device(logits);
  const auto want = gpu::cross_entropy(want_l.data(), dt.data(), want_l.data(), rows, V, 0.25f);
  auto got_l = to_device(logits);
  gpu::DeviceArray<double> terms(rows);
  gpu::cross_entropy_terms(got_l.data(), dt.data(), got_l.data(), rows, V, 0.25f, terms.data());
  const std::vector<double> t = to_host(terms);
  EXPECT_EQ(kernels::sum_row_losses(t.data(), targets.data(), rows).loss_sum, want.loss_sum);
  for (int64_t r = 0; r < rows; ++r)
    if (targets[r] == kernels::kIgnoreIndex) {
      EXPECT_EQ(t[r], 0.0) << r;
    }
  EXPECT_EQ(to_host(got_l), to_host(want_l));
  // loss only
  auto only_l = to_device(logits);
  gpu::DeviceArray<double> only(rows);
  gpu::cross_entropy_terms(only_l.data(), dt.data(), nullptr, rows, V, 1.f, only.data());
  EXPECT_EQ(to_host(only), t);
  // bf16 gradient in place (ld = 2 V: the scratch path) and into a separate array
  auto b16_want = to_device(logits);
  bf16* over_want = reinterpret_cast<bf16*>(b16_want.data());
  const auto wb =
      gpu::cross_entropy(b16_want.data(), dt.data(), over_want, 2 * V, rows, V, 1.f / 9);
  auto b16_got = to_device(logits);
  gpu::DeviceArray<double> tb(rows);
  gpu::cross_entropy_terms(b16_got.data(), dt.data(), reinterpret_cast<bf16*>(b16_got.data()),
                           2 * V, rows, V, 1.f / 9, tb.data());
  const std::vector<double> tbh = to_host(tb);
  EXPECT_EQ(kernels::sum_row_losses(tbh.data(), targets.data(), rows).loss_sum, wb.loss_sum);
  const std::vector<float> bytes_got = to_host(b16_got), bytes_want = to_host(b16_want);
  EXPECT_EQ(std::memcmp(bytes_got.data(), bytes_want.data(), bytes_got.size() * sizeof(float)), 0);
  auto sep_l = to_device(logits);
  gpu::DeviceArray<bf16> sep(rows * V);
  gpu::DeviceArray<double> ts(rows);
  gpu::cross_entropy_terms(sep_l.data(), dt.data(), sep.data(), V, rows, V, 1.f / 9, ts.data());
  EXPECT_EQ(to_host(ts), tbh);
}

// An ahead upload (kernels::upload_input_ahead) does not wait for earlier compute but is seen by
// every later op: a device copy issued right after it reads the new values, over several
// rounds that reuse the ahead uploader's slots.
TEST(CudaRuntime, AheadUploadsAreSeenByLaterOps) {
  QV_REQUIRE_CUDA();
  const Device gpu0{DeviceKind::kCuda, 0};
  DeviceScope scope(gpu0);
  const int64_t n = 50000;
  gpu::DeviceArray<float> input(n), copy(n);
  for (int i = 0; i < 2 * gpu::BatchUploader::kSlots + 1; ++i) {
    std::vector<float> h = rand_f(n, 300 + i);
    kernels::upload_input_ahead(
        input.data(), h.data(), h.size() * sizeof(float),
        i == 0 ? kernels::AheadWait::kEarlierWork : kernels::AheadWait::kNone);
    const std::vector<float> want = h;
    std::fill(h.begin(), h.end(), 0.f);  // the host buffer is free once the call returns
    kernels::copy_on_device(copy.data(), input.data(), h.size() * sizeof(float));
    EXPECT_EQ(to_host(copy), want) << i;
  }
}

// ---- GEMM and linear ----

TEST(CudaKernels, GemmAllTransposesMatchCpuInFloatAndBf16) {
  QV_REQUIRE_CUDA();
  const int64_t M = 67, N = 45, K = 129;  // odd sizes: no kernel may assume multiples
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      SCOPED_TRACE(::testing::Message() << "trans_a " << ta << " trans_b " << tb);
      const int64_t lda = ta ? M : K, ldb = tb ? K : N, ldc = N;
      const std::vector<float> A = bf16_exact(rand_f(M * K, 14)), B = bf16_exact(rand_f(K * N, 15)),
                               C0 = rand_f(M * N, 16);
      std::vector<float> want = C0;
      cpu::gemm<float>(ta, tb, M, N, K, 0.5f, A.data(), lda, B.data(), ldb, 2.f, want.data(), ldc);
      auto dA = to_device(A), dB = to_device(B), dC = to_device(C0);
      gpu::gemm<float>(ta, tb, M, N, K, 0.5f, dA.data(), lda, dB.data(), ldb, 2.f, dC.data(), ldc);
      QV_EXPECT_REL(to_host(dC), want, kF32);
      auto bA = to_device(to_b(A)), bB = to_device(to_b(B));
      auto bC = to_device(C0);
      gpu::gemm_bf16(ta, tb, M, N, K, 0.5f, bA.data(), lda, bB.data(), ldb, 2.f, bC.data(), ldc);
      QV_EXPECT_REL(to_host(bC), want, 1e-4);
    }
}

// The dense layers are composed once (kernels/linear.cpp); run under a CUDA DeviceScope they
// take the CUDA GEMMs and bias primitives.
TEST(CudaKernels, LinearForwardBackwardMatchCpuInFloatAndWithBf16Weights) {
  QV_REQUIRE_CUDA();
  const int64_t M = 33, K = 96, N = 80;
  const std::vector<float> x = rand_f(M * K, 17), w = rand_f(N * K, 18), bias = rand_f(N, 19),
                           dy = rand_f(M * N, 20);
  std::vector<bf16> wb = to_b(w);
  const std::vector<bf16> dyb = to_b(dy);
  // The same dy with rows 2 N apart (the classifier's in-place bf16 gradient).
  std::vector<bf16> strided(M * 2 * N, bf16{0x7fc0});
  for (int64_t m = 0; m < M; ++m)
    std::copy(dyb.begin() + m * N, dyb.begin() + (m + 1) * N, strided.begin() + m * 2 * N);
  // CPU references: float and bf16 weights, and the backward from a bf16 dy.
  std::vector<float> y[2], dx[2], dw[2], db[2];
  for (int use_b16 = 0; use_b16 < 2; ++use_b16) {
    y[use_b16].resize(M * N), dx[use_b16].resize(M * K);
    dw[use_b16].assign(N * K, 0.1f), db[use_b16].assign(N, 0.f);
    const kernels::Weight cw{w.data(), use_b16 ? wb.data() : nullptr};
    kernels::linear_forward(x.data(), cw, bias.data(), y[use_b16].data(), M, K, N);
    kernels::linear_backward(x.data(), cw, dy.data(), dx[use_b16].data(), dw[use_b16].data(),
                             db[use_b16].data(), M, K, N);
  }
  std::vector<float> dx_b(M * K), dw_b(N * K, 0.1f);
  kernels::linear_backward(x.data(), kernels::Weight{w.data(), wb.data()}, dyb.data(), N,
                           dx_b.data(), dw_b.data(), M, K, N);

  const DeviceScope scope(Device{DeviceKind::kCuda, 0});
  auto gx = to_device(x), gw = to_device(w), gbias = to_device(bias), gdy = to_device(dy);
  auto gwb = to_device(wb);
  for (int use_b16 = 0; use_b16 < 2; ++use_b16) {
    SCOPED_TRACE(use_b16 ? "bf16 weights" : "float");
    const double tol = use_b16 ? 1e-4 : kF32;
    gpu::DeviceArray<float> gy(M * N), gdx(M * K);
    auto gdw = to_device(std::vector<float>(N * K, 0.1f));
    auto gdb = to_device(std::vector<float>(N, 0.f));
    const kernels::Weight dw_{gw.data(), use_b16 ? gwb.data() : nullptr};
    kernels::linear_forward(gx.data(), dw_, gbias.data(), gy.data(), M, K, N);
    kernels::linear_backward(gx.data(), dw_, gdy.data(), gdx.data(), gdw.data(), gdb.data(), M, K,
                             N);
    QV_EXPECT_REL(to_host(gy), y[use_b16], tol);
    QV_EXPECT_REL(to_host(gdx), dx[use_b16], tol);
    QV_EXPECT_REL(to_host(gdw), dw[use_b16], tol);
    QV_EXPECT_REL(to_host(gdb), db[use_b16], kF32);
  }
  // From a dy already in bf16 (the classifier's): the same products as the float dy rounding to
  // it, packed and strided.
  auto gdyb = to_device(dyb), gstrided = to_device(strided);
  for (const auto* g : {&gdyb, &gstrided}) {
    const int64_t ld = g == &gdyb ? N : 2 * N;
    SCOPED_TRACE(::testing::Message() << "dy row stride " << ld);
    gpu::DeviceArray<float> gdx(M * K);
    auto gdw = to_device(std::vector<float>(N * K, 0.1f));
    kernels::linear_backward(gx.data(), kernels::Weight{gw.data(), gwb.data()}, g->data(), ld,
                             gdx.data(), gdw.data(), M, K, N);
    QV_EXPECT_REL(to_host(gdx), dx_b, 1e-4);
    QV_EXPECT_REL(to_host(gdw), dw_b, 1e-4);
  }
}

// ---- attention ----

struct AttnCase {
  std::vector<int64_t> cu;
  kernels::AttentionDims dims;
  std::vector<uint8_t> valid;
  std::vector<float> q, k, v, dout;
  AttnCase(std::vector<int64_t> lengths, int64_t heads, int64_t kv_heads, int64_t hd, bool causal,
           uint64_t seed) {
    cu = {0};
    for (int64_t L : lengths) cu.push_back(cu.back() + L);
    dims = {cu.back(), heads, kv_heads, hd, causal, 1 / std::sqrt(static_cast<double>(hd))};
    const int64_t N = dims.tokens;
    q = rand_f(N * heads * hd, seed, -2, 2);
    k = rand_f(N * kv_heads * hd, seed + 1, -2, 2);
    v = rand_f(N * kv_heads * hd, seed + 2);
    dout = rand_f(N * heads * hd, seed + 3);
  }
  int64_t n_seqs() const { return static_cast<int64_t>(cu.size()) - 1; }
};

// The bf16 paths against the CPU float op on the bf16-rounded inputs (bounds relative to the
// largest |value| of the CPU result):
//  - CUDA cores (bf16 storage, head_dim > 128): float math; out carries one bf16 rounding
//    (2^-8, plus the float bound); the gradients also see the rounded out (delta = dout . out):
//    4 roundings.
//  - tensor cores (bf16 storage, or float storage with bf16_products, head_dim <= 128): the
//    products also take P (forward, P^T dO) and dS (dS K, dS^T Q) rounded to bf16, one more
//    rounding of one operand per product, and float storage skips the output rounding. out: a
//    rounding of each weight p moves the weighted mean of v by at most 2^-8 max|v| (relative
//    2^-9 on both p and the sum l), plus the output's own rounding: 2 x 2^-8. Gradients: the
//    CUDA-core path's 4 roundings plus P's or dS's: 5 x 2^-8. Measured on the CUDA emulator
//    over the cases below: out 3.3e-3 (0.85 x 2^-8), gradients 4.8e-3 (1.22 x 2^-8).
enum class Bf16Path { kBf16Storage, kFloatStorageBf16Products };

constexpr double kTcOut = 2 * kBf16Round;
constexpr double kTcGrad = 5 * kBf16Round;

void check_attention_bf16(const AttnCase& c, Bf16Path path, bool tensor_cores) {
  SCOPED_TRACE(path == Bf16Path::kBf16Storage ? "bf16 storage" : "float storage, bf16 products");
  const int64_t N = c.dims.tokens, qn = N * c.dims.heads * c.dims.head_dim,
                kn = N * c.dims.kv_heads * c.dims.head_dim;
  const uint8_t* valid = c.valid.empty() ? nullptr : c.valid.data();
  AttnCase r = c;
  r.q = bf16_exact(c.q), r.k = bf16_exact(c.k), r.v = bf16_exact(c.v), r.dout = bf16_exact(c.dout);
  std::vector<float> rout(qn), rlse(N * c.dims.heads), rdq(qn), rdk(kn), rdv(kn);
  cpu::attention_forward(r.q.data(), r.k.data(), r.v.data(), rout.data(), rlse.data(), r.cu.data(),
                         r.n_seqs(), r.dims, valid);
  cpu::attention_backward(r.q.data(), r.k.data(), r.v.data(), rout.data(), rlse.data(),
                          r.dout.data(), rdq.data(), rdk.data(), rdv.data(), r.cu.data(),
                          r.n_seqs(), r.dims, valid);
  auto gcu = to_device(c.cu);
  gpu::DeviceArray<uint8_t> gvalid;
  if (valid) gvalid = to_device(c.valid);
  const uint8_t* gv_ptr = valid ? gvalid.data() : nullptr;
  std::vector<float> out, dq, dk, dv;
  if (path == Bf16Path::kBf16Storage) {
    auto bq = to_device(to_b(r.q)), bk = to_device(to_b(r.k)), bv = to_device(to_b(r.v)),
         bdo = to_device(to_b(r.dout));
    gpu::DeviceArray<bf16> bout(qn), bdq(qn), bdk(kn), bdv(kn);
    gpu::DeviceArray<float> blse(N * c.dims.heads);
    gpu::attention_forward(bq.data(), bk.data(), bv.data(), bout.data(), blse.data(), gcu.data(),
                           c.n_seqs(), c.dims, gv_ptr);
    gpu::attention_backward(bq.data(), bk.data(), bv.data(), bout.data(), blse.data(), bdo.data(),
                            bdq.data(), bdk.data(), bdv.data(), gcu.data(), c.n_seqs(), c.dims,
                            gv_ptr);
    out = from_b(to_host(bout)), dq = from_b(to_host(bdq)), dk = from_b(to_host(bdk)),
    dv = from_b(to_host(bdv));
  } else {  // the unrounded float inputs: the kernels round them as they stage them
    kernels::AttentionDims dims = c.dims;
    dims.bf16_products = true;
    auto fq = to_device(c.q), fk = to_device(c.k), fv = to_device(c.v), fdo = to_device(c.dout);
    gpu::DeviceArray<float> fout(qn), flse(N * c.dims.heads), fdq(qn), fdk(kn), fdv(kn);
    gpu::attention_forward(fq.data(), fk.data(), fv.data(), fout.data(), flse.data(), gcu.data(),
                           c.n_seqs(), dims, gv_ptr);
    gpu::attention_backward(fq.data(), fk.data(), fv.data(), fout.data(), flse.data(), fdo.data(),
                            fdq.data(), fdk.data(), fdv.data(), gcu.data(), c.n_seqs(), dims,
                            gv_ptr);
    out = to_host(fout), dq = to_host(fdq), dk = to_host(fdk), dv = to_host(fdv);
  }
  const double out_tol = tensor_cores ? kTcOut : kBf16Round + kF32;
  const double grad_tol = tensor_cores ? kTcGrad : 4 * kBf16Round;
  QV_EXPECT_REL(out, rout, out_tol);
  QV_EXPECT_REL(dq, rdq, grad_tol);
  QV_EXPECT_REL(dk, rdk, grad_tol);
  QV_EXPECT_REL(dv, rdv, grad_tol);
}

void check_attention(const AttnCase& c) {
  const int64_t N = c.dims.tokens, qn = N * c.dims.heads * c.dims.head_dim,
                kn = N * c.dims.kv_heads * c.dims.head_dim;
  const uint8_t* valid = c.valid.empty() ? nullptr : c.valid.data();
  std::vector<float> out(qn), lse(N * c.dims.heads), dq(qn), dk(kn), dv(kn);
  cpu::attention_forward(c.q.data(), c.k.data(), c.v.data(), out.data(), lse.data(), c.cu.data(),
                         c.n_seqs(), c.dims, valid);
  cpu::attention_backward(c.q.data(), c.k.data(), c.v.data(), out.data(), lse.data(), c.dout.data(),
                          dq.data(), dk.data(), dv.data(), c.cu.data(), c.n_seqs(), c.dims, valid);
  auto gq = to_device(c.q), gk = to_device(c.k), gv = to_device(c.v), gdo = to_device(c.dout);
  auto gcu = to_device(c.cu);
  gpu::DeviceArray<uint8_t> gvalid;
  if (valid) gvalid = to_device(c.valid);
  gpu::DeviceArray<float> gout(qn), glse(N * c.dims.heads), gdq(qn), gdk(kn), gdv(kn);
  gpu::attention_forward(gq.data(), gk.data(), gv.data(), gout.data(), glse.data(), gcu.data(),
                         c.n_seqs(), c.dims, valid ? gvalid.data() : nullptr);
  gpu::attention_backward(gq.data(), gk.data(), gv.data(), gout.data(), glse.data(), gdo.data(),
                          gdq.data(), gdk.data(), gdv.data(), gcu.data(), c.n_seqs(), c.dims,
                          valid ? gvalid.data() : nullptr);
  QV_EXPECT_REL(to_host(gout), out, kF32);
  // lse: -inf rows must match exactly; finite ones within the bound.
  const std::vector<float> glse_h = to_host(glse);
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(lse[i])) {
      ASSERT_TRUE(std::isinf(glse_h[i]) && glse_h[i] < 0) << "row " << i;
    } else {
      ASSERT_NEAR(glse_h[i], lse[i], kF32 * std::max(1.f, std::fabs(lse[i]))) << "row " << i;
    }
  }
  QV_EXPECT_REL(to_host(gdq), dq, kF32);
  QV_EXPECT_REL(to_host(gdk), dk, kF32);
  QV_EXPECT_REL(to_host(gdv), dv, kF32);

  const bool tc = gpu::tc_attention_fits(c.dims);
  SCOPED_TRACE(tc ? "bf16 on tensor cores" : "bf16 on CUDA cores");
  check_attention_bf16(c, Bf16Path::kBf16Storage, tc);
  if (tc) check_attention_bf16(c, Bf16Path::kFloatStorageBf16Products, tc);
}

TEST(CudaKernels, AttentionCausalDocumentsWithGqaMatchCpu) {
  QV_REQUIRE_CUDA();
  check_attention(AttnCase({37, 1, 70, 5}, 4, 2, 64, true, 21));  // tiles straddle documents
}

TEST(CudaKernels, AttentionFullVisionImagesMatchCpu) {
  QV_REQUIRE_CUDA();
  check_attention(AttnCase({64, 16, 100}, 2, 2, 72, false, 22));  // the vision tower: hd 72
}

TEST(CudaKernels, AttentionWithPaddedKeysAndLargeHeadDimMatchCpu) {
  QV_REQUIRE_CUDA();
  AttnCase c({40, 33}, 2, 1, 128, true, 23);
  c.valid.assign(c.dims.tokens, 1);
  for (int64_t i = 0; i < c.dims.tokens; i += 3) c.valid[i] = 0;  // query 0 then sees no key
  check_attention(c);
  check_attention(AttnCase({50}, 2, 2, 256, false, 24));  // the largest head_dim (> 48 KiB smem)
}

// Several 64-row tiles of queries and keys: whole warps above the causal diagonal skip a tile,
// documents start inside tiles, four query heads share a kv head.
TEST(CudaKernels, AttentionAcrossManyTilesMatchCpu) {
  QV_REQUIRE_CUDA();
  check_attention(AttnCase({200, 3, 97}, 4, 1, 128, true, 28));
  check_attention(AttnCase({90, 40}, 2, 2, 36, true, 29));  // head_dim 36: element-wise loads
}

TEST(CudaKernels, AttentionDecodeMatchesCpu) {
  QV_REQUIRE_CUDA();
  const int64_t length = 77, heads = 8, kv_heads = 2, hd = 128;
  const kernels::AttentionDims dims{1, heads, kv_heads, hd, false, 1 / std::sqrt(128.0)};
  const std::vector<float> q = rand_f(heads * hd, 25), k = rand_f(length * kv_heads * hd, 26),
                           v = rand_f(length * kv_heads * hd, 27);
  std::vector<float> out(heads * hd);
  cpu::attention_decode(q.data(), k.data(), v.data(), out.data(), length, dims);
  auto gq = to_device(q), gk = to_device(k), gv = to_device(v);
  gpu::DeviceArray<float> gout(heads * hd);
  gpu::attention_decode(gq.data(), gk.data(), gv.data(), gout.data(), length, dims);
  QV_EXPECT_REL(to_host(gout), out, kF32);
}

// ---- mixture of experts ----
// Inputs: tokens N = 13, E = 5 experts (expert 3 is never chosen: its logits are far below the
// others, so the experts' ops meet an expert with no slot), top-2, a row of tied probabilities
// (top-k's tie order), and padding flags for the router statistics.

struct MoeCase {
  kernels::MoeDims d{13, 24, 10, 5, 2, true};
  std::vector<float> logits, probs, weight;
  std::vector<int32_t> expert;
  std::vector<int64_t> offsets, order, position;
  std::vector<uint8_t> valid;
  explicit MoeCase(bool norm = true) {
    d.norm_topk_prob = norm;
    const int64_t N = d.tokens, E = d.experts;
    logits = rand_f(N * E, 40, -2, 2);
    for (int64_t t = 0; t < N; ++t) logits[t * E + 3] = -30;
    for (int64_t e = 0; e < E; ++e)
      if (e != 3) logits[4 * E + e] = 0.5f;  // token 4: four equal probabilities
    probs.resize(N * E);
    cpu::moe_softmax(logits.data(), probs.data(), N, E);
    expert.resize(d.slots());
    weight.resize(d.slots());
    cpu::moe_topk(probs.data(), d, expert.data(), weight.data());
    offsets.resize(E + 1), order.resize(d.slots()), position.resize(d.slots());
    cpu::moe_bucket(expert.data(), d, offsets.data(), order.data(), position.data());
    valid.assign(N, 1);
    valid[2] = valid[9] = 0;
  }
};

// Routing: softmax (and in place) and its backward to the float bound; top-k and the bucketing
// run the CPU op on a host copy, so they are exact; top-k backward, the router statistics and
// the aux-loss gradient add in the CPU op's order with rounded products: exact too.
TEST(CudaKernels, MoeRoutingOpsMatchCpu) {
  QV_REQUIRE_CUDA();
  for (const bool norm : {true, false}) {
    SCOPED_TRACE(norm ? "norm_topk_prob" : "raw top-k weights");
    const MoeCase c(norm);
    const kernels::MoeDims& d = c.d;
    const int64_t N = d.tokens, E = d.experts, S = d.slots();
    auto g_logits = to_device(c.logits);
    gpu::DeviceArray<float> g_probs(N * E);
    gpu::moe_softmax(g_logits.data(), g_probs.data(), N, E);
    QV_EXPECT_REL(to_host(g_probs), c.probs, kF32);
    gpu::moe_softmax(g_logits.data(), g_logits.data(), N, E);  // aliased
    QV_EXPECT_REL(to_host(g_logits), c.probs, kF32);

    const std::vector<float> d_probs = rand_f(N * E, 41);
    std::vector<float> d_logits(N * E);
    cpu::moe_softmax_backward(c.probs.data(), d_probs.data(), d_logits.data(), N, E);
    auto gp = to_device(c.probs), gdp = to_device(d_probs);
    gpu::DeviceArray<float> gdl(N * E);
    gpu::moe_softmax_backward(gp.data(), gdp.data(), gdl.data(), N, E);
    QV_EXPECT_REL(to_host(gdl), d_logits, kF32);
    gpu::moe_softmax_backward(gp.data(), gdp.data(), gdp.data(), N, E);  // aliased
    QV_EXPECT_REL(to_host(gdp), d_logits, kF32);

    gpu::DeviceArray<int32_t> g_expert(S);
    gpu::DeviceArray<float> g_weight(S);
    gpu::moe_topk(gp.data(), d, g_expert.data(), g_weight.data());
    EXPECT_EQ(to_host(g_expert), c.expert);
    EXPECT_EQ(to_host(g_weight), c.weight);

    const std::vector<float> d_weight = rand_f(S, 42);
    std::vector<float> want_dp(N * E);
    cpu::moe_topk_backward(c.probs.data(), c.expert.data(), c.weight.data(), d_weight.data(), d,
                           want_dp.data());
    auto g_dw = to_device(d_weight), g_w = to_device(c.weight);
    auto g_ex = to_device(c.expert);
    auto g_dp = to_device(std::vector<float>(N * E, 7.f));  // overwritten
    gpu::moe_topk_backward(gp.data(), g_ex.data(), g_w.data(), g_dw.data(), d, g_dp.data());
    EXPECT_EQ(to_host(g_dp), want_dp);

    gpu::DeviceArray<int64_t> g_off(E + 1), g_ord(S), g_pos(S);
    gpu::moe_bucket(g_ex.data(), d, g_off.data(), g_ord.data(), g_pos.data());
    EXPECT_EQ(to_host(g_off), c.offsets);
    EXPECT_EQ(to_host(g_ord), c.order);
    EXPECT_EQ(to_host(g_pos), c.position);

    // Router statistics over two layers (accumulated), with and without padding flags.
    for (const bool padded : {true, false}) {
      std::vector<int64_t> tpe(E, 0);
      std::vector<double> chosen(E, 0.0), prob_sum(E, 0.0);
      const uint8_t* v = padded ? c.valid.data() : nullptr;
      auto g_valid = to_device(c.valid);
      auto g_tpe = to_device(tpe);
      auto g_chosen = to_device(chosen), g_sum = to_device(prob_sum);
      for (int layer = 0; layer < 2; ++layer) {
        cpu::moe_router_stats(c.probs.data(), c.expert.data(), v, d, tpe.data(), chosen.data(),
                              prob_sum.data());
        gpu::moe_router_stats(gp.data(), g_ex.data(), padded ? g_valid.data() : nullptr, d,
                              g_tpe.data(), g_chosen.data(), g_sum.data());
      }
      EXPECT_EQ(to_host(g_tpe), tpe);
      EXPECT_EQ(to_host(g_chosen), chosen);
      EXPECT_EQ(to_host(g_sum), prob_sum);

      const std::vector<float> per_expert = rand_f(E, 43, -0.01, 0.01);
      std::vector<float> grad = d_probs;
      cpu::moe_add_aux_grad(per_expert.data(), v, N, E, grad.data());
      auto g_grad = to_device(d_probs), g_pe = to_device(per_expert);
      gpu::moe_add_aux_grad(g_pe.data(), padded ? g_valid.data() : nullptr, N, E, g_grad.data());
      EXPECT_EQ(to_host(g_grad), grad);
    }
  }
}

// Dispatch, combine and their backwards: each output element adds the same terms in the same
// order as the CPU op (products rounded, no fused multiply-add), so they are exact, except
// d_weight, a dot over H summed in another order (float bound).
TEST(CudaKernels, MoeDispatchCombineMatchCpu) {
  QV_REQUIRE_CUDA();
  const MoeCase c;
  const kernels::MoeDims& d = c.d;
  const int64_t N = d.tokens, H = d.hidden, S = d.slots();
  const std::vector<float> x = rand_f(N * H, 44), ys = rand_f(S * H, 45), dy = rand_f(N * H, 46);
  const kernels::MoeRouting r{c.offsets.data(), c.order.data(), c.position.data()};
  std::vector<float> xs(S * H), dx(N * H), y(N * H), d_ys(S * H), d_weight(S);
  cpu::moe_dispatch(x.data(), r, d, xs.data());
  cpu::moe_dispatch_backward(ys.data(), r, d, dx.data());
  cpu::moe_combine(ys.data(), r, c.weight.data(), d, y.data());
  cpu::moe_combine_backward(dy.data(), ys.data(), r, c.weight.data(), d, d_ys.data(),
                            d_weight.data());

  auto g_off = to_device(c.offsets), g_ord = to_device(c.order), g_pos = to_device(c.position);
  const kernels::MoeRouting gr{g_off.data(), g_ord.data(), g_pos.data()};
  auto gx = to_device(x), gys = to_device(ys), gdy = to_device(dy), gw = to_device(c.weight);
  gpu::DeviceArray<float> gxs(S * H), gdx(N * H), gy(N * H), gdys(S * H), gdw(S);
  gpu::moe_dispatch(gx.data(), gr, d, gxs.data());
  gpu::moe_dispatch_backward(gys.data(), gr, d, gdx.data());
  gpu::moe_combine(gys.data(), gr, gw.data(), d, gy.data());
  gpu::moe_combine_backward(gdy.data(), gys.data(), gr, gw.data(), d, gdys.data(), gdw.data());
  EXPECT_EQ(to_host(gxs), xs);
  EXPECT_EQ(to_host(gdx), dx);
  EXPECT_EQ(to_host(gy), y);
  EXPECT_EQ(to_host(gdys), d_ys);
  QV_EXPECT_REL(to_host(gdw), d_weight, kF32);
}

// The experts' grouped GEMMs forward and backward (gradients accumulated onto non-zero values),
// float and bf16. Float: the float bound. bf16: the first product of each pass (inputs xs or
// d_ys, bf16-exact on both sides) to the file's bf16 GEMM bound, 1e-4; results behind an
// intermediate that the op rounds to bf16 (act, d_gate_up: float GEMM outputs that may differ in
// their last bits, so may round to neighbouring bf16 values) to one bf16 rounding, 2^-8.
TEST(CudaKernels, MoeExpertsForwardBackwardMatchCpuInFloatAndBf16) {
  QV_REQUIRE_CUDA();
  const MoeCase c;
  const kernels::MoeDims& d = c.d;
  const int64_t N = d.tokens, H = d.hidden, I = d.inter, E = d.experts, S = d.slots();
  const std::vector<float> x = rand_f(N * H, 47), dy = rand_f(N * H, 48);
  const std::vector<float> gate_up = rand_f(E * H * 2 * I, 49, -0.3, 0.3),
                           down = rand_f(E * I * H, 50, -0.3, 0.3);
  const std::vector<float> g_gu0 = rand_f(E * H * 2 * I, 51), g_dn0 = rand_f(E * I * H, 52);
  const std::vector<bf16> gate_up_b = to_b(gate_up), down_b = to_b(down);
  const kernels::MoeRouting r{c.offsets.data(), c.order.data(), c.position.data()};
  auto g_off = to_device(c.offsets), g_ord = to_device(c.order), g_pos = to_device(c.position);
  const kernels::MoeRouting gr{g_off.data(), g_ord.data(), g_pos.data()};
  auto gx = to_device(x), gdy = to_device(dy), gw = to_device(c.weight);
  auto ggu = to_device(gate_up), gdn = to_device(down);
  auto ggu_b = to_device(gate_up_b), gdn_b = to_device(down_b);
  for (const bool b16 : {false, true}) {
    SCOPED_TRACE(b16 ? "bf16 experts" : "float experts");
    const double first = b16 ? 1e-4 : kF32, later = b16 ? kBf16Round : kF32;
    const kernels::MoeExperts<float> w{gate_up.data(), down.data(),
                                       b16 ? gate_up_b.data() : nullptr,
                                       b16 ? down_b.data() : nullptr};
    std::vector<float> xs(S * H), gu(S * 2 * I), act(S * I), ys(S * H), y(N * H);
    cpu::moe_experts_forward(x.data(), w, r, c.weight.data(), d,
                             {xs.data(), gu.data(), act.data(), ys.data()}, y.data());
    std::vector<float> dx(N * H), d_gu = g_gu0, d_dn = g_dn0, d_weight(S);
    cpu::moe_experts_backward(dy.data(), w, r, c.weight.data(), d,
                              {xs.data(), gu.data(), act.data(), ys.data()}, dx.data(), d_gu.data(),
                              d_dn.data(), d_weight.data());

    const kernels::MoeExperts<float> gwts{ggu.data(), gdn.data(), b16 ? ggu_b.data() : nullptr,
                                          b16 ? gdn_b.data() : nullptr};
    gpu::DeviceArray<float> gxs(S * H), ggate(S * 2 * I), gact(S * I), gys(S * H), gy(N * H);
    gpu::moe_experts_forward(gx.data(), gwts, gr, gw.data(), d,
                             {gxs.data(), ggate.data(), gact.data(), gys.data()}, gy.data());
    EXPECT_EQ(to_host(gxs), xs);
    QV_EXPECT_REL(to_host(ggate), gu, first);
    QV_EXPECT_REL(to_host(gact), act, first);
    QV_EXPECT_REL(to_host(gys), ys, later);
    QV_EXPECT_REL(to_host(gy), y, later);
    gpu::DeviceArray<float> gdx(N * H), gdw(S);
    auto g_dgu = to_device(g_gu0), g_ddn = to_device(g_dn0);
    gpu::moe_experts_backward(gdy.data(), gwts, gr, gw.data(), d,
                              {gxs.data(), ggate.data(), gact.data(), gys.data()}, gdx.data(),
                              g_dgu.data(), g_ddn.data(), gdw.data());
    QV_EXPECT_REL(to_host(gdw), d_weight, later);
    QV_EXPECT_REL(to_host(g_ddn), d_dn, later);
    QV_EXPECT_REL(to_host(g_dgu), d_gu, later);
    QV_EXPECT_REL(to_host(gdx), dx, later);
    // Expert 3 got no slot: its gradients are untouched.
    const std::vector<float> got_gu = to_host(g_dgu);
    for (int64_t i = 3 * H * 2 * I; i < 4 * H * 2 * I; ++i) ASSERT_EQ(got_gu[i], g_gu0[i]) << i;
  }
}

// The model's MoE block runs on the GPU through the neutral ops (kernels/moe.h) under a CUDA
// DeviceScope: the same ops as above, composed by model/moe_block.cpp.
TEST(CudaKernels, NeutralMoeOpsDispatchToCuda) {
  QV_REQUIRE_CUDA();
  const MoeCase c;
  const int64_t N = c.d.tokens, E = c.d.experts;
  std::vector<float> want(N * E);
  kernels::moe_softmax(c.logits.data(), want.data(), N, E);
  const DeviceScope scope(Device{DeviceKind::kCuda, 0});
  auto gl = to_device(c.logits);
  gpu::DeviceArray<float> gp(N * E);
  kernels::moe_softmax(gl.data(), gp.data(), N, E);
  QV_EXPECT_REL(to_host(gp), want, kF32);
}

// ---- AdamW ----

TEST(CudaKernels, FusedAdamWIsBitIdenticalToTrainAdamW) {
  QV_REQUIRE_CUDA();
  const int64_t n = 4099;
  std::vector<float> p = rand_f(n, 28), g = rand_f(n, 29, -0.1, 0.1);
  train::AdamWConfig cfg;
  cfg.lr = 3e-3, cfg.weight_decay = 0.1;
  train::AdamW cpu_opt(cfg, {{0, n}}, {{0, n}});
  std::vector<bf16> cpu_copy(n);
  cpu_opt.write_bf16_copies(cpu_copy.data(), {1});
  auto gp = to_device(p), gg = to_device(g);
  auto gm = to_device(std::vector<float>(n, 0.f)), gv = to_device(std::vector<float>(n, 0.f));
  gpu::DeviceArray<bf16> gcopy(n);
  std::vector<float> cp = p;
  for (int step = 1; step <= 3; ++step) {
    const double lr = cfg.lr * step / 3;
    cpu_opt.step(cp.data(), g.data(), {1}, lr);
    // The constants exactly as train/adamw.cpp computes them.
    const double bc1 = 1 - std::pow(cfg.beta1, step), bc2 = 1 - std::pow(cfg.beta2, step);
    const gpu::AdamWScalars s{static_cast<float>(1.0 - lr * cfg.weight_decay),
                              static_cast<float>(cfg.beta1),
                              static_cast<float>(1 - cfg.beta1),
                              static_cast<float>(cfg.beta2),
                              static_cast<float>(1 - cfg.beta2),
                              static_cast<float>(-(lr / bc1)),
                              static_cast<float>(std::sqrt(bc2)),
                              static_cast<float>(cfg.eps)};
    gpu::adamw_update(s, gp.data(), gg.data(), gm.data(), gv.data(), gcopy.data(), n);
  }
  EXPECT_EQ(to_host(gp), cp);
  EXPECT_EQ(to_host(gm), cpu_opt.exp_avg().to_vector());
  EXPECT_EQ(to_host(gv), cpu_opt.exp_avg_sq().to_vector());
  const std::vector<bf16> got = to_host(gcopy);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i].bits, cpu_copy[i].bits) << i;
}

}  // namespace
}  // namespace qv
#endif
