// CUDA emulator (tests/cuda_emu, docs/CUDA.md): stand-in for mma.h, the warp matrix functions
// (namespace nvcuda::wmma).
//
// A real fragment spreads its tile over the 32 lanes in an unspecified layout. Here every lane
// holds the whole tile (num_elements = rows * cols, x[] in row-major order of the tile), so
// element-wise code over frag.x[i] that does not depend on the position (scaling, conversion,
// fill) behaves as on a GPU, and code that does depend on it is not portable anyway. The
// collective operations (load_matrix_sync, store_matrix_sync, mma_sync) need all 32 lanes: they
// run once per warp, between two warp barriers, by lane 0, which first checks that every lane
// passed the same pointer, ldm and layout and holds the same input fragments (a difference
// aborts: the lanes were not converged or the code is position-dependent), then gives every
// lane the result. fill_fragment is per lane, as on a GPU.
//
// Emulated: shapes m16n16k16, m32n8k16, m8n32k16; matrix_a / matrix_b of __nv_bfloat16 (or
// float, as a convenience) in row_major or col_major; float accumulators loaded and stored in
// mem_row_major or mem_col_major; mma_sync D = A B + C with products and sums in float, k in
// increasing order (a tensor core's order and internal precision differ: compare with a
// tolerance). Not emulated: half, tf32, int8 and double fragments, __nv_bfloat16 accumulators,
// the bmma / sub-byte operations.
#pragma once
#include <cstring>
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
template <typename Use, int M, int N, int K>
struct Shape;
template <int M, int N, int K>
struct Shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct Shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct Shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};
template <int M, int N, int K>
constexpr bool kSupported = (M == 16 && N == 16 && K == 16) || (M == 32 && N == 8 && K == 16) ||
                            (M == 8 && N == 32 && K == 16);
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
class fragment {
  static_assert(detail::kSupported<M, N, K>, "wmma: shape not emulated");
  static_assert(std::is_same_v<Use, accumulator>
                    ? std::is_same_v<T, float>
                    : (std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, float>),
                "wmma: element type not emulated");
  static_assert(std::is_same_v<Use, accumulator> == std::is_void_v<Layout>,
                "wmma: matrix_a / matrix_b need row_major or col_major, accumulators none");

 public:
  static constexpr int rows = detail::Shape<Use, M, N, K>::rows;
  static constexpr int cols = detail::Shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  using element_type = T;
  using storage_element_type = T;
  T x[num_elements];
};

namespace detail {

// What one lane brings to a collective: compared across lanes, then acted on once.
struct LaneOp {
  const void* in[3] = {nullptr, nullptr, nullptr};
  size_t in_bytes = 0;
  void* out = nullptr;
  size_t out_bytes = 0;
  const void* mem = nullptr;
  unsigned ldm = 0;
  int layout = 0;
};

[[noreturn]] inline void mismatch(const char* name, const char* what) {
  ::qvemu::fatal(name, what);
}

// Runs act(lane 0's op) once per warp between two full-warp barriers, after checking that every
// lane brought the same arguments, and copies lane 0's output fragment to every lane.
template <typename Act>
void collective(LaneOp& mine, const char* name, Act act) {
  const uint64_t* row = ::qvemu::warp_exchange(0xffffffffu, ::qvemu::to_bits(&mine), name);
  if (::qvemu::warp_participants() != 0xffffffffu)
    mismatch(name, ": needs all 32 lanes of the warp (some have exited)");
  if (::qvemu::lane_id() == 0) {
    LaneOp* ops[32];
    for (int l = 0; l < 32; ++l) ops[l] = ::qvemu::from_bits<LaneOp*>(row[l]);
    const LaneOp& lead = *ops[0];
    for (int l = 1; l < 32; ++l) {
      const LaneOp& o = *ops[l];
      if (o.mem != lead.mem || o.ldm != lead.ldm || o.layout != lead.layout)
        mismatch(name, ": lanes passed different pointers, ldm or layouts");
      for (int i = 0; i < 3; ++i)
        if (lead.in[i] && std::memcmp(o.in[i], lead.in[i], lead.in_bytes) != 0)
          mismatch(name, ": lanes hold different fragments (position-dependent element code?)");
    }
    act(lead);
    for (int l = 1; l < 32; ++l)
      if (ops[l]->out) std::memcpy(ops[l]->out, lead.out, lead.out_bytes);
  }
  ::qvemu::warp_exchange(0xffffffffu, 0, name);
}

template <typename T>
inline float to_float(T v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __bfloat162float(v);
  else
    return v;
}

}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
inline void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& v) {
  const T t = static_cast<T>(v);
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = t;
}

