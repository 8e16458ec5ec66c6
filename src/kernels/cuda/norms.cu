// CUDA: RMSNorm, LayerNorm (norms.h) and softmax cross-entropy (cross_entropy.h).
//
// Row ops take one block per row (kRowThreads threads striding over the row). Row statistics are
// summed in double, as the CPU op sums them (a float mean of a row with a large offset, e.g.
// LayerNorm of values near 100, would move (x - mean) by more than 1e-5 relative).
// Weight gradients are column sums over rows (in double), done without atomics in two fixed-order
// passes: per chunk of kRowChunk rows a partial sum per column, then the chunks added in order, so
// the result does not depend on scheduling.
#include <type_traits>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/norms.h"

namespace qv::kernels::cuda {
namespace {

constexpr int kRowThreads = 256;
constexpr int kColThreads = 256;
constexpr int64_t kRowChunk = 64;

template <typename D>
__global__ void rmsnorm_fwd_k(const D* x, const D* w, D* y, D* rstd, int64_t D_, float eps) {
  __shared__ double scratch[32];
  const int64_t r = blockIdx.x;
  const D* xr = x + r * D_;
  D* yr = y + r * D_;
  double ss = 0;
  for (int64_t j = threadIdx.x; j < D_; j += blockDim.x) {
    const double v = to_f(xr[j]);
    ss += v * v;
  }
  ss = block_sum(ss, scratch);
  // As Qwen3RMSNorm: variance rounded to T, then rsqrt(variance + eps).
  const float var = to_f(from_f<D>(static_cast<float>(ss / static_cast<double>(D_))));
  const float rs = to_f(from_f<D>(1.f / sqrtf(var + eps)));
  if (threadIdx.x == 0) rstd[r] = from_f<D>(rs);
  for (int64_t j = threadIdx.x; j < D_; j += blockDim.x)
    yr[j] = from_f<D>(to_f(w[j]) * to_f(from_f<D>(to_f(xr[j]) * rs)));
}

template <typename D>
__global__ void rmsnorm_bwd_k(const D* x, const D* w, const D* rstd, const D* dy, D* dx,
                              int64_t D_) {
  __shared__ double scratch[32];
  const int64_t r = blockIdx.x;
  const D* xr = x + r * D_;
  const D* dyr = dy + r * D_;
  const float rs = to_f(rstd[r]);
  double dot = 0;
  for (int64_t j = threadIdx.x; j < D_; j += blockDim.x)
    dot += static_cast<double>(to_f(w[j])) * to_f(dyr[j]) * to_f(xr[j]);
  dot = block_sum(dot, scratch);
  const double rsd = rs;
  const float b = static_cast<float>(dot * rsd * rsd * rsd / static_cast<double>(D_));
  for (int64_t j = threadIdx.x; j < D_; j += blockDim.x)
    dx[r * D_ + j] = from_f<D>(rs * to_f(w[j]) * to_f(dyr[j]) - b * to_f(xr[j]));
}

template <typename D>
__global__ void layernorm_fwd_k(const D* x, const D* w, const D* b, D* y, D* mean, D* rstd,
                                int64_t D_, float eps) {
  __shared__ double scratch[32];
  const int64_t r = blockIdx.x;
  const D* xr = x + r * D_;
  double s = 0;
  for (int64_t j = threadIdx.x; j < D_; j += blockDim.x) s += to_f(xr[j]);
  const double mu = block_sum(s, scratch) / static_cast<double>(D_);
  double sq = 0;  // two-pass variance, as the CPU op
  for (int64_t j = threadIdx.x; j < D_; j += blockDim.x) {
    const double d = to_f(xr[j]) - mu;
    sq += d * d;
  }
  const double var = block_sum(sq, scratch) / static_cast<double>(D_);
  const float m = to_f(from_f<D>(static_cast<float>(mu)));
  const float rs = to_f(from_f<D>(static_cast<float>(1.0 / sqrt(var + static_cast<double>(eps)))));
  if (threadIdx.x == 0) mean[r] = from_f<D>(m), rstd[r] = from_f<D>(rs);
  for (int64_t j = threadIdx.x; j < D_; j += blockDim.x)
    y[r * D_ + j] = from_f<D>((to_f(xr[j]) - m) * rs * to_f(w[j]) + to_f(b[j]));
}

template <typename D>
__global__ void layernorm_bwd_k(const D* x, const D* w, const D* mean, const D* rstd, const D* dy,
                                D* dx, int64_t D_) {
  __shared__ double scratch[32];
  const int64_t r = blockIdx.x;
  const D* xr = x + r * D_;
  const D* dyr = dy + r * D_;
  const float m = to_f(mean[r]), rs = to_f(rstd[r]);
  double sg = 0, sgx = 0;
  for (int64_t j = threadIdx.x; j < D_; j += blockDim.x) {
    const double g = static_cast<double>(to_f(dyr[j])) * to_f(w[j]);
    sg += g;
    sgx += g * (static_cast<double>(to_f(xr[j])) - m) * rs;
  }
  const float mg = static_cast<float>(block_sum(sg, scratch) / static_cast<double>(D_));
  const float mgx = static_cast<float>(block_sum(sgx, scratch) / static_cast<double>(D_));
  for (int64_t j = threadIdx.x; j < D_; j += blockDim.x) {
    const float g = to_f(dyr[j]) * to_f(w[j]);
    const float xhat = (to_f(xr[j]) - m) * rs;
    dx[r * D_ + j] = from_f<D>(rs * (g - mg - xhat * mgx));
  }
}

// Which column sum: dy (bias), dy * x * rstd (RMSNorm weight), dy * (x - mean) * rstd
// (LayerNorm weight).
enum class ColTerm { kDy, kDyXRstd, kDyXhat };

// partial[chunk, j] = sum over the chunk's rows of term(r, j). Grid: (column blocks, chunks).
template <typename D, ColTerm kTerm>
__global__ void col_partial_k(const D* dy, const D* x, const D* mean, const D* rstd,
                              double* partial, int64_t rows, int64_t D_) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= D_) return;
  const int64_t r0 = blockIdx.y * kRowChunk;
  const int64_t r1 = r0 + kRowChunk < rows ? r0 + kRowChunk : rows;
  double acc = 0;
  for (int64_t r = r0; r < r1; ++r) {
    const double g = to_f(dy[r * D_ + j]);
    if constexpr (kTerm == ColTerm::kDy) {
      acc += g;
    } else if constexpr (kTerm == ColTerm::kDyXRstd) {
      acc += g * to_f(x[r * D_ + j]) * to_f(rstd[r]);
    } else {
      acc += g * (to_f(x[r * D_ + j]) - to_f(mean[r])) * to_f(rstd[r]);
    }
  }
  partial[blockIdx.y * D_ + j] = acc;
}

