// CUDA: the elementwise and row-gather ops (activations.h, rope.h, embedding.h). Each thread
// handles elements in a grid-stride loop; math is float whatever the storage type, with the CPU
// ops' formulas (torch's), and bf16 outputs are rounded once on store.
#include "kernels/cuda/activations.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/rows.h"

namespace qv::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCoeff = 0.044715f;
constexpr float kInvSqrt2 = 0.7071067811865476f;
constexpr float kInvSqrt2Pi = 0.3989422804014327f;

#define QV_GRID_STRIDE(i, n)                                                             \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

template <typename D>
__global__ void swiglu_fwd_k(const D* gate, const D* up, D* out, int64_t n) {
  QV_GRID_STRIDE(i, n) {
    const float g = to_f(gate[i]);
    out[i] = from_f<D>(g / (1.f + expf(-g)) * to_f(up[i]));
  }
}

template <typename D>
__global__ void swiglu_bwd_k(const D* gate, const D* up, const D* dout, D* dgate, D* dup,
                             int64_t n) {
  QV_GRID_STRIDE(i, n) {
    const float g = to_f(gate[i]), u = to_f(up[i]), d = to_f(dout[i]);
    const float s = 1.f / (1.f + expf(-g));
    dgate[i] = from_f<D>(d * u * (s * (1.f + g * (1.f - s))));
    dup[i] = from_f<D>(d * (g * s));
  }
}

template <typename D>
__global__ void gelu_tanh_fwd_k(const D* x, D* y, int64_t n) {
  QV_GRID_STRIDE(i, n) {
    const float v = to_f(x[i]);
    y[i] = from_f<D>(0.5f * v * (1.f + tanhf(kSqrt2OverPi * (v + kGeluCoeff * (v * v * v)))));
  }
}

template <typename D>
__global__ void gelu_tanh_bwd_k(const D* x, const D* dy, D* dx, int64_t n) {
  QV_GRID_STRIDE(i, n) {
    const float v = to_f(x[i]), v2 = v * v;
    const float t = tanhf(kSqrt2OverPi * (v + kGeluCoeff * (v2 * v)));
    const float left = 0.5f * (1.f + t);
    const float right = 0.5f * v * (1.f - t * t) * kSqrt2OverPi * (1.f + 3.f * kGeluCoeff * v2);
    dx[i] = from_f<D>(to_f(dy[i]) * (left + right));
  }
}

template <typename D>
__global__ void gelu_erf_fwd_k(const D* x, D* y, int64_t n) {
  QV_GRID_STRIDE(i, n) {
    const float v = to_f(x[i]);
    y[i] = from_f<D>(0.5f * v * (1.f + erff(v * kInvSqrt2)));
  }
}

template <typename D>
__global__ void gelu_erf_bwd_k(const D* x, const D* dy, D* dx, int64_t n) {
  QV_GRID_STRIDE(i, n) {
    const float v = to_f(x[i]);
    const float cdf = 0.5f * (1.f + erff(v * kInvSqrt2));
    const float pdf = kInvSqrt2Pi * expf(-0.5f * v * v);
    dx[i] = from_f<D>(to_f(dy[i]) * (cdf + v * pdf));
  }
}

template <typename D>
__global__ void add_k(D* a, const D* b, int64_t n) {
  QV_GRID_STRIDE(i, n) {
    a[i] = from_f<D>(to_f(a[i]) + to_f(b[i]));
  }
}

// One thread per (row, head, i < hd/2) pair: reads both halves before writing (y may alias x).
template <typename D>
__global__ void rope_k(const D* x, const D* cos, const D* sin, D* y, int64_t rows, int64_t heads,
                       int64_t half, bool backward) {
  const int64_t total = rows * heads * half;
  QV_GRID_STRIDE(idx, total) {
    const int64_t i = idx % half;
    const int64_t rh = idx / half;  // row * heads + head
    const int64_t r = rh / heads;
    const int64_t hd = 2 * half;
    const D* c = cos + r * hd;
    const D* s = sin + r * hd;
    const float a = to_f(x[rh * hd + i]), b = to_f(x[rh * hd + i + half]);
    if (!backward) {
      y[rh * hd + i] = from_f<D>(a * to_f(c[i]) - b * to_f(s[i]));
      y[rh * hd + i + half] = from_f<D>(b * to_f(c[i + half]) + a * to_f(s[i + half]));
    } else {
      y[rh * hd + i] = from_f<D>(a * to_f(c[i]) + b * to_f(s[i + half]));
      y[rh * hd + i + half] = from_f<D>(b * to_f(c[i + half]) - a * to_f(s[i]));
    }
  }
}