// matrix_a / matrix_b: the layout is the fragment's.
template <typename Use, int M, int N, int K, typename T, typename Layout>
inline void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const T* p, unsigned ldm) {
  static_assert(!std::is_void_v<Layout>, "wmma: an accumulator load takes a layout_t");
  using F = fragment<Use, M, N, K, T, Layout>;
  detail::LaneOp op;
  op.out = f.x;
  op.out_bytes = sizeof f.x;
  op.mem = p;
  op.ldm = ldm;
  detail::collective(op, "wmma::load_matrix_sync", [&](const detail::LaneOp& lead) {
    auto* out = static_cast<T*>(lead.out);
    for (int r = 0; r < F::rows; ++r)
      for (int c = 0; c < F::cols; ++c)
        out[r * F::cols + c] = std::is_same_v<Layout, row_major> ? p[r * ldm + c] : p[r + c * ldm];
  });
}

template <int M, int N, int K>
inline void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm,
                             layout_t layout) {
  using F = fragment<accumulator, M, N, K, float>;
  detail::LaneOp op;
  op.out = f.x;
  op.out_bytes = sizeof f.x;
  op.mem = p;
  op.ldm = ldm;
  op.layout = layout;
  detail::collective(op, "wmma::load_matrix_sync", [&](const detail::LaneOp& lead) {
    auto* out = static_cast<float*>(lead.out);
    for (int r = 0; r < F::rows; ++r)
      for (int c = 0; c < F::cols; ++c)
        out[r * F::cols + c] = layout == mem_row_major ? p[r * ldm + c] : p[r + c * ldm];
  });
}

template <int M, int N, int K>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f,
                              unsigned ldm, layout_t layout) {
  using F = fragment<accumulator, M, N, K, float>;
  detail::LaneOp op;
  op.in[0] = f.x;
  op.in_bytes = sizeof f.x;
  op.mem = p;
  op.ldm = ldm;
  op.layout = layout;
  detail::collective(op, "wmma::store_matrix_sync", [&](const detail::LaneOp& lead) {
    const auto* in = static_cast<const float*>(lead.in[0]);
    for (int r = 0; r < F::rows; ++r)
      for (int c = 0; c < F::cols; ++c)
        (layout == mem_row_major ? p[r * ldm + c] : p[r + c * ldm]) = in[r * F::cols + c];
  });
}

// D = A B + C (D may be C).
template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB>
inline void mma_sync(fragment<accumulator, M, N, K, float>& d,
                     const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b,
                     const fragment<accumulator, M, N, K, float>& c) {
  static_assert(std::is_same_v<TA, TB>, "wmma::mma_sync: A and B of one element type");
  struct Lane {
    const void *a, *b, *c;
    float* d;
  } mine{a.x, b.x, c.x, d.x};
  const char* name = "wmma::mma_sync";
  const uint64_t* row = ::qvemu::warp_exchange(0xffffffffu, ::qvemu::to_bits(&mine), name);
  if (::qvemu::warp_participants() != 0xffffffffu)
    detail::mismatch(name, ": needs all 32 lanes of the warp (some have exited)");
  if (::qvemu::lane_id() == 0) {
    for (int l = 1; l < 32; ++l) {
      const Lane* o = ::qvemu::from_bits<const Lane*>(row[l]);
      if (std::memcmp(o->a, a.x, sizeof a.x) != 0 || std::memcmp(o->b, b.x, sizeof b.x) != 0 ||
          std::memcmp(o->c, c.x, sizeof c.x) != 0)
        detail::mismatch(name, ": lanes hold different fragments (position-dependent code?)");
    }
    float out[M * N];
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        float acc = c.x[i * N + j];
        for (int k = 0; k < K; ++k)
          acc += detail::to_float(a.x[i * K + k]) * detail::to_float(b.x[k * N + j]);
        out[i * N + j] = acc;
      }
    for (int l = 0; l < 32; ++l)
      std::memcpy(::qvemu::from_bits<const Lane*>(row[l])->d, out, sizeof out);
  }
  ::qvemu::warp_exchange(0xffffffffu, 0, name);
}

}  // namespace wmma
}  // namespace nvcuda
