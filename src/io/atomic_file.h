// Writing files so that a reader sees either the old content or the complete new one, never a
// half-written file: write to a temporary name in the same folder, fsync, rename, fsync the folder.
#pragma once
#include <functional>
#include <string>

namespace qv::io {

// Calls write(fd_path) to fill a temporary file, then renames it over `path`.
void write_file_atomic(const std::string& path, const std::string& contents);

// fsync a directory so a rename inside it is durable.
void fsync_dir(const std::string& dir);

std::string read_file(const std::string& path);

}  // namespace qv::io
