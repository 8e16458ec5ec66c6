// The CUDA implementation of kernels/rows.h (elementwise.cu; see that header for what each op
// does). Row indices live on the device.
#pragma once
#include <cstdint>

#include "kernels/rows.h"

namespace qv::kernels::cuda {

void copy_rows(const float* src, const int64_t* src_rows, float* dst, const int64_t* dst_rows,
               int64_t n, int64_t D);
void add_rows(const float* src, const int64_t* src_rows, float* dst, const int64_t* dst_rows,
              int64_t n, int64_t D);
void copy_columns(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                  int64_t rows, int64_t cols);

}  // namespace qv::kernels::cuda
