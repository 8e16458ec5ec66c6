// CUDA emulator (tests/cuda_emu, docs/CUDA.md): a reference cublasLtMatmul; what it covers and
// what not is in include/cublasLt.h. A naive loop: D(i, j) = alpha * sum_k op(A)(i, k) op(B)(k, j)
// + beta * C(i, j), the sum in float in increasing k, then rounded to D's type.
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <cstring>
#include <initializer_list>

#include "emu_internal.h"

struct qvemu_lt_handle {
  int device;
};
struct qvemu_lt_desc {
  cublasComputeType_t compute;
  cudaDataType_t scale;
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
};
struct qvemu_lt_layout {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;
  int64_t stride = 0;
};
struct qvemu_lt_pref {
  size_t max_workspace = 0;
};

namespace {

template <typename T>
bool read_attr(T* out, const void* buf, size_t bytes) {
  if (bytes != sizeof(T) || !buf) return false;
  std::memcpy(out, buf, sizeof(T));
  return true;
}

size_t elem_bytes(cudaDataType_t t) {
  return t == CUDA_R_32F ? 4 : 2;
}

float load(const void* base, cudaDataType_t t, int64_t idx) {
  if (t == CUDA_R_32F) return static_cast<const float*>(base)[idx];
  return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[idx]);
}

void store(void* base, cudaDataType_t t, int64_t idx, float v) {
  if (t == CUDA_R_32F)
    static_cast<float*>(base)[idx] = v;
  else
    static_cast<__nv_bfloat16*>(base)[idx] = __float2bfloat16_rn(v);
}

bool supported_type(cudaDataType_t t) {
  return t == CUDA_R_32F || t == CUDA_R_16BF;
}

// The bytes a column-major layout spans (all batches), for the device-memory check.
size_t span_bytes(const qvemu_lt_layout& l) {
  const size_t one = ((l.cols - 1) * static_cast<size_t>(l.ld) + l.rows) * elem_bytes(l.type);
  return one +
         static_cast<size_t>(l.batch - 1) * static_cast<size_t>(l.stride) * elem_bytes(l.type);
}

}  // namespace

cublasStatus_t cublasLtCreate(cublasLtHandle_t* handle) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) return CUBLAS_STATUS_NOT_INITIALIZED;
  *handle = new qvemu_lt_handle{qvemu::current_device()};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

size_t cublasLtGetVersion() {
  return 0;  // "cuBLASLt 0.0.0": the emulator's reference, not a cuBLASLt release
}

