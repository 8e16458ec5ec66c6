// CUDA emulator (tests/cuda_emu, docs/CUDA.md): stand-in for the toolkit's library_types.h, the
// element-type tags shared by the CUDA libraries. Only the tags our sources and the emulated
// cuBLASLt use are listed; their values are the toolkit's.
#pragma once

enum cudaDataType_t {
  CUDA_R_16F = 2,
  CUDA_R_32F = 0,
  CUDA_R_64F = 1,
  CUDA_R_16BF = 14,
};
typedef enum cudaDataType_t cudaDataType;
