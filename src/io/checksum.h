// CRC-32C (Castagnoli), used for checkpoint integrity and TensorBoard's TFRecord framing.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace qv::io {

// `crc` continues a previous call's result. Uses the SSE4.2 instruction where the CPU has it.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
// The table-driven version (the reference the hardware path is tested against).
uint32_t crc32c_portable(const void* data, size_t size, uint32_t crc = 0);
// TFRecord's masked form of a CRC.
uint32_t masked_crc32c(const void* data, size_t size);
// CRC-32C of a whole file, streamed; throws if it cannot be read.
uint32_t crc32c_file(const std::string& path);

}  // namespace qv::io
