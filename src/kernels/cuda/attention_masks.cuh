// CUDA attention's masks, shared by the CUDA-core kernels (attention.cu) and the tensor-core
// ones (attention_tc.cu): which partners a row may attend. A partner counts when it is in the
// row's document (cu_seqlens, found by binary search on the device), before or at the row when
// causal, and not padding (key_valid, checked by the kernels per key).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace qv::kernels::cuda {

struct AttnArgs {
  int64_t rows;  // query tokens (forward, dq) or key tokens (dk-dv)
  int64_t heads, kv_heads, hd;
  bool causal;
  float scale;
  const int64_t* cu;
  int64_t n_seqs;
  const uint8_t* key_valid;
  int64_t decode_len;         // > 0: decoding; every query sees keys [0, decode_len)
  bool vector_loads = false;  // tensor-core kernels: rows load 8 elements at a time (aligned)
};

// Index of the document holding token t, or -1 when t is outside every document.
__device__ inline int64_t doc_of(const int64_t* cu, int64_t n_seqs, int64_t t) {
  if (n_seqs <= 0 || t < cu[0] || t >= cu[n_seqs]) return -1;
  int64_t lo = 0, hi = n_seqs;  // cu[lo] <= t < cu[hi]
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (cu[mid] <= t)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

// The keys query i may see: [lo, hi) (empty when lo >= hi).
__device__ inline void query_range(const AttnArgs& a, int64_t i, int64_t* lo, int64_t* hi) {
  if (a.decode_len > 0) {
    *lo = 0, *hi = a.decode_len;
    return;
  }
  const int64_t s = doc_of(a.cu, a.n_seqs, i);
  if (s < 0) {
    *lo = 0, *hi = 0;
    return;
  }
  *lo = a.cu[s] > 0 ? a.cu[s] : 0;       // clamped to the tokens: a bad cu_seqlens reads nothing
  *hi = a.causal ? i + 1 : a.cu[s + 1];  // outside [0, rows)
  if (*hi > a.rows) *hi = a.rows;
}

// The queries that may see key j: [lo, hi).
__device__ inline void key_range(const AttnArgs& a, int64_t j, int64_t* lo, int64_t* hi) {
  const int64_t s = doc_of(a.cu, a.n_seqs, j);
  if (s < 0) {
    *lo = 0, *hi = 0;
    return;
  }
  *lo = a.causal ? j : (a.cu[s] > 0 ? a.cu[s] : 0);
  *hi = a.cu[s + 1] < a.rows ? a.cu[s + 1] : a.rows;
}

}  // namespace qv::kernels::cuda
