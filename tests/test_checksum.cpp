// CRC-32C: the published check value, the hardware path against the table-driven reference at
// every length and misalignment around the 8-byte blocks, and continuation across calls.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "io/checksum.h"

namespace qv {
namespace {

TEST(Crc32c, CheckValue) {
  // The CRC-32C catalogue's check value for "123456789" (RFC 3720 uses the same polynomial).
  const std::string s = "123456789";
  EXPECT_EQ(io::crc32c(s.data(), s.size()), 0xE3069283u);
  EXPECT_EQ(io::crc32c_portable(s.data(), s.size()), 0xE3069283u);
  EXPECT_EQ(io::crc32c(nullptr, 0), 0u);
}

TEST(Crc32c, FastPathEqualsTableAtEveryLengthAndOffset) {
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(300);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t offset = 0; offset < 8; ++offset)
    for (size_t n = 0; offset + n <= buf.size(); n += (n < 40 ? 1 : 13))
      ASSERT_EQ(io::crc32c(buf.data() + offset, n), io::crc32c_portable(buf.data() + offset, n))
          << "offset " << offset << " length " << n;
}

TEST(Crc32c, ContinuesAcrossCalls) {
  std::vector<uint8_t> buf(1000);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(i * 31 + 7);
  const uint32_t whole = io::crc32c(buf.data(), buf.size());
  for (size_t cut : {0, 1, 7, 8, 9, 500, 999, 1000})
    EXPECT_EQ(io::crc32c(buf.data() + cut, buf.size() - cut, io::crc32c(buf.data(), cut)), whole)
        << cut;
}

}  // namespace
}  // namespace qv
