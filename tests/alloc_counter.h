// Counts calls to the global operator new (replaced in alloc_counter.cpp for the test binary),
// to prove that code does not touch the heap.
#pragma once
#include <cstdint>

namespace qv::testing {

// Starts counting allocations made by any thread; the previous count is discarded.
void start_counting_allocations();
// Stops counting and returns how many operator new calls happened since the start.
int64_t stop_counting_allocations();

}  // namespace qv::testing
