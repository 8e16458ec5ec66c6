// CPU implementation of the row ops (kernels/rows.h says what each does).
#pragma once
#include <cstdint>

namespace qv::kernels::cpu {

void copy_rows(const float* src, const int64_t* src_rows, float* dst, const int64_t* dst_rows,
               int64_t n, int64_t D);
void add_rows(const float* src, const int64_t* src_rows, float* dst, const int64_t* dst_rows,
              int64_t n, int64_t D);
void copy_columns(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                  int64_t rows, int64_t cols);

}  // namespace qv::kernels::cpu
