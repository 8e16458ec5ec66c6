// Dispatch of kernels/rows.h to the backend of the calling thread's device.
#include "kernels/rows.h"

#include "kernels/cpu/rows.h"
#include "kernels/dispatch.h"

namespace qv::kernels {

void copy_rows(const float* src, const int64_t* src_rows, float* dst, const int64_t* dst_rows,
               int64_t n, int64_t D) {
  QV_DISPATCH(copy_rows, src, src_rows, dst, dst_rows, n, D);
}

void add_rows(const float* src, const int64_t* src_rows, float* dst, const int64_t* dst_rows,
              int64_t n, int64_t D) {
  QV_DISPATCH(add_rows, src, src_rows, dst, dst_rows, n, D);
}

void copy_columns(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                  int64_t rows, int64_t cols) {
  QV_DISPATCH(copy_columns, src, src_stride, dst, dst_stride, rows, cols);
}

}  // namespace qv::kernels
