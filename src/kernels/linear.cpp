// The dense layers of kernels/linear.h, composed of the GEMMs (kernels/gemm.h) and the bias
// primitives, and the dispatch of those primitives to the calling thread's device. Scratch for
// bf16-rounded operands comes from the device's arena, so a step allocates nothing.
#include "kernels/linear.h"

#include "core/buffer_pool.h"
#include "core/error.h"
#include "kernels/cpu/linear.h"
#include "kernels/dispatch.h"

namespace qv::kernels {
namespace {

// src rounded to bf16, held in the arena of the current device (a PoolVector would
// value-initialise its elements on the host, which device memory does not allow).
class RoundedBf16 {
 public:
  RoundedBf16(const float* src, int64_t n)
      : n_(static_cast<size_t>(n)), p_(n_ ? alloc_.allocate(n_) : nullptr) {
    convert_to_bf16(src, p_, n);
  }
  ~RoundedBf16() {
    if (p_) alloc_.deallocate(p_, n_);
  }
  RoundedBf16(const RoundedBf16&) = delete;
  RoundedBf16& operator=(const RoundedBf16&) = delete;
  const bf16* data() const { return p_; }

 private:
  PoolAllocator<bf16> alloc_;
  size_t n_;
  bf16* p_;
};

// The two bf16 backward products from a bf16 dy: dx = dy . w, dw += dy^T . round(x).
void products_from_bf16_dy(const float* x, Weight w, const bf16* dy, int64_t ldy, float* dx,
                           float* dw, int64_t M, int64_t K, int64_t N, bool accumulate_dx) {
  if (dx)
    gemm_bf16(false, false, M, K, N, 1.0f, dy, ldy, w.b16, K, accumulate_dx ? 1.0f : 0.0f, dx, K);
  if (dw) {
    const RoundedBf16 xb(x, M * K);
    gemm_bf16(true, false, N, K, M, 1.0f, dy, ldy, xb.data(), K, 1.0f, dw, K);
  }
}

}  // namespace

template <typename T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, int64_t M, int64_t K, int64_t N) {
  if (bias) broadcast_bias(bias, y, M, N);
  gemm<T>(false, true, M, N, K, T(1), x, K, w, K, bias ? T(1) : T(0), y, N);
}

void linear_forward(const float* x, Weight w, const float* bias, float* y, int64_t M, int64_t K,
                    int64_t N) {
  if (!w.b16) return linear_forward<float>(x, w.f32, bias, y, M, K, N);
  if (bias) broadcast_bias(bias, y, M, N);
  const RoundedBf16 xb(x, M * K);
  gemm_bf16(false, true, M, N, K, 1.0f, xb.data(), K, w.b16, K, bias ? 1.0f : 0.0f, y, N);
}

template <typename T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* dbias, int64_t M,
                     int64_t K, int64_t N, bool accumulate_dx) {
  if (dx) gemm<T>(false, false, M, K, N, T(1), dy, N, w, K, accumulate_dx ? T(1) : T(0), dx, K);
  if (dw) gemm<T>(true, false, N, K, M, T(1), dy, N, x, K, T(1), dw, K);
  if (dbias) bias_grad(dy, dbias, M, N);
}

void linear_backward(const float* x, Weight w, const float* dy, float* dx, float* dw, float* dbias,
                     int64_t M, int64_t K, int64_t N, bool accumulate_dx) {
  if (!w.b16) return linear_backward<float>(x, w.f32, dy, dx, dw, dbias, M, K, N, accumulate_dx);
  if (dx || dw) {
    const RoundedBf16 dyb(dy, M * N);
    products_from_bf16_dy(x, w, dyb.data(), N, dx, dw, M, K, N, accumulate_dx);
  }
  if (dbias) bias_grad(dy, dbias, M, N);
}

void linear_backward(const float* x, Weight w, const bf16* dy, int64_t ldy, float* dx, float* dw,
                     int64_t M, int64_t K, int64_t N) {
  QV_CHECK(w.b16 != nullptr, "linear_backward with a bf16 dy needs the weight's bf16 copy");
  QV_CHECK(ldy >= N, "linear_backward: dy's row stride ", ldy, " is below N = ", N);
  products_from_bf16_dy(x, w, dy, ldy, dx, dw, M, K, N, false);
}

template <typename T>
void broadcast_bias(const T* bias, T* y, int64_t M, int64_t N) {
  QV_DISPATCH_T(T, broadcast_bias, bias, y, M, N);
}

template <typename T>
void bias_grad(const T* dy, T* dbias, int64_t M, int64_t N) {
  QV_DISPATCH_T(T, bias_grad, dy, dbias, M, N);
}

#define QV_INSTANTIATE(T)                                                                       \
  template void linear_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t); \
  template void linear_backward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t,  \
                                   int64_t, bool);                                              \
  template void broadcast_bias<T>(const T*, T*, int64_t, int64_t);                              \
  template void bias_grad<T>(const T*, T*, int64_t, int64_t);
QV_INSTANTIATE(float)
QV_INSTANTIATE(double)
#undef QV_INSTANTIATE

}  // namespace qv::kernels
