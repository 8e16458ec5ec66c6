// Turning a dataset path into an ordered list of shard files: brace ranges
// ("cc12m-train-{0000..0099}.tar", zero padding kept), brace lists ("{a,b}"), shell globs, or a
// plain path; and the shards one data-parallel rank reads.
#pragma once
#include <string>
#include <vector>

namespace qv::data {

// Expands braces, then globs each result (a pattern matching nothing is an error naming it).
std::vector<std::string> expand_shards(const std::string& pattern);

// Brace expansion only (no file system access).
std::vector<std::string> expand_braces(const std::string& pattern);

}  // namespace qv::data
