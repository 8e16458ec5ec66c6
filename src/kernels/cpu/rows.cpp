// Row ops on the CPU: one row per iteration, rows spread over threads when the copy is large
// enough to pay for them. Destination rows are distinct, so threads never share an output and
// the result does not depend on the thread count.
#include "kernels/cpu/rows.h"

#include <cstring>

namespace qv::kernels::cpu {
namespace {

constexpr int64_t kParallelFloats = 1 << 15;  // below this a copy is not worth a thread team

int64_t row_at(const int64_t* index, int64_t i) {
  return index ? index[i] : i;
}

}  // namespace

void copy_rows(const float* src, const int64_t* src_rows, float* dst, const int64_t* dst_rows,
               int64_t n, int64_t D) {
#pragma omp parallel for if (n * D > kParallelFloats)
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(dst + row_at(dst_rows, i) * D, src + row_at(src_rows, i) * D, D * sizeof(float));
}

void add_rows(const float* src, const int64_t* src_rows, float* dst, const int64_t* dst_rows,
              int64_t n, int64_t D) {
#pragma omp parallel for if (n * D > kParallelFloats)
  for (int64_t i = 0; i < n; ++i) {
    float* d = dst + row_at(dst_rows, i) * D;
    const float* s = src + row_at(src_rows, i) * D;
    for (int64_t c = 0; c < D; ++c) d[c] += s[c];
  }
}

void copy_columns(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                  int64_t rows, int64_t cols) {
#pragma omp parallel for if (rows * cols > kParallelFloats)
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * dst_stride, src + r * src_stride, cols * sizeof(float));
}

}  // namespace qv::kernels::cpu
