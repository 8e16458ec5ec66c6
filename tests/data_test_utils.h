// Helpers for the data-source tests: a temporary folder, a small in-memory tar writer (to craft
// good and damaged shards), and a loopback HTTP server written with plain sockets.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace qv::testing {

inline std::string source_path(const std::string& relative) {
  return std::string(QWEN3VL_SOURCE_DIR) + "/" + relative;
}

class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "qv-data-test-XXXXXX").string();
    if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Writes ustar archives the way POSIX describes them; add() returns the offset of the entry's
// first header so tests can damage exactly where they mean to.
class TarBuilder {
 public:
  size_t add(const std::string& name, const std::string& data, char type = '0') {
    const size_t at = bytes_.size();
    append_entry(name, data, type);
    return at;
  }
  // Entry preceded by a pax extended header carrying its path (as Python's tarfile writes).
  size_t add_pax(const std::string& name, const std::string& data) {
    const size_t at = bytes_.size();
    append_entry("PaxHeader/x", pax_record("path", name), 'x');
    append_entry(name.substr(0, 99), data, '0');
    return at;
  }
  // Entry preceded by a GNU long-name header.
  size_t add_gnu_long_name(const std::string& name, const std::string& data) {
    const size_t at = bytes_.size();
    append_entry("././@LongLink", name + '\0', 'L');
    append_entry(name.substr(0, 99), data, '0');
    return at;
  }
  void finish() { bytes_.append(1024, '\0'); }
  std::string& bytes() { return bytes_; }

  static std::string pax_record(const std::string& key, const std::string& value) {
    const std::string body = " " + key + "=" + value + "\n";
    size_t len = body.size() + 1;
    while (std::to_string(len).size() + body.size() != len) ++len;
    return std::to_string(len) + body;
  }
  static void set_checksum(char* h) {
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; ++i) sum += static_cast<unsigned char>(h[i]);
    std::snprintf(h + 148, 8, "%06o", sum);
    h[155] = ' ';
  }

 private:
  void append_entry(const std::string& name, const std::string& data, char type) {
    char h[512] = {};
    std::memcpy(h, name.data(), std::min<size_t>(name.size(), 100));
    std::snprintf(h + 100, 8, "%07o", 0644);
    std::snprintf(h + 108, 8, "%07o", 0);
    std::snprintf(h + 116, 8, "%07o", 0);
    std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(data.size()));
    std::snprintf(h + 136, 12, "%011o", 0);
    h[156] = type;
    std::memcpy(h + 257,
                "ustar\0"
                "00",
                8);
    set_checksum(h);
    bytes_.append(h, 512);
    bytes_ += data;
    bytes_.append((512 - data.size() % 512) % 512, '\0');
  }
  std::string bytes_;
};

// A loopback HTTP/1.1 server on 127.0.0.1 (ephemeral port), one connection at a time. A silent
// server accepts connections and never answers (for timeout tests).
class LoopbackServer {
 public:
  struct Response {
    int status = 200;
    std::string body;
    std::string headers;  // extra header lines, each ending in "\r\n"
  };

  explicit LoopbackServer(bool silent = false) : silent_(silent) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(fd_, 16) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error("cannot listen on 127.0.0.1");
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~LoopbackServer() { stop(); }

  void set(const std::string& path, Response r) {
    std::lock_guard<std::mutex> lock(mu_);
    responses_[path] = std::move(r);
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int requests(const std::string& path) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = requests_.find(path);
    return it == requests_.end() ? 0 : it->second;
  }
  // Connections made so far; exact once stop() has drained the accept queue.
  int connections() const { return connections_; }

  void stop() {
    if (fd_ < 0) return;
    stop_ = true;
    thread_.join();
    ::fcntl(fd_, F_SETFL, O_NONBLOCK);
    for (int c; (c = ::accept(fd_, nullptr, nullptr)) >= 0;) {
      ++connections_;
      ::close(c);
    }
    for (int c : held_) ::close(c);
    ::close(fd_);
    fd_ = -1;
  }

 private:
  void run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      ++connections_;
      if (silent_) {
        held_.push_back(c);
      } else {
        serve(c);
        ::close(c);
      }
    }
  }

  void serve(int c) {
    timeval tv{2, 0};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos && request.size() < 65536) {
      const ssize_t n = ::recv(c, buf, sizeof(buf), 0);
      if (n <= 0) return;
      request.append(buf, static_cast<size_t>(n));
    }
    const size_t sp1 = request.find(' '), sp2 = request.find(' ', sp1 + 1);
    const std::string path = request.substr(sp1 + 1, sp2 - sp1 - 1);
    Response r{404, "not found", ""};
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++requests_[path];
      if (auto it = responses_.find(path); it != responses_.end()) r = it->second;
    }
    const std::string head = "HTTP/1.1 " + std::to_string(r.status) +
                             " Test\r\nContent-Length: " + std::to_string(r.body.size()) +
                             "\r\nConnection: close\r\n" + r.headers + "\r\n";
    const std::string out = head + r.body;
    size_t sent = 0;
    while (sent < out.size()) {
      const ssize_t n = ::send(c, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
    ::shutdown(c, SHUT_WR);
  }

  bool silent_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  mutable std::mutex mu_;
  std::map<std::string, Response> responses_;
  std::map<std::string, int> requests_;
  std::vector<int> held_;
};

}  // namespace qv::testing
