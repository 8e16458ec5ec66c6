// SIGTERM / SIGINT for `qwen3vl train`, taken on one thread of their own: the first asks the
// trainer to checkpoint at the next step boundary and stop (train::stop_requested()), a second
// ends the process at once with 128 + the signal.
//
// Why not a signal handler: the kernel writes a handler's frame just below the interrupted
// thread's stack pointer, and some GEMM kernels of the oneDNN Debian ships (2.6.3; fixed
// upstream in 3.11, oneDNN issue 4845) point rsp at a heap buffer while they pack a matrix. A
// signal that lands there overwrites heap memory next to the buffer, and a later free() aborts
// ("corrupted size vs. prev_size"). So the signals are blocked in every thread, this one's and
// all started after it (OpenMP's and oneDNN's workers, MPI's), and a watcher thread named
// "qv-signals" takes them with sigtimedwait: no frame is ever pushed onto a GEMM's stack.
#pragma once
#include <atomic>
#include <thread>

namespace qv::cli {

class StopSignals {
 public:
  // Call before any other thread starts: threads inherit the blocked set from their creator.
  StopSignals();
  ~StopSignals();
  // 0, or the first signal received.
  int received() const { return received_.load(); }

  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

 private:
  void watch();
  std::atomic<int> received_{0};
  std::atomic<bool> done_{false};
  std::thread watcher_;
};

}  // namespace qv::cli
