// The guarded test device (DeviceKind::kGuarded): host memory that host code cannot touch, so a
// test can find every place where model code would read or write GPU memory from the host, on a
// machine without a GPU.
//
// Its Allocator hands out page-aligned anonymous mappings kept PROT_NONE. The ops of
// src/kernels run the CPU kernels over them: kernels/dispatch.h opens an OpenScope around each
// op on the guarded device (and kernels/device.h's copy_bytes / zero_bytes do the same), which
// makes every guarded block readable and writable for the op's duration and protects them all
// again when the outermost op returns. Any other access faults (SIGSEGV at an address inside a
// guarded block); tests/guard_census.h turns those faults into a list of sites. The dispatch also
// checks that each pointer an op is given is guarded memory (check_pointers): host memory handed
// to a kernel is the other half of what a GPU run would trip over. Never used by
// production code: nothing registers the allocator but a test, and the CPU path of the dispatch
// checks is_cpu() first, as before.
//
// Threads: the open state is process-wide, so while one thread runs an op, host code of another
// thread is not caught. The model runs its ops from one thread; kernels' worker threads run
// inside an op.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "core/allocator.h"

namespace qv::kernels::guarded {

// The guarded device's allocator (register it with register_allocator(DeviceKind::kGuarded,
// ...) before making buffers there; unregister after they are gone).
Allocator& allocator();

// While one lives, every guarded block is readable and writable (scopes nest).
class OpenScope {
 public:
  OpenScope();
  ~OpenScope();
  OpenScope(const OpenScope&) = delete;
  OpenScope& operator=(const OpenScope&) = delete;
};

// The live guarded block containing `address` (its start and size in *base / *bytes), or false.
// Called from a signal handler: takes the registry's lock, allocates nothing.
bool find_block(const void* address, uintptr_t* base, size_t* bytes);

// Makes the block [base, base + bytes) (from find_block) accessible until the next op ends:
// how a fault handler lets the faulting host code continue.
void open_block(uintptr_t base, size_t bytes);

// Host memory handed to an op on the guarded device (a GPU kernel could not read it): every
// non-null pointer argument of a dispatched op must lie in a guarded block. check_pointers calls
// the hook (set by a test; none by default) with the op's name for each one that does not.
using HostPointerHook = void (*)(const char* op, const void* pointer);
void set_host_pointer_hook(HostPointerHook hook);
void report_if_host(const char* op, const void* pointer);

template <class... Args>
void check_pointers(const char* op, const Args&... args) {
  (
      [&] {
        if constexpr (std::is_pointer_v<Args>)
          if (args != nullptr) report_if_host(op, static_cast<const void*>(args));
      }(),
      ...);
}

// Copies between the host and guarded memory, in the order they are made, for tests of when a
// transfer happens (the trainer's ahead uploads before a step's loss read-back): copy_bytes in
// either direction, and the input uploads of kernels/device.h (upload_input,
// upload_input_ahead). The hook (set by a test; none by default) sees each one.
enum class Transfer { kToDevice, kToHost, kInputUpload, kInputUploadAhead };
using TransferHook = void (*)(Transfer kind, size_t bytes);
void set_transfer_hook(TransferHook hook);
void note_transfer(Transfer kind, size_t bytes);

// Number of live guarded blocks and how many ops opened them so far (for tests and reports).
int64_t live_blocks();
int64_t ops_opened();

}  // namespace qv::kernels::guarded
