#include "core/cpu_features.h"

#include <cpuid.h>

#include <cstdint>
#include <cstring>

namespace qv {
namespace {

struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(unsigned leaf, unsigned sub = 0) {
  Regs r;
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
  return r;
}

bool bit(unsigned v, int i) {
  return (v >> i) & 1u;
}

// XCR0: which register states the OS saves on a context switch.
uint64_t xcr0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  return s.substr(i);
}

CpuFeatures detect() {
  CpuFeatures f;
  const unsigned max_leaf = __get_cpuid_max(0, nullptr);
  Regs v = cpuid(0);
  char vendor[13] = {};
  std::memcpy(vendor, &v.b, 4);
  std::memcpy(vendor + 4, &v.d, 4);
  std::memcpy(vendor + 8, &v.c, 4);
  f.vendor = vendor;
  if (static_cast<unsigned>(__get_cpuid_max(0x80000000, nullptr)) >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      Regs r = cpuid(0x80000002 + i);
      std::memcpy(brand + 16 * i, &r, 16);
    }
    f.brand = trim(brand);
  }
  if (max_leaf < 7) return f;
  const Regs l1 = cpuid(1), l7 = cpuid(7, 0), l7s1 = cpuid(7, 1);
  const bool osxsave = bit(l1.c, 27);
  const uint64_t x = osxsave ? xcr0() : 0;
  const bool os_avx = (x & 0x6) == 0x6;                 // XMM + YMM state
  const bool os_avx512 = os_avx && (x & 0xe0) == 0xe0;  // opmask + ZMM state
  const bool os_amx = (x & 0x60000) == 0x60000;         // XTILECFG + XTILEDATA
  f.fma = os_avx && bit(l1.c, 12);
  f.avx2 = os_avx && bit(l7.b, 5);
  f.avx512f = os_avx512 && bit(l7.b, 16);
  f.avx512dq = os_avx512 && bit(l7.b, 17);
  f.avx512bw = os_avx512 && bit(l7.b, 30);
  f.avx512vl = os_avx512 && bit(l7.b, 31);
  f.avx512_bf16 = os_avx512 && bit(l7s1.a, 5);
  f.amx_bf16 = os_amx && bit(l7.d, 22) && bit(l7.d, 24);  // AMX-BF16 and AMX-TILE
  return f;
}

}  // namespace

std::string CpuFeatures::isa() const {
  if (!avx2) return "SSE4 (no AVX2)";
  std::string s = avx512_core() ? "AVX-512" : "AVX2";
  if (avx512_bf16) s += " + AVX512-BF16";
  if (amx_bf16) s += " + AMX-BF16";
  return s;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

}  // namespace qv