// out[j] += sum over chunks (in order) of partial[c, j].
template <typename D>
__global__ void col_finish_k(const double* partial, int64_t chunks, int64_t D_, D* out) {
  const int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (j >= D_) return;
  double acc = 0;
  for (int64_t c = 0; c < chunks; ++c) acc += partial[c * D_ + j];
  out[j] = from_f<D>(to_f(out[j]) + static_cast<float>(acc));
}

}  // namespace

// out[j] += column sums of the term over rows (a helper shared with linear.cu's bias gradient).
template <typename D, ColTerm kTerm>
void column_sums(const D* dy, const D* x, const D* mean, const D* rstd, D* out, int64_t rows,
                 int64_t D_) {
  if (!out || rows <= 0 || D_ <= 0) return;
  const int64_t chunks = ceil_div(rows, kRowChunk);
  QV_CHECK(chunks <= 65535, "CUDA column sums: ", rows, " rows is more than this op supports");
  DeviceArray<double> partial(chunks * D_);
  const dim3 grid(static_cast<unsigned>(ceil_div(D_, kColThreads)), static_cast<unsigned>(chunks));
  QV_LAUNCH(grid, kColThreads, 0, cuda_stream(), col_partial_k<D, kTerm>)
  (dy, x, mean, rstd, partial.data(), rows, D_);
  QV_CUDA_LAUNCHED();
  QV_LAUNCH(static_cast<unsigned>(ceil_div(D_, kColThreads)), kColThreads, 0, cuda_stream(),
            col_finish_k<D>)
  (partial.data(), chunks, D_, out);
  QV_CUDA_LAUNCHED();
}

template <typename T>
void bias_grad(const T* dy, T* dbias, int64_t rows, int64_t N) {
  column_sums<dev_t<T>, ColTerm::kDy>(dev(dy), nullptr, nullptr, nullptr, dev(dbias), rows, N);
}

namespace {
unsigned row_grid(int64_t rows) {
  QV_CHECK(rows <= 0x7fffffffLL, "CUDA norms: too many rows (", rows, ")");
  return static_cast<unsigned>(rows);
}
}  // namespace

template <typename T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t rows, int64_t D, T eps) {
  if (rows <= 0) return;
  float e;
  if constexpr (std::is_same_v<T, qv::bf16>)
    e = qv::to_float(eps);
  else
    e = eps;
  QV_LAUNCH(row_grid(rows), kRowThreads, 0, cuda_stream(), rmsnorm_fwd_k)
  (dev(x), dev(w), dev(y), dev(rstd), D, e);
  QV_CUDA_LAUNCHED();
}

