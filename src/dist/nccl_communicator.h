// The GPU communicator: NCCL behind dist::Communicator, built with the CUDA backend when NCCL's
// header and library are found (QWEN3VL_HAS_NCCL). Float collectives take device memory of the
// current device (the gradients and parameters live there); the double ones (loss sums, norms)
// take host memory and stage through the device, as do the all-to-alls when given host memory
// (the streamed export's windows and range lists; expert parallelism passes device rows). Blocking
// calls return when the result is in place; start_all_reduce_sum enqueues on a communication stream
// ordered after the work already issued, and wait_all makes later work (and the host) wait for it.
// A collective that does not finish within the timeout aborts the NCCL communicator and throws.
#pragma once
#include <memory>

#include "dist/communicator.h"

namespace qv::dist {

// One NCCL rank per process, over the same ranks as `bootstrap` (MPI, or the local one), whose
// broadcast carries NCCL's unique id. Call with the process's GPU current (a DeviceScope); the
// communicator keeps using that GPU.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap,
                                                     double timeout_s = 300);

}  // namespace qv::dist
