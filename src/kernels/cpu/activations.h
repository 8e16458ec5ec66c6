// The CPU implementation of kernels/activations.h (OpenMP; see that header for what each op does).
#pragma once
#include <cstdint>

#include "kernels/activations.h"

namespace qv::kernels::cpu {

template <typename T>
void swiglu_forward(const T* gate, const T* up, T* out, int64_t n);
template <typename T>
void swiglu_backward(const T* gate, const T* up, const T* dout, T* dgate, T* dup, int64_t n);
template <typename T>
void gelu_tanh_forward(const T* x, T* y, int64_t n);
template <typename T>
void gelu_tanh_backward(const T* x, const T* dy, T* dx, int64_t n);
template <typename T>
void gelu_erf_forward(const T* x, T* y, int64_t n);
template <typename T>
void gelu_erf_backward(const T* x, const T* dy, T* dx, int64_t n);
template <typename T>
void add_inplace(T* a, const T* b, int64_t n);

}  // namespace qv::kernels::cpu
