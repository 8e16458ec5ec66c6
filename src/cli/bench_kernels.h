// `qwen3vl bench kernels --device cuda`: the CUDA backend's main kernels timed on the GPU
// (cuBLASLt GEMMs in bf16 and float, varlen attention forward + backward in bf16), with rates
// against the GPU's bf16 dense peak. Part of scripts/gpu_check.sh.
#pragma once
#include "cli/command.h"

namespace qv::cli {

int run_bench_kernels(const Args& args);

}  // namespace qv::cli
