// CUDA: Elementwise activations and their derivatives.
// Same signatures and semantics as kernels/cpu/activations.h; every pointer is device memory of the
// current device, and ops run on its stream (kernels/cuda/runtime.h). T = float or qv::bf16
// (bf16 elements are computed in float and rounded once on store).
#pragma once
#include <cstdint>

namespace qv::kernels::cuda {

// SwiGLU: out = silu(gate) * up. Backward overwrites dgate, dup.
template <typename T>
void swiglu_forward(const T* gate, const T* up, T* out, int64_t n);
template <typename T>
void swiglu_backward(const T* gate, const T* up, const T* dout, T* dgate, T* dup, int64_t n);

// GELU, tanh approximation (torch approximate="tanh"; HF "gelu_pytorch_tanh"). y may alias x.
template <typename T>
void gelu_tanh_forward(const T* x, T* y, int64_t n);
template <typename T>
void gelu_tanh_backward(const T* x, const T* dy, T* dx, int64_t n);

// GELU, exact erf form (torch nn.GELU()). y may alias x.
template <typename T>
void gelu_erf_forward(const T* x, T* y, int64_t n);
template <typename T>
void gelu_erf_backward(const T* x, const T* dy, T* dx, int64_t n);

// a += b, n elements.
template <typename T>
void add_inplace(T* a, const T* b, int64_t n);

}  // namespace qv::kernels::cuda
