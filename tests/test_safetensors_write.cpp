// The streaming safetensors writer: byte-identical to writing converted copies, chunked BF16
// conversion across chunk boundaries, the returned CRC equals the file's, bad requests named.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/checksum.h"
#include "io/safetensors.h"

namespace qv {
namespace {

namespace fs = std::filesystem;

std::string temp(const std::string& name) {
  return (fs::temp_directory_path() / ("qwen3vl_stwrite_" + name)).string();
}

TEST(SafetensorsWrite, StreamedBf16EqualsConvertedCopiesAndCrcMatchesTheFile) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  // 70000 + 5 values: the conversion runs over more than one 65536-value chunk.
  Tensor big(DType::kF32, {70000, 1}), small(DType::kF32, {5});
  for (int64_t i = 0; i < big.numel(); ++i) big.data<float>()[i] = normal(rng);
  for (int64_t i = 0; i < small.numel(); ++i) small.data<float>()[i] = normal(rng);
  std::vector<int64_t> step = {42};

  const std::string streamed = temp("streamed.safetensors"), copied = temp("copied.safetensors");
  const uint32_t crc = io::write_safetensors(
      streamed, {{"z.big", DType::kBF16, big.shape(), big.raw(), DType::kF32},
                 {"a.small", DType::kF32, small.shape(), small.raw(), DType::kF32},
                 {"m.step", DType::kI64, {1}, step.data(), DType::kI64}});
  io::save_safetensors(copied, {{"z.big", big.to(DType::kBF16)},
                                {"a.small", small},
                                {"m.step", Tensor::from_i64(step, {1})}});
  EXPECT_EQ(io::read_file(streamed), io::read_file(copied));
  EXPECT_EQ(crc, io::crc32c_file(streamed));
}

// F16 (export_dtype = "float16"): streamed conversion equals Tensor::to's rounding, over a chunk
// boundary, including values beyond the F16 range (which become infinities in both).
TEST(SafetensorsWrite, StreamedF16EqualsConvertedCopies) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  Tensor big(DType::kF32, {70000});
  for (int64_t i = 0; i < big.numel(); ++i) big.data<float>()[i] = normal(rng);
  big.data<float>()[7] = 1e6f;
  big.data<float>()[8] = 1e-9f;
  const std::string streamed = temp("f16s.safetensors"), copied = temp("f16c.safetensors");
  io::write_safetensors(streamed, {{"w", DType::kF16, big.shape(), big.raw(), DType::kF32}});
  io::save_safetensors(copied, {{"w", big.to(DType::kF16)}});
  EXPECT_EQ(io::read_file(streamed), io::read_file(copied));
}

TEST(SafetensorsWrite, UnsupportedConversionAndDuplicateNamesAreErrors) {
  std::vector<float> v(4, 1.0f);
  const std::string path = temp("bad.safetensors");
  fs::remove(path);
  try {
    io::write_safetensors(path, {{"w", DType::kF64, {4}, v.data(), DType::kF32}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot store tensor 'w' of F32 as F64"),
              std::string::npos)
        << e.what();
  }
  try {
    io::write_safetensors(path, {{"w", DType::kF32, {4}, v.data(), DType::kF32},
                                 {"w", DType::kF32, {4}, v.data(), DType::kF32}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'w' given twice"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
}

}  // namespace
}  // namespace qv
