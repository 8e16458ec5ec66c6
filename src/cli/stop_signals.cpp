#include "cli/stop_signals.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <ctime>

#include "train/trainer.h"

namespace qv::cli {
namespace {

sigset_t stop_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

StopSignals::StopSignals() {
  const sigset_t set = stop_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  watcher_ = std::thread([this] { watch(); });
}

StopSignals::~StopSignals() {
  done_ = true;
  watcher_.join();
}

// Waits in slices of 100 ms so the destructor can end it; a signal that arrives meanwhile stays
// pending for the process and is taken by the next wait.
void StopSignals::watch() {
  pthread_setname_np(pthread_self(), "qv-signals");
  const sigset_t set = stop_set();
  const timespec slice{0, 100 * 1000 * 1000};
  while (!done_.load()) {
    const int sig = sigtimedwait(&set, nullptr, &slice);
    if (sig <= 0) continue;  // timeout or EINTR
    if (received_.exchange(sig) != 0) _exit(128 + sig);
    train::stop_requested().store(true);
  }
}

}  // namespace qv::cli
