// Row and column moves between buffers: the gathers, scatters and row adds the model does
// between kernels (vision features into placeholder rows, DeepStack adds, classifier chunks,
// the vision tower's qkv split, the KV cache's growth). Device-neutral: rows.cpp runs them on the
// calling thread's device (kernels/device.h); every pointer must live there.
#pragma once
#include <cstdint>

namespace qv::kernels {

// dst[dst_rows[i]] = src[src_rows[i]] for i < n, rows of D floats. A null index is the identity
// (row i), so a null dst_rows gathers and a null src_rows scatters. Destination rows must be
// distinct; rows are copied exactly.
void copy_rows(const float* src, const int64_t* src_rows, float* dst, const int64_t* dst_rows,
               int64_t n, int64_t D);

// dst[dst_rows[i]] += src[src_rows[i]] (one float add per element), same conventions.
void add_rows(const float* src, const int64_t* src_rows, float* dst, const int64_t* dst_rows,
              int64_t n, int64_t D);

// A block of columns: dst[r * dst_stride + c] = src[r * src_stride + c] for r < rows, c < cols.
// Splits [N, 3D] qkv rows into q, k, v (src offset by 0, D, 2D) and joins them back.
void copy_columns(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                  int64_t rows, int64_t cols);

}  // namespace qv::kernels
