// CUDA emulator (tests/cuda_emu, docs/CUDA.md): execution of a kernel launch on the CPU.
//
// A launch runs its blocks one after another on the calling OS thread. Inside a block every CUDA
// thread is a fiber with a stack of its own (x86-64: a small assembly context switch; elsewhere
// ucontext), scheduled cooperatively: a fiber runs until it waits at a barrier or returns, then
// the next runnable one runs. __syncthreads() waits for every thread of the block that has not
// exited; a warp collective waits for the lanes of its mask that have not exited and hands each
// lane the values the others brought. When no fiber can run and some have not finished, the
// block is deadlocked (a barrier in divergent code): the emulator aborts naming the barriers, as
// a GPU would hang. Errors inside a kernel abort the process with a message on stderr; a bad
// launch configuration sets the sticky error that cudaGetLastError() returns, as on a GPU.
//
// Not emulated: blocks running at the same time (races between blocks never show), the order in
// which a GPU interleaves warps (here a fiber runs until it blocks, which exposes a missing
// barrier only when the unsynchronised read comes before the write in this order; running the
// tests again with QWEN3VL_CUDA_EMU_SCHEDULE=reverse tries the opposite order).
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "emu_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define QVEMU_ASAN 1
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace qvemu {

thread_local ThreadState* tls_thread = nullptr;
thread_local BlockState* tls_block = nullptr;

[[noreturn]] void fatal(const char* what, const char* detail) {
  std::fprintf(stderr, "CUDA emulator: %s%s\n", what, detail);
  if (tls_block && tls_thread)
    std::fprintf(stderr, "  in block (%u,%u,%u), thread (%u,%u,%u)\n", tls_block->block_idx.x,
                 tls_block->block_idx.y, tls_block->block_idx.z, tls_thread->thread_idx.x,
                 tls_thread->thread_idx.y, tls_thread->thread_idx.z);
  std::fflush(stderr);
  std::abort();
}

namespace {

#if defined(__x86_64__)
// qvemu_switch(save, next): saves the callee-saved registers, MXCSR and the x87 control word on
// the current stack, stores the stack pointer in *save, and resumes the context at next.
extern "C" void qvemu_switch(void** save, void* next);
// First entry of a fiber: its Fiber* is in rbx and the entry function in r12.
extern "C" void qvemu_trampoline();
asm(R"(
.text
.globl qvemu_switch
.type qvemu_switch,@function
qvemu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr 8(%rsp)
  fnstcw (%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr 8(%rsp)
  fldcw (%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size qvemu_switch, .-qvemu_switch
.globl qvemu_trampoline
.type qvemu_trampoline,@function
qvemu_trampoline:
  movq %rbx, %rdi
  callq *%r12
  ud2
.size qvemu_trampoline, .-qvemu_trampoline
.section .note.GNU-stack,"",@progbits
.text
)");
#endif

struct Fiber {
  ThreadState state{};
  unsigned warp = 0, lane = 0;
  bool done = false;
  // Waiting: runnable again once *wait_on differs from wait_value.
  const uint64_t* wait_on = nullptr;
  uint64_t wait_value = 0;
  unsigned exchange_parity = 0;  // of the lane's last warp exchange
  char* stack = nullptr;
  size_t stack_bytes = 0;
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
  ~Fiber() {
    if (stack) munmap(stack, stack_bytes);
  }
};

struct Warp {
  uint64_t gen = 0;
  unsigned live = 0;     // lanes that exist and have not exited
  unsigned arrived = 0;  // lanes waiting in the open exchange
  unsigned mask = 0;     // the open exchange's mask
  const char* op = nullptr;
  unsigned participants[2] = {0, 0};
  uint64_t row[2][32] = {};
};

struct Block {
  uint64_t gen = 0;
  unsigned live = 0, arrived = 0;
};

size_t stack_bytes() {
  static const size_t bytes = [] {
    size_t kb = 256;
#if defined(QVEMU_ASAN)
    kb = 1024;
#endif
    if (const char* e = std::getenv("QWEN3VL_CUDA_EMU_STACK_KB")) kb = std::strtoul(e, nullptr, 10);
    return (kb < 16 ? 16 : kb) * 1024;
  }();
  return bytes;
}

// QWEN3VL_CUDA_EMU_SCHEDULE=reverse runs the blocks of a grid and the threads of a block in
// reverse order: a read of shared or global memory that another thread writes without a barrier
// in between (a race) then sees the other value than in the default order.
bool reversed() {
  static const bool r = [] {
    const char* e = std::getenv("QWEN3VL_CUDA_EMU_SCHEDULE");
    return e && std::string_view(e) == "reverse";
  }();
  return r;
}

// One per OS thread that launches kernels.
struct Scheduler {
  std::vector<std::unique_ptr<Fiber>> fibers;
  Fiber* current = nullptr;
  KernelBody body{};
  unsigned nthreads = 0;
  Warp warps[32];
  Block block;
  BlockState block_state{};
  std::vector<unsigned char> smem;
#if defined(__x86_64__)
  void* sched_sp = nullptr;
#else
  ucontext_t sched_ctx;
#endif
#if defined(QVEMU_ASAN)
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
#endif
};

thread_local Scheduler* tls_sched = nullptr;

Scheduler& sched() {
  if (!tls_sched) tls_sched = new Scheduler();  // kept for the thread's life (fibers reused)
  return *tls_sched;
}

void thread_exit(Fiber* f);

// Runs the kernel body once per (re)start: a finished fiber is resumed for the next block and
// comes back to the top of the loop, so its stack is set up only once.
void fiber_main(Fiber* f) {
#if defined(QVEMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &sched().sched_stack_bottom, &sched().sched_stack_size);
#endif
  for (;;) {
    try {
      Scheduler& s = sched();
      s.body.call(s.body.self);
    } catch (const std::exception& e) {
      fatal("exception thrown inside a kernel: ", e.what());
    } catch (...) {
      fatal("exception thrown inside a kernel");
    }
    thread_exit(f);
  }
}

#if !defined(__x86_64__)
void fiber_entry_ucontext(unsigned hi, unsigned lo) {
  fiber_main(reinterpret_cast<Fiber*>((static_cast<uintptr_t>(hi) << 32) | lo));
}
#endif

void init_fiber(Fiber* f) {
  f->stack_bytes = stack_bytes() + 4096;
  void* mem =
      mmap(nullptr, f->stack_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) fatal("cannot map a fiber stack");
  f->stack = static_cast<char*>(mem);
  mprotect(f->stack, 4096, PROT_NONE);  // guard page: a stack overflow faults
#if defined(__x86_64__)
  const uintptr_t top = (reinterpret_cast<uintptr_t>(f->stack) + f->stack_bytes) & ~uintptr_t{15};
  const uintptr_t after_ret = top - 16;
  auto* frame = reinterpret_cast<uint64_t*>(after_ret - 72);
  frame[0] = 0x037f;                   // x87 control word: round to nearest, double extended
  frame[1] = 0x1f80;                   // MXCSR: round to nearest, exceptions masked, no FTZ / DAZ
  frame[2] = frame[3] = frame[4] = 0;  // r15 r14 r13
  frame[5] = reinterpret_cast<uint64_t>(&fiber_main);        // r12: entry
  frame[6] = reinterpret_cast<uint64_t>(f);                  // rbx: argument
  frame[7] = 0;                                              // rbp
  frame[8] = reinterpret_cast<uint64_t>(&qvemu_trampoline);  // return address
  f->sp = frame;
#else
  getcontext(&f->ctx);
  f->ctx.uc_stack.ss_sp = f->stack + 4096;
  f->ctx.uc_stack.ss_size = f->stack_bytes - 4096;
  f->ctx.uc_link = nullptr;
  const auto bits = reinterpret_cast<uintptr_t>(f);
  makecontext(&f->ctx, reinterpret_cast<void (*)()>(&fiber_entry_ucontext), 2,
              static_cast<unsigned>(bits >> 32), static_cast<unsigned>(bits));
#endif
}

// Scheduler -> fiber.
void resume(Scheduler& s, Fiber* f) {
  s.current = f;
  tls_thread = &f->state;
#if defined(QVEMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f->stack + 4096, f->stack_bytes - 4096);
#endif
#if defined(__x86_64__)
  qvemu_switch(&s.sched_sp, f->sp);
#else
  swapcontext(&s.sched_ctx, &f->ctx);
#endif
#if defined(QVEMU_ASAN)
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  tls_thread = nullptr;
  s.current = nullptr;
}

// Fiber -> scheduler.
void yield(Fiber* f) {
  Scheduler& s = sched();
#if defined(QVEMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, s.sched_stack_bottom, s.sched_stack_size);
#endif
#if defined(__x86_64__)
  qvemu_switch(&f->sp, s.sched_sp);
#else
  swapcontext(&f->ctx, &s.sched_ctx);
#endif
#if defined(QVEMU_ASAN)
  __sanitizer_finish_switch_fiber(fake, &s.sched_stack_bottom, &s.sched_stack_size);
#endif
  tls_thread = &f->state;
}

Fiber* running() {
  Scheduler* s = tls_sched;
  if (!s || !s->current) fatal("a device function (barrier, shuffle) was called outside a kernel");
  return s->current;
}

void wait_until_changed(Fiber* f, const uint64_t* counter, uint64_t value) {
  f->wait_on = counter;
  f->wait_value = value;
  while (*counter == value) yield(f);
  f->wait_on = nullptr;
}

// Completes the open exchange of warp w when every live lane of its mask has arrived.
void try_release_warp(Warp& w) {
  if (w.arrived == 0 || (w.mask & w.live & ~w.arrived) != 0) return;
  w.participants[w.gen & 1] = w.arrived;
  w.arrived = 0;
  w.mask = 0;
  w.op = nullptr;
  ++w.gen;
}

void try_release_block(Block& b) {
  if (b.arrived == 0 || b.arrived < b.live) return;
  b.arrived = 0;
  ++b.gen;
}

void thread_exit(Fiber* f) {
  Scheduler& s = sched();
  f->done = true;
  Warp& w = s.warps[f->warp];
  w.live &= ~(1u << f->lane);
  --s.block.live;
  try_release_warp(w);
  try_release_block(s.block);
  yield(f);  // resumed only to run the next block
}

std::mutex g_limit_mu;
std::map<const void*, int> g_smem_limits;

int largest_smem_limit() {
  std::lock_guard<std::mutex> lock(g_limit_mu);
  int best = 0;
  for (const auto& [k, v] : g_smem_limits) best = v > best ? v : best;
  return best;
}

cudaError_t check_config(const LaunchConfig& c) {
  const uint64_t threads = uint64_t{c.block.x} * c.block.y * c.block.z;
  if (threads == 0 || threads > 1024 || c.block.x > 1024 || c.block.y > 1024 || c.block.z > 64)
    return cudaErrorInvalidConfiguration;
  if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 || c.grid.x > 0x7fffffffu ||
      c.grid.y > 65535 || c.grid.z > 65535)
    return cudaErrorInvalidConfiguration;
  constexpr size_t kDefault = 48 * 1024, kOptIn = 227 * 1024;
  if (c.dynamic_smem > kOptIn) return cudaErrorInvalidValue;
  if (c.dynamic_smem > kDefault && c.dynamic_smem > static_cast<size_t>(largest_smem_limit()))
    return cudaErrorInvalidValue;
  const int dev = stream_device(c.stream);
  if (dev < 0 || dev != current_device()) return cudaErrorInvalidResourceHandle;
  return cudaSuccess;
}

void describe_deadlock(const Scheduler& s) {
  std::fprintf(stderr, "CUDA emulator: deadlock in block (%u,%u,%u): waiting threads:\n",
               s.block_state.block_idx.x, s.block_state.block_idx.y, s.block_state.block_idx.z);
  int shown = 0;
  for (unsigned i = 0; i < s.nthreads && shown < 16; ++i) {
    const Fiber* f = s.fibers[i].get();
    if (f->done) continue;
    const Warp& w = s.warps[f->warp];
    const bool at_warp = f->wait_on == &w.gen;
    std::fprintf(stderr, "  thread %u (warp %u lane %u) at %s\n", f->state.linear, f->warp, f->lane,
                 at_warp ? (w.op ? w.op : "a warp collective") : "__syncthreads()");
    ++shown;
  }
}

void run_block(Scheduler& s) {
  const unsigned n = s.nthreads;
  const dim3 bd = s.block_state.block_dim;
  for (auto& w : s.warps) w = Warp{};
  s.block = Block{};
  s.block.live = n;
  for (unsigned i = 0; i < n; ++i) {
    Fiber* f = s.fibers[i].get();
    f->state.linear = i;
    f->state.thread_idx = uint3{i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
    f->warp = i / 32;
    f->lane = i % 32;
    f->done = false;
    f->wait_on = nullptr;
    s.warps[f->warp].live |= 1u << f->lane;
  }
  if (!s.smem.empty()) std::memset(s.smem.data(), 0xff, s.smem.size());
  unsigned finished = 0;
  while (finished < n) {
    bool progress = false;
    finished = 0;
    for (unsigned k = 0; k < n; ++k) {
      Fiber* f = s.fibers[reversed() ? n - 1 - k : k].get();
      if (f->done) {
        ++finished;
        continue;
      }
      if (f->wait_on && *f->wait_on == f->wait_value) continue;
      resume(s, f);
      progress = true;
      if (f->done) ++finished;
    }
    if (!progress && finished < n) {
      describe_deadlock(s);
      fatal("threads wait at barriers that can never complete (a barrier in divergent code?)");
    }
  }
}

}  // namespace

void set_dynamic_smem_limit(const void* kernel, int bytes) {
  std::lock_guard<std::mutex> lock(g_limit_mu);
  g_smem_limits[kernel] = bytes;
}

void check_kernel_pointer(const void* p, int index) {
  if (!p || valid_range(p, 0, true)) return;
  char detail[96];
  std::snprintf(detail, sizeof detail, " %d (%p) is not device memory of the launching device",
                index, p);
  fatal("kernel pointer argument", detail);
}

void run_grid(const LaunchConfig& cfg, KernelBody body) {
  if (tls_sched && tls_sched->current) fatal("a kernel was launched from inside a kernel");
  const cudaError_t err = check_config(cfg);
  if (err != cudaSuccess) {
    set_last_error(err);
    return;
  }
  Scheduler& s = sched();
  s.nthreads = cfg.block.x * cfg.block.y * cfg.block.z;
  while (s.fibers.size() < s.nthreads) {
    s.fibers.push_back(std::make_unique<Fiber>());
    init_fiber(s.fibers.back().get());
  }
  s.body = body;
  s.smem.assign(cfg.dynamic_smem, 0xff);
  s.block_state.block_dim = cfg.block;
  s.block_state.grid_dim = cfg.grid;
  s.block_state.dynamic_smem = s.smem.empty() ? nullptr : s.smem.data();
  tls_block = &s.block_state;
  const uint64_t blocks = uint64_t{cfg.grid.x} * cfg.grid.y * cfg.grid.z;
  for (uint64_t k = 0; k < blocks; ++k) {
    const uint64_t b = reversed() ? blocks - 1 - k : k;
    s.block_state.block_idx = uint3{static_cast<unsigned>(b % cfg.grid.x),
                                    static_cast<unsigned>(b / cfg.grid.x % cfg.grid.y),
                                    static_cast<unsigned>(b / cfg.grid.x / cfg.grid.y)};
    run_block(s);
  }
  tls_block = nullptr;
}

void sync_block() {
  Fiber* f = running();
  Scheduler& s = sched();
  const uint64_t gen = s.block.gen;
  ++s.block.arrived;
  try_release_block(s.block);
  if (s.block.gen == gen) wait_until_changed(f, &s.block.gen, gen);
}

const uint64_t* warp_exchange(unsigned mask, uint64_t value, const char* op) {
  Fiber* f = running();
  Scheduler& s = sched();
  Warp& w = s.warps[f->warp];
  const unsigned bit = 1u << f->lane;
  if (!(mask & bit)) fatal(op, ": called by a lane outside its mask");
  if (w.arrived == 0) {
    w.mask = mask;
    w.op = op;
  } else if (w.mask != mask || w.op != op) {
    char detail[160];
    std::snprintf(detail, sizeof detail, " (mask %08x) while lanes %08x wait in %s (mask %08x)",
                  mask, w.arrived, w.op, w.mask);
    fatal(op, detail);
  }
  const uint64_t gen = w.gen;
  const unsigned parity = static_cast<unsigned>(gen & 1);
  w.row[parity][f->lane] = value;
  w.arrived |= bit;
  f->exchange_parity = parity;
  try_release_warp(w);
  if (w.gen == gen) wait_until_changed(f, &w.gen, gen);
  return w.row[parity];
}

unsigned warp_participants() {
  Fiber* f = running();
  return sched().warps[f->warp].participants[f->exchange_parity];
}

unsigned lane_id() {
  return running()->lane;
}

}  // namespace qvemu