// Rows out of range are zero-filled and the lowest bad position is recorded in *bad (atomicMin;
// starts at n).
template <typename D>
__global__ void embedding_fwd_k(const int64_t* ids, const D* table, D* out, int64_t n,
                                int64_t vocab, int64_t dim, unsigned long long* bad) {
  const int64_t total = n * dim;
  QV_GRID_STRIDE(idx, total) {
    const int64_t i = idx / dim, j = idx % dim;
    const int64_t id = ids[i];
    if (id < 0 || id >= vocab) {
      out[idx] = from_f<D>(0.f);
      if (j == 0) atomicMin(bad, static_cast<unsigned long long>(i));
    } else {
      out[idx] = table[id * dim + j];
    }
  }
}

// Scatter-add backward without atomics: one thread per column j walks the rows in order, so
// repeated ids never race and the summation order is the CPU op's (i ascending, then tap c).
template <typename D>
__global__ void weighted_scatter_k(const int64_t* index, const D* weight, const D* dout, D* dtable,
                                   const uint8_t* skip, int64_t n, int64_t taps, int64_t dim) {
  QV_GRID_STRIDE(j, dim) {
    for (int64_t i = 0; i < n; ++i) {
      if (skip && skip[i]) continue;
      const float g = to_f(dout[i * dim + j]);
      for (int64_t c = 0; c < taps; ++c) {
        const int64_t t = index[i * taps + c];
        if (t < 0) continue;  // never written: a negative index would corrupt memory
        const float w = weight ? to_f(weight[i * taps + c]) : 1.f;
        dtable[t * dim + j] = from_f<D>(to_f(dtable[t * dim + j]) + w * g);
      }
    }
  }
}

template <typename D>
__global__ void weighted_gather_k(const int64_t* index, const D* weight, const D* table, D* out,
                                  int64_t n, int64_t taps, int64_t dim) {
  const int64_t total = n * dim;
  QV_GRID_STRIDE(idx, total) {
    const int64_t i = idx / dim, j = idx % dim;
    float acc = 0.f;
    for (int64_t c = 0; c < taps; ++c) {
      const int64_t t = index[i * taps + c];
      if (t >= 0) acc += to_f(weight[i * taps + c]) * to_f(table[t * dim + j]);
    }
    out[idx] = from_f<D>(acc);
  }
}

template <typename D>
__global__ void move_rows_k(const D* src, const int64_t* src_rows, D* dst, const int64_t* dst_rows,
                            int64_t n, int64_t dim, bool add) {
  const int64_t total = n * dim;
  QV_GRID_STRIDE(idx, total) {
    const int64_t i = idx / dim, j = idx % dim;
    const int64_t from = (src_rows ? src_rows[i] : i) * dim + j;
    const int64_t to = (dst_rows ? dst_rows[i] : i) * dim + j;
    dst[to] = add ? __fadd_rn(dst[to], src[from]) : src[from];
  }
}

__global__ void copy_columns_k(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                               int64_t rows, int64_t cols) {
  QV_GRID_STRIDE(idx, rows * cols) {
    const int64_t r = idx / cols, c = idx % cols;
    dst[r * dst_stride + c] = src[r * src_stride + c];
  }
}

#undef QV_GRID_STRIDE

#define QV_ELEMENTWISE(kernel, n, ...)                                                     \
  do {                                                                                     \
    if ((n) > 0) {                                                                         \
      QV_LAUNCH(grid_for((n), kThreads), kThreads, 0, cuda_stream(), kernel)(__VA_ARGS__); \
      QV_CUDA_LAUNCHED();                                                                  \
    }                                                                                      \
  } while (0)

}  // namespace

template <typename T>
void swiglu_forward(const T* gate, const T* up, T* out, int64_t n) {
  QV_ELEMENTWISE(swiglu_fwd_k, n, dev(gate), dev(up), dev(out), n);
}
template <typename T>
void swiglu_backward(const T* gate, const T* up, const T* dout, T* dgate, T* dup, int64_t n) {
  QV_ELEMENTWISE(swiglu_bwd_k, n, dev(gate), dev(up), dev(dout), dev(dgate), dev(dup), n);
}
template <typename T>
void gelu_tanh_forward(const T* x, T* y, int64_t n) {
  QV_ELEMENTWISE(gelu_tanh_fwd_k, n, dev(x), dev(y), n);
}
template <typename T>
void gelu_tanh_backward(const T* x, const T* dy, T* dx, int64_t n) {
  QV_ELEMENTWISE(gelu_tanh_bwd_k, n, dev(x), dev(dy), dev(dx), n);
}
template <typename T>
void gelu_erf_forward(const T* x, T* y, int64_t n) {
  QV_ELEMENTWISE(gelu_erf_fwd_k, n, dev(x), dev(y), n);
}
template <typename T>
void gelu_erf_backward(const T* x, const T* dy, T* dx, int64_t n) {
  QV_ELEMENTWISE(gelu_erf_bwd_k, n, dev(x), dev(dy), dev(dx), n);
}
template <typename T>
void add_inplace(T* a, const T* b, int64_t n) {
  QV_ELEMENTWISE(add_k, n, dev(a), dev(b), n);
}

