// Writing files so that a reader sees either the old content or the complete new one, never a
// half-written file: write to a temporary name in the same folder, fsync, rename, fsync the folder.
#pragma once
#include <functional>
#include <string>

namespace qv::io {

// Writes `contents` to a temporary file next to `path`, then renames it over `path`. Every
// write, fsync, close and rename is checked; on failure the temporary file is removed and the
// error names the file and the reason (e.g. "No space left on device").
void write_file_atomic(const std::string& path, const std::string& contents);

// Makes the finished folder `tmp` appear as `target` in one rename (after fsyncing it), so a
// reader sees the old folder, the new one or none, never a half-written one. An existing
// `target` is first renamed aside (".tmp-old-NAME-PID") and deleted afterwards.
void publish_dir(const std::string& tmp, const std::string& target);

// A sibling of `path` named ".tmp-<what>-<filename>-<pid>": hidden from checkpoint listings and
// recognisable as an unfinished write.
std::string temp_sibling(const std::string& path, const std::string& what);

// fsync a directory so a rename inside it is durable.
void fsync_dir(const std::string& dir);

std::string read_file(const std::string& path);

}  // namespace qv::io
