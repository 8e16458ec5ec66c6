#include "guard_census.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>

#include "core/error.h"
#include "kernels/guarded/guard.h"

namespace qv::testing {
namespace {

// Fault records are written by the signal handler into fixed storage (it may not allocate);
// they are symbolised later, outside the handler.
constexpr int kFrames = 24;
constexpr int64_t kMaxRecords = 1 << 15;

struct Record {
  void* frames[kFrames];
  int frame_count;
  int first;  // index of the faulting instruction's frame in `frames`
  bool write;
  const char* op;  // a host pointer given to this op; nullptr for a fault
};

Record* g_records = nullptr;
std::atomic<int64_t> g_count{0};     // records taken (faults and host pointers)
std::atomic<int64_t> g_faults{0};    // of which faults
std::atomic<int64_t> g_pointers{0};  // of which host pointers
std::atomic<GuardMode> g_mode{GuardMode::kCensus};
struct sigaction g_previous;
std::atomic<bool> g_installed{false};

// Hands a fault that is not ours to the handler installed before.
void chain(int sig, siginfo_t* info, void* ctx) {
  if ((g_previous.sa_flags & SA_SIGINFO) && g_previous.sa_sigaction) {
    g_previous.sa_sigaction(sig, info, ctx);
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN) {
    g_previous.sa_handler(sig);
  } else {
    sigaction(SIGSEGV, &g_previous, nullptr);  // the faulting instruction runs again and dies
  }
}

void write_stderr(const char* text) {
  const ssize_t ignored = write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

void on_segv(int sig, siginfo_t* info, void* ctx) {
  uintptr_t base = 0;
  size_t bytes = 0;
  if (!kernels::guarded::find_block(info->si_addr, &base, &bytes)) return chain(sig, info, ctx);
  bool write = false;
  void* pc = nullptr;
#if defined(__x86_64__)
  const auto* uc = static_cast<const ucontext_t*>(ctx);
  write = (uc->uc_mcontext.gregs[REG_ERR] & 2) != 0;  // page fault error code: bit 1 = write
  pc = reinterpret_cast<void*>(uc->uc_mcontext.gregs[REG_RIP]);
#endif
  if (g_mode.load() == GuardMode::kStrict) {
    write_stderr("guarded device: host code touched device memory outside an op; stack:\n");
    void* frames[kFrames];
    backtrace_symbols_fd(frames, backtrace(frames, kFrames), STDERR_FILENO);
    std::abort();
  }
  g_faults.fetch_add(1);
  const int64_t i = g_count.fetch_add(1);
  if (i < kMaxRecords) {
    Record& r = g_records[i];
    r.write = write;
    r.op = nullptr;
    r.frame_count = backtrace(r.frames, kFrames);
    r.first = 0;
    for (int f = 0; f < r.frame_count; ++f) {
      if (r.frames[f] == pc) {
        r.first = f;
        break;
      }
    }
  }
  kernels::guarded::open_block(base, bytes);
}

void on_host_pointer(const char* op, const void*) {
  g_pointers.fetch_add(1);
  const int64_t i = g_count.fetch_add(1);
  if (i >= kMaxRecords) return;
  Record& r = g_records[i];
  r.write = false;
  r.op = op;
  r.frame_count = backtrace(r.frames, kFrames);
  r.first = 0;
}

// Removes template arguments ("<...>") and, at nesting depth 0, the parameter list and what
// follows ("(...) const").
std::string short_name(std::string name) {
  for (const char* anon : {"(anonymous namespace)", "{lambda("}) {
    for (size_t p; (p = name.find(anon)) != std::string::npos;)
      name.replace(p, std::strlen(anon), anon[0] == '(' ? "{anon}" : "{lambda<");
  }
  std::string out;
  int angle = 0;
  for (const char c : name) {
    if (c == '<') ++angle;
    if (angle == 0 && c == '(') break;
    if (angle == 0) out += c;
    if (c == '>' && angle > 0) --angle;
  }
  return out;
}

// Function names of code addresses. dladdr sees only exported symbols; functions with internal
// linkage (anonymous namespaces, statics) of the executable are named by one addr2line run over
// all of them (binutils, which the compiler needs anyway); without it they stay "?".
std::map<void*, std::string> symbolize(const std::set<void*>& addresses) {
  std::map<void*, std::string> names;
  std::vector<void*> pending;
  std::string exe;
  uintptr_t exe_base = 0;
  for (void* a : addresses) {
    Dl_info info{};
    std::string name(1, '?');
    if (dladdr(a, &info) != 0 && info.dli_sname) {
      int status = 0;
      char* demangled = abi::__cxa_demangle(info.dli_sname, nullptr, nullptr, &status);
      name = std::string(status == 0 && demangled ? demangled : info.dli_sname);
      std::free(demangled);
    } else if (info.dli_fname) {
      name = std::filesystem::path(info.dli_fname).filename().string();
      Dl_info self{};
      dladdr(reinterpret_cast<void*>(&symbolize), &self);
      if (self.dli_fname && std::strcmp(self.dli_fname, info.dli_fname) == 0) {
        exe = info.dli_fname;
        exe_base = reinterpret_cast<uintptr_t>(info.dli_fbase);
        pending.push_back(a);
      }
    }
    names.emplace(a, std::move(name));
  }
  if (pending.empty()) return names;
  std::ostringstream cmd;
  cmd << "addr2line -f -C -e '" << exe << "'" << std::hex;
  for (void* a : pending) cmd << " 0x" << reinterpret_cast<uintptr_t>(a) - exe_base;
  cmd << " 2>/dev/null";
  FILE* pipe = popen(cmd.str().c_str(), "r");
  if (!pipe) return names;
  char line[4096];
  for (void* a : pending) {
    if (!std::fgets(line, sizeof line, pipe)) break;
    std::string function(line);
    function.erase(function.find_last_not_of("\n") + 1);
    if (function != "??") names[a] = std::move(function);
    if (!std::fgets(line, sizeof line, pipe)) break;  // file:line (none without -g)
  }
  pclose(pipe);
  return names;
}

// A frame of this project's code outside src/kernels (qv::, not a std:: member instantiated on
// qv:: types, not the census itself).
bool is_project_frame(const std::string& name) {
  const size_t qv = name.find("qv::");
  const size_t std_ns = name.find("std::");
  if (qv == std::string::npos || (std_ns != std::string::npos && std_ns < qv)) return false;
  return name.compare(qv, 12, "qv::kernels:") != 0 &&
         name.find("on_host_pointer") == std::string::npos &&
         name.find("qv::testing::GuardCensus") == std::string::npos;
}

}  // namespace

GuardCensus::GuardCensus(GuardMode mode) {
  QV_CHECK(!g_installed.exchange(true), "one GuardCensus at a time");
  if (!g_records) g_records = new Record[kMaxRecords];
  void* warm[2];
  backtrace(warm, 2);  // loads the unwinder now, not inside the first fault
  g_mode = mode;
  clear();
  kernels::guarded::set_host_pointer_hook(on_host_pointer);
  struct sigaction sa {};
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  QV_CHECK(sigaction(SIGSEGV, &sa, &g_previous) == 0, "cannot install the SIGSEGV handler");
  previous_ = register_allocator(DeviceKind::kGuarded, &kernels::guarded::allocator());
}

GuardCensus::~GuardCensus() {
  register_allocator(DeviceKind::kGuarded, previous_);
  kernels::guarded::set_host_pointer_hook(nullptr);
  sigaction(SIGSEGV, &g_previous, nullptr);
  g_installed = false;
}

void GuardCensus::clear() {
  g_count = 0;
  g_faults = 0;
  g_pointers = 0;
}

int64_t GuardCensus::faults() const {
  return g_faults.load();
}

int64_t GuardCensus::host_pointers() const {
  return g_pointers.load();
}

std::vector<GuardSite> GuardCensus::sites() const {
  std::map<std::pair<std::string, std::string>, GuardSite> by_site;
  const int64_t n = std::min(g_count.load(), kMaxRecords);
  // A return address points after its call: the byte before it is in the calling function.
  const auto frame_address = [](const Record& r, int f) -> void* {
    return f == r.first && !r.op ? r.frames[f] : static_cast<char*>(r.frames[f]) - 1;
  };
  std::set<void*> addresses;
  for (int64_t i = 0; i < n; ++i)
    for (int f = g_records[i].first; f < g_records[i].frame_count; ++f)
      addresses.insert(frame_address(g_records[i], f));
  const std::map<void*, std::string> names = symbolize(addresses);
  for (int64_t i = 0; i < n; ++i) {
    const Record& r = g_records[i];
    std::string function = "?", via = r.op ? std::string("op ") + r.op : "";
    for (int f = r.first; f < r.frame_count; ++f) {
      const std::string& name = names.at(frame_address(r, f));
      if (is_project_frame(name)) {
        function = short_name(name);
        break;
      }
      if (via.empty()) via = short_name(name);
    }
    GuardSite& s = by_site[{function, via}];
    s.function = function;
    s.via = via;
    ++(r.op ? s.host_pointers : r.write ? s.writes : s.reads);
  }
  std::vector<GuardSite> out;
  for (auto& [key, site] : by_site) out.push_back(site);
  std::stable_sort(out.begin(), out.end(),
                   [](const GuardSite& a, const GuardSite& b) { return a.total() > b.total(); });
  return out;
}

std::string GuardCensus::report(const std::string& title) const {
  std::ostringstream os;
  const std::vector<GuardSite> all = sites();
  os << "guard census: " << title << ": " << faults() << " host accesses, " << host_pointers()
     << " host pointers given to ops, at " << all.size() << " sites\n";
  os << "   reads writes h-ptrs  site [via]\n";
  for (const GuardSite& s : all) {
    char counts[64];
    std::snprintf(counts, sizeof counts, "  %6lld %6lld %6lld  ", static_cast<long long>(s.reads),
                  static_cast<long long>(s.writes), static_cast<long long>(s.host_pointers));
    os << counts << s.function;
    if (!s.via.empty()) os << "  [" << s.via << "]";
    os << "\n";
  }
  if (g_count.load() > kMaxRecords) os << "  (only the first " << kMaxRecords << " have stacks)\n";
  return os.str();
}

}  // namespace qv::testing