template <typename T>
void rope_forward(const T* x, const T* cos, const T* sin, T* y, int64_t rows, int64_t heads,
                  int64_t hd) {
  QV_CHECK(hd % 2 == 0, "rope: head_dim must be even, got ", hd);
  QV_ELEMENTWISE(rope_k, rows * heads * (hd / 2), dev(x), dev(cos), dev(sin), dev(y), rows, heads,
                 hd / 2, false);
}
template <typename T>
void rope_backward(const T* dy, const T* cos, const T* sin, T* dx, int64_t rows, int64_t heads,
                   int64_t hd) {
  QV_CHECK(hd % 2 == 0, "rope: head_dim must be even, got ", hd);
  QV_ELEMENTWISE(rope_k, rows * heads * (hd / 2), dev(dy), dev(cos), dev(sin), dev(dx), rows, heads,
                 hd / 2, true);
}

template <typename T>
void embedding_forward(const int64_t* ids, const T* table, T* out, int64_t n, int64_t vocab,
                       int64_t D) {
  if (n <= 0 || D <= 0) return;
  DeviceArray<unsigned long long> bad(1);
  const unsigned long long none = static_cast<unsigned long long>(n);
  bad.upload(&none);
  QV_ELEMENTWISE(embedding_fwd_k, n * D, ids, dev(table), dev(out), n, vocab, D, bad.data());
  unsigned long long first = 0;
  bad.download(&first);
  if (first != none) {
    int64_t id = 0;
    copy_to_host(&id, ids + first, sizeof id);
    fail("embedding: token id ", id, " at position ", first, " is outside the vocabulary of size ",
         vocab);
  }
}

// Ids are not checked against the vocabulary here (the forward checked the same ids); negative
// ones are skipped rather than written.
template <typename T>
void embedding_backward(const int64_t* ids, const T* dout, T* dtable, int64_t n, int64_t D,
                        const uint8_t* skip) {
  if (n <= 0) return;
  QV_ELEMENTWISE(weighted_scatter_k, D, ids, static_cast<const dev_t<T>*>(nullptr), dev(dout),
                 dev(dtable), skip, n, int64_t{1}, D);
}

template <typename T>
void weighted_gather_forward(const int64_t* index, const T* weight, const T* table, T* out,
                             int64_t n, int64_t taps, int64_t D) {
  QV_ELEMENTWISE(weighted_gather_k, n * D, index, dev(weight), dev(table), dev(out), n, taps, D);
}

template <typename T>
void weighted_gather_backward(const int64_t* index, const T* weight, const T* dout, T* dtable,
                              int64_t n, int64_t taps, int64_t D) {
  if (n <= 0) return;
  QV_ELEMENTWISE(weighted_scatter_k, D, index, dev(weight), dev(dout), dev(dtable),
                 static_cast<const uint8_t*>(nullptr), n, taps, D);
}

void copy_rows(const float* src, const int64_t* src_rows, float* dst, const int64_t* dst_rows,
               int64_t n, int64_t D) {
  QV_ELEMENTWISE(move_rows_k<float>, n * D, src, src_rows, dst, dst_rows, n, D, false);
}

void add_rows(const float* src, const int64_t* src_rows, float* dst, const int64_t* dst_rows,
              int64_t n, int64_t D) {
  QV_ELEMENTWISE(move_rows_k<float>, n * D, src, src_rows, dst, dst_rows, n, D, true);
}

void copy_columns(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                  int64_t rows, int64_t cols) {
  QV_ELEMENTWISE(copy_columns_k, rows * cols, src, src_stride, dst, dst_stride, rows, cols);
}

#define QV_INSTANTIATE(T)                                                                      \
  template void swiglu_forward<T>(const T*, const T*, T*, int64_t);                            \
  template void swiglu_backward<T>(const T*, const T*, const T*, T*, T*, int64_t);             \
  template void gelu_tanh_forward<T>(const T*, T*, int64_t);                                   \
  template void gelu_tanh_backward<T>(const T*, const T*, T*, int64_t);                        \
  template void gelu_erf_forward<T>(const T*, T*, int64_t);                                    \
  template void gelu_erf_backward<T>(const T*, const T*, T*, int64_t);                         \
  template void add_inplace<T>(T*, const T*, int64_t);                                         \
  template void rope_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t);  \
  template void rope_backward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t); \
  template void embedding_forward<T>(const int64_t*, const T*, T*, int64_t, int64_t, int64_t); \
  template void embedding_backward<T>(const int64_t*, const T*, T*, int64_t, int64_t,          \
                                      const uint8_t*);                                         \
  template void weighted_gather_forward<T>(const int64_t*, const T*, const T*, T*, int64_t,    \
                                           int64_t, int64_t);                                  \
  template void weighted_gather_backward<T>(const int64_t*, const T*, const T*, T*, int64_t,   \
                                            int64_t, int64_t);

QV_INSTANTIATE(float)
QV_INSTANTIATE(qv::bf16)
#undef QV_INSTANTIATE

}  // namespace qv::kernels::cuda
