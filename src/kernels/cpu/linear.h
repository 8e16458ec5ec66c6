// Dense layers through BLAS: y = x . w^T (+ bias), the layout of torch.nn.Linear weights [out, in].
#pragma once
#include <cstdint>

namespace qv::kernels {

// y[M,N] = x[M,K] . w[N,K]^T (+ bias[N] when non-null). y is overwritten.
template <typename T>
void linear_forward(const T* x, const T* w, const T* bias, T* y, int64_t M, int64_t K, int64_t N);

// Given dy[M,N]: dx[M,K] = dy . w (overwritten, or added when accumulate_dx), dw[N,K] += dy^T . x,
// dbias[N] += column sums of dy. Any of dx, dw, dbias may be null to skip it.
template <typename T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* dbias, int64_t M,
                     int64_t K, int64_t N, bool accumulate_dx = false);

// Plain row-major matrix product C[M,N] = alpha * op(A) . op(B) + beta * C (BLAS gemm).
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace qv::kernels
