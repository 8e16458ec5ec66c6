// The CUDA backend's op set, as kernels/dispatch.h calls it: every family header of
// kernels/cuda/, plus the device-memory ops of kernels/device.h. Included only inside
// src/kernels/ (and by tests).
#pragma once
#include <cstddef>

#include "core/device.h"
#include "kernels/cuda/activations.h"
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/linear.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/norms.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/rows.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device.h"

namespace qv::kernels::cuda {

// kernels/device.h on CUDA: copies between the host and a GPU or two GPUs (returns when done),
// and zeroing on the current GPU (stream-ordered).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);
void zero_bytes(void* p, size_t bytes);
void upload_input(void* dst, const void* host, size_t bytes);
void upload_input_ahead(void* dst, const void* host, size_t bytes, AheadWait wait);
void copy_on_device_bytes(void* dst, const void* src, size_t bytes);

}  // namespace qv::kernels::cuda
