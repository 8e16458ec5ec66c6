// Collective communication between training processes. The trainer talks only to this
// interface; MPI backs it on CPUs (dist/mpi_communicator.cpp) and NCCL is the place for GPUs.
#pragma once
#include <cstdint>
#include <memory>

#include "core/bf16.h"
#include "core/error.h"

namespace qv::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
  virtual void all_reduce_sum(double* data, int64_t n) = 0;
  virtual void all_reduce_max(double* data, int64_t n) = 0;
  // out[size * n] = every rank's in[n], in rank order.
  virtual void all_gather(const float* in, float* out, int64_t n) = 0;
  // all_gather of bf16 values (2 bytes each; ZeRO-3 gathers mixed-precision weights with it).
  virtual void all_gather_bf16(const bf16* in, bf16* out, int64_t n) {
    (void)in, (void)out, (void)n;
    throw Error("this communicator has no all_gather_bf16");
  }
  // in[size * n] summed over ranks; rank r keeps block r in out[n].
  virtual void reduce_scatter_sum(const float* in, float* out, int64_t n) = 0;
  virtual void broadcast(float* data, int64_t n, int root) = 0;
  // All-to-all with a size per rank pair (MPI_Alltoallv), for expert parallelism: this rank
  // sends send_counts[r] floats to rank r, taken from `in` in rank order, and receives
  // recv_counts[r] floats from rank r into `out` in rank order (both arrays have size()
  // entries; recv_counts[r] must equal what rank r sends here).
  virtual void all_to_all_v(const float* in, const int64_t* send_counts, float* out,
                            const int64_t* recv_counts) {
    (void)in, (void)send_counts, (void)out, (void)recv_counts;
    throw Error("this communicator has no all_to_all_v (expert parallelism)");
  }
  // out[r * n, (r + 1) * n) = rank r's in[rank() * n, (rank() + 1) * n) (MPI_Alltoall).
  virtual void all_to_all(const int64_t* in, int64_t* out, int64_t n) {
    (void)in, (void)out, (void)n;
    throw Error("this communicator has no all_to_all (expert parallelism)");
  }
  virtual void barrier() = 0;

  // A sum all-reduce that returns at once; wait_all() completes every one started so far (the
  // data must not be touched until then). The timeout applies to wait_all().
  virtual void start_all_reduce_sum(float* data, int64_t n) = 0;
  // Lets started collectives advance (MPI moves them forward only inside MPI calls).
  virtual void progress() = 0;
  virtual void wait_all() = 0;

  // Ranks that pass the same color form a new communicator, ranked by key (MPI_Comm_split).
  // Every rank of this communicator must call it.
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
};

// The world of one process: every collective is the identity.
std::unique_ptr<Communicator> make_local_communicator();

// MPI_COMM_WORLD; a collective that takes longer than timeout_s aborts every rank (the job).
std::unique_ptr<Communicator> make_mpi_communicator(double timeout_s = 300);

// Whether this process was started by mpirun / srun (an MPI launcher's environment is set).
bool launched_under_mpi();

// The node-local rank that mpirun / srun / torchrun give this process (0 without a launcher):
// with one process per GPU, the GPU this process drives.
int launcher_local_rank();

}  // namespace qv::dist
