// A range of elements of the flat parameter buffer: what one data-parallel rank owns (its shard
// of a unit, or the whole buffer when replicated) and what its optimizer updates.
#pragma once
#include <cstdint>

namespace qv::dist {

// Flat-buffer elements [begin, end).
struct FlatRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

}  // namespace qv::dist
