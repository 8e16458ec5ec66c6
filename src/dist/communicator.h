// Collective communication between training processes. The trainer talks only to this
// interface; MPI backs it on CPUs (dist/mpi_communicator.cpp) and NCCL is the place for GPUs.
#pragma once
#include <cstdint>
#include <memory>

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
  // in[size * n] summed over ranks; rank r keeps block r in out[n].
  virtual void reduce_scatter_sum(const float* in, float* out, int64_t n) = 0;
  virtual void broadcast(float* data, int64_t n, int root) = 0;
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