template <typename T>
void rmsnorm_backward(const T* x, const T* w, const T* rstd, const T* dy, T* dx, T* dw,
                      int64_t rows, int64_t D) {
  if (rows <= 0) return;
  // dw first: dx may not alias anything here, but the order keeps reads before writes anyway.
  column_sums<dev_t<T>, ColTerm::kDyXRstd>(dev(dy), dev(x), nullptr, dev(rstd), dev(dw), rows, D);
  QV_LAUNCH(row_grid(rows), kRowThreads, 0, cuda_stream(), rmsnorm_bwd_k)
  (dev(x), dev(w), dev(rstd), dev(dy), dev(dx), D);
  QV_CUDA_LAUNCHED();
}

template <typename T>
void layernorm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows,
                       int64_t D, T eps) {
  if (rows <= 0) return;
  float e;
  if constexpr (std::is_same_v<T, qv::bf16>)
    e = qv::to_float(eps);
  else
    e = eps;
  QV_LAUNCH(row_grid(rows), kRowThreads, 0, cuda_stream(), layernorm_fwd_k)
  (dev(x), dev(w), dev(b), dev(y), dev(mean), dev(rstd), D, e);
  QV_CUDA_LAUNCHED();
}

template <typename T>
void layernorm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx,
                        T* dw, T* db, int64_t rows, int64_t D) {
  if (rows <= 0) return;
  column_sums<dev_t<T>, ColTerm::kDyXhat>(dev(dy), dev(x), dev(mean), dev(rstd), dev(dw), rows, D);
  column_sums<dev_t<T>, ColTerm::kDy>(dev(dy), nullptr, nullptr, nullptr, dev(db), rows, D);
  QV_LAUNCH(row_grid(rows), kRowThreads, 0, cuda_stream(), layernorm_bwd_k)
  (dev(x), dev(w), dev(mean), dev(rstd), dev(dy), dev(dx), D);
  QV_CUDA_LAUNCHED();
}

// ---- cross-entropy ----

namespace {

// One block per row. row_loss[r] = lse - x[t] (0 for ignored rows); bad[0] = lowest row whose
// target is invalid (atomicMin; starts at rows). Row r's gradient goes to d_all + r * ld. d may
// alias x when D is float and ld = V: each element is read and written by the same thread, and
// x[t] is read before the block's first barrier.
// D: float, or __nv_bfloat16 for the bf16 gradient (each element the float value rounded to
// nearest even, as the CPU op).
template <typename D>
__global__ void cross_entropy_k(const float* x_all, const int64_t* targets, D* d_all, int64_t ld,
                                float* row_loss, unsigned long long* bad, int64_t V,
                                float grad_scale) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const float* x = x_all + r * V;
  D* d = d_all ? d_all + r * ld : nullptr;
  const int64_t t = targets[r];
  if (t == kIgnoreIndex || t < 0 || t >= V) {
    if (t != kIgnoreIndex && threadIdx.x == 0) atomicMin(bad, static_cast<unsigned long long>(r));
    if (threadIdx.x == 0) row_loss[r] = 0.f;
    if (d)
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) d[j] = from_f<D>(0.f);
    return;  // the whole block returns: no barrier is left waiting
  }
  const float target_logit = x[t];
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, x[j]);
  mx = block_max(mx, scratch);
  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) sum += expf(x[j] - mx);
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) row_loss[r] = mx + logf(sum) - target_logit;
  if (d) {
    const float factor = grad_scale / sum;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      const float p = expf(x[j] - mx) * factor;
      d[j] = from_f<D>(j == t ? p - grad_scale : p);
    }
  }
}

}  // namespace

