// Test-only fault injection for distributed runs. The environment variable QWEN3VL_FAULT makes
// one rank fail at the start of one step, so tests can check that the job then ends instead of
// hanging:
//   QWEN3VL_FAULT=exit@step:3,rank:1    rank 1 exits abruptly (code 17, no MPI_Finalize)
//   QWEN3VL_FAULT=stall@step:3,rank:1   rank 1 sleeps forever (the others' collectives time out)
// Not meant for production jobs; unset, it does nothing. io/write_faults.h reads the same
// variable for faults inside file writes (pause|enospc@bytes:K).
#pragma once
#include <cstdint>

namespace qv::train {

// Called by the trainer before each step (1-based) on every rank.
void maybe_inject_fault(int64_t step, int rank);

}  // namespace qv::train