const char* cublasLtGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* desc, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
  *desc = new qvemu_lt_desc{compute, scale};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t desc) {
  delete desc;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t desc,
                                              cublasLtMatmulDescAttributes_t attr, const void* buf,
                                              size_t bytes) {
  bool ok = false;
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
      ok = read_attr(&desc->ta, buf, bytes);
      break;
    case CUBLASLT_MATMUL_DESC_TRANSB:
      ok = read_attr(&desc->tb, buf, bytes);
      break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
      ok = read_attr(&desc->epilogue, buf, bytes);
      break;
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE:
      ok = read_attr(&desc->compute, buf, bytes);
      break;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE:
      ok = read_attr(&desc->scale, buf, bytes);
      break;
    default:
      return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* layout, cudaDataType_t type,
                                          uint64_t rows, uint64_t cols, int64_t ld) {
  *layout = new qvemu_lt_layout{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t layout) {
  delete layout;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t layout,
                                                cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t bytes) {
  bool ok = false;
  switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
      ok = read_attr(&layout->batch, buf, bytes);
      break;
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
      ok = read_attr(&layout->stride, buf, bytes);
      break;
    default:
      return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  return ok ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  *pref = new qvemu_lt_pref{};
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr,
                                                    const void* buf, size_t bytes) {
  if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES)
    return read_attr(&pref->max_workspace, buf, bytes) ? CUBLAS_STATUS_SUCCESS
                                                       : CUBLAS_STATUS_INVALID_VALUE;
  uint32_t alignment = 0;  // the alignments only restrict the choice of algorithm
  return read_attr(&alignment, buf, bytes) ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

namespace {

// The checks cuBLASLt makes of a problem: supported types, layouts that fit op(A) op(B) = D.
cublasStatus_t check_problem(const qvemu_lt_desc& op, const qvemu_lt_layout& a,
                             const qvemu_lt_layout& b, const qvemu_lt_layout& c,
                             const qvemu_lt_layout& d) {
  if (op.compute != CUBLAS_COMPUTE_32F || op.scale != CUDA_R_32F ||
      op.epilogue != CUBLASLT_EPILOGUE_DEFAULT || op.ta == CUBLAS_OP_C || op.tb == CUBLAS_OP_C)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  if (!supported_type(a.type) || a.type != b.type || !supported_type(c.type) || c.type != d.type)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  const uint64_t m = d.rows, n = d.cols;
  const uint64_t am = op.ta == CUBLAS_OP_N ? a.rows : a.cols;
  const uint64_t ak = op.ta == CUBLAS_OP_N ? a.cols : a.rows;
  const uint64_t bk = op.tb == CUBLAS_OP_N ? b.rows : b.cols;
  const uint64_t bn = op.tb == CUBLAS_OP_N ? b.cols : b.rows;
  if (am != m || bn != n || ak != bk || c.rows != m || c.cols != n)
    return CUBLAS_STATUS_INVALID_VALUE;
  for (const qvemu_lt_layout* l : {&a, &b, &c, &d})
    if (l->rows == 0 || l->cols == 0 || l->ld < static_cast<int64_t>(l->rows) || l->batch < 1)
      return CUBLAS_STATUS_INVALID_VALUE;
  if (c.ld != d.ld || c.batch != d.batch || a.batch != d.batch || b.batch != d.batch)
    return CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t* results,
                                              int* returned) {
  if (!handle || !desc || !a || !b || !c || !d || !pref || requested < 1 || !results || !returned)
    return CUBLAS_STATUS_INVALID_VALUE;
  const cublasStatus_t st = check_problem(*desc, *a, *b, *c, *d);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  results[0] = cublasLtMatmulHeuristicResult_t{};
  results[0].algo.data[0] = 0x51e0u;  // "the reference loop"
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha,
                              const void* A, cublasLtMatrixLayout_t a_desc, const void* B,
                              cublasLtMatrixLayout_t b_desc, const void* beta, const void* C,
                              cublasLtMatrixLayout_t c_desc, void* D, cublasLtMatrixLayout_t d_desc,
                              const cublasLtMatmulAlgo_t* algo, void* /*workspace*/,
                              size_t /*workspace_bytes*/, cudaStream_t stream) {
  if (!handle || !desc || !alpha || !beta || !a_desc || !b_desc || !c_desc || !d_desc)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (handle->device != qvemu::current_device()) return CUBLAS_STATUS_INVALID_VALUE;
  if (qvemu::stream_device(stream) != qvemu::current_device()) return CUBLAS_STATUS_INVALID_VALUE;
  if (algo && algo->data[0] != 0x51e0u) return CUBLAS_STATUS_INVALID_VALUE;
  const cublasStatus_t st = check_problem(*desc, *a_desc, *b_desc, *c_desc, *d_desc);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  const qvemu_lt_layout &la = *a_desc, &lb = *b_desc, &lc = *c_desc, &ld = *d_desc;
  float al = 0.f, be = 0.f;
  std::memcpy(&al, alpha, sizeof al);  // host pointer mode
  std::memcpy(&be, beta, sizeof be);
  if (!qvemu::valid_range(A, span_bytes(la), false) ||
      !qvemu::valid_range(B, span_bytes(lb), false) ||
      !qvemu::valid_range(D, span_bytes(ld), false) ||
      (be != 0.f && !qvemu::valid_range(C, span_bytes(lc), false)))
    return CUBLAS_STATUS_INVALID_VALUE;  // cuBLASLt would fault; the emulator reports it
  const int64_t m = static_cast<int64_t>(ld.rows), n = static_cast<int64_t>(ld.cols);
  const int64_t k = static_cast<int64_t>(desc->ta == CUBLAS_OP_N ? la.cols : la.rows);
  const bool ta = desc->ta == CUBLAS_OP_T, tb = desc->tb == CUBLAS_OP_T;
  for (int32_t batch = 0; batch < ld.batch; ++batch) {
    const int64_t oa = batch * la.stride, ob = batch * lb.stride, oc = batch * lc.stride,
                  od = batch * ld.stride;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < m; ++i) {
        float acc = 0.f;
        for (int64_t p = 0; p < k; ++p) {
          const float x = load(A, la.type, oa + (ta ? p + i * la.ld : i + p * la.ld));
          const float y = load(B, lb.type, ob + (tb ? j + p * lb.ld : p + j * lb.ld));
          acc += x * y;
        }
        float out = al * acc;
        // beta == 0: C is not read (it may hold NaN), as BLAS specifies.
        if (be != 0.f) out += be * load(C, lc.type, oc + i + j * lc.ld);
        store(D, ld.type, od + i + j * ld.ld, out);
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}