namespace {

// Runs the kernel over rows, names the first invalid target, and sums the kept rows' terms
// (sum_row_losses, as the CPU op). Deferred (terms_out given): the terms are widened into
// terms_out and nothing is read back or checked, so the host does not wait.
template <typename D>
CrossEntropyResult run_cross_entropy(const float* logits, const int64_t* targets, D* dlogits,
                                     int64_t ld, int64_t rows, int64_t V, float grad_scale,
                                     double* terms_out = nullptr) {
  if (rows <= 0) return {};
  DeviceArray<float> row_loss(rows);
  DeviceArray<unsigned long long> bad(1);
  const unsigned long long none = static_cast<unsigned long long>(rows);
  if (terms_out)
    fill_zero(bad.data(), bad.bytes());  // not read: no upload, which would wait
  else
    bad.upload(&none);
  QV_LAUNCH(row_grid(rows), 512, 0, cuda_stream(), cross_entropy_k<D>)
  (logits, targets, dlogits, ld, row_loss.data(), bad.data(), V, grad_scale);
  QV_CUDA_LAUNCHED();
  if (terms_out) {
    widen_to_double(row_loss.data(), terms_out, rows);
    return {};
  }
  unsigned long long first = 0;
  bad.download(&first);
  if (first != none) {
    int64_t t = 0;
    copy_to_host(&t, targets + first, sizeof t);
    fail_bad_target(t, static_cast<int64_t>(first), V);
  }
  std::vector<float> loss(static_cast<size_t>(rows));
  std::vector<int64_t> tg(static_cast<size_t>(rows));
  row_loss.download(loss.data());
  copy_to_host(tg.data(), targets, rows * static_cast<int64_t>(sizeof(int64_t)));
  return sum_row_losses(loss.data(), tg.data(), rows);
}

}  // namespace

template <typename T>
CrossEntropyResult cross_entropy(const T* logits, const int64_t* targets, T* dlogits, int64_t rows,
                                 int64_t V, T grad_scale) {
  static_assert(std::is_same_v<T, float>, "CUDA cross_entropy: float logits only");
  return run_cross_entropy<float>(logits, targets, dlogits, V, rows, V, grad_scale);
}

// A bf16 gradient written over the logits' own memory (ld = 2 V) would race inside a row (a
// thread's bf16 store lands on floats another thread has yet to read), so that case goes
// through a [rows, V] scratch array and one strided copy into place.
namespace {

CrossEntropyResult run_cross_entropy_bf16(float* logits, const int64_t* targets, bf16* dlogits,
                                          int64_t ld, int64_t rows, int64_t V, float grad_scale,
                                          double* terms_out) {
  if (ld < V) fail("cross_entropy: the bf16 gradient's row stride ", ld, " is below V = ", V);
  const char* d0 = reinterpret_cast<const char*>(dlogits);
  const char* x0 = reinterpret_cast<const char*>(logits);
  const bool overlaps = dlogits && rows > 0 && d0 < x0 + rows * V * sizeof(float) &&
                        x0 < d0 + ((rows - 1) * ld + V) * sizeof(bf16);
  if (!overlaps)
    return run_cross_entropy<__nv_bfloat16>(logits, targets, dev(dlogits), ld, rows, V, grad_scale,
                                            terms_out);
  DeviceArray<__nv_bfloat16> scratch(rows * V);
  const CrossEntropyResult r = run_cross_entropy<__nv_bfloat16>(logits, targets, scratch.data(), V,
                                                                rows, V, grad_scale, terms_out);
  QV_CUDA_CHECK(cudaMemcpy2DAsync(dlogits, ld * sizeof(bf16), scratch.data(), V * sizeof(bf16),
                                  V * sizeof(bf16), rows, cudaMemcpyDeviceToDevice, cuda_stream()));
  return r;
}

}  // namespace

CrossEntropyResult cross_entropy(float* logits, const int64_t* targets, bf16* dlogits, int64_t ld,
                                 int64_t rows, int64_t V, float grad_scale) {
  return run_cross_entropy_bf16(logits, targets, dlogits, ld, rows, V, grad_scale, nullptr);
}

void cross_entropy_terms(const float* logits, const int64_t* targets, float* dlogits, int64_t rows,
                         int64_t V, float grad_scale, double* row_loss) {
  run_cross_entropy<float>(logits, targets, dlogits, V, rows, V, grad_scale, row_loss);
}

void cross_entropy_terms(float* logits, const int64_t* targets, bf16* dlogits, int64_t ld,
                         int64_t rows, int64_t V, float grad_scale, double* row_loss) {
  run_cross_entropy_bf16(logits, targets, dlogits, ld, rows, V, grad_scale, row_loss);
}

#define QV_INSTANTIATE(T)                                                                        \
  template void rmsnorm_forward<T>(const T*, const T*, T*, T*, int64_t, int64_t, T);             \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t,     \
                                    int64_t);                                                    \
  template void layernorm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, \
                                     T);                                                         \
  template void layernorm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*,  \
                                      T*, int64_t, int64_t);                                     \
  template void bias_grad<T>(const T*, T*, int64_t, int64_t);
QV_INSTANTIATE(float)
QV_INSTANTIATE(qv::bf16)
#undef QV_INSTANTIATE
template CrossEntropyResult cross_entropy<float>(const float*, const int64_t*, float*, int64_t,
                                                 int64_t, float);

}  // namespace qv::kernels::cuda
