// What the processor can do, read once from CPUID (and XGETBV for what the OS enables). Code
// paths are chosen from these features, never from a table of CPU models.
#pragma once
#include <string>

namespace qv {

struct CpuFeatures {
  std::string vendor;  // "GenuineIntel", "AuthenticAMD", ...
  std::string brand;   // the model string, e.g. "AMD EPYC 9654 96-Core Processor"
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false;  // VCVTNEPS2BF16, VDPBF16PS
  bool amx_bf16 = false;     // AMX tiles with bf16 (and the OS lets us use them)
  bool avx512_core() const { return avx512f && avx512bw && avx512vl && avx512dq; }
  // The widest instruction set of the list above, e.g. "AVX-512 + AVX512-BF16 + AMX-BF16".
  std::string isa() const;
};

const CpuFeatures& cpu_features();

}  // namespace qv
