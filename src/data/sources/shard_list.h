// Turning dataset paths into an ordered list of shard files, and choosing the shards one
// data-parallel rank reads.
//
// A spec is expanded like webdataset's brace expansion, then globbed:
//   "cc12m-train-{0000..0099}.tar"   numeric range, zero padding kept (width of the wider bound)
//   "{train,val}-{0..2}.tar"         comma lists, several groups (cartesian product, in order)
//   "shards/*.tar"                   glob(3); matches are sorted
//   "shards/a.tar"                   a plain path, which must exist
// The order is deterministic: specs in the order given, brace alternatives in order, glob
// matches sorted.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qv::data {

// Brace expansion only (no file system access). Nested braces are allowed; a group without a
// comma or a range ("{abc}") stays literal, as in the shell.
std::vector<std::string> expand_braces(const std::string& pattern);

// Expands braces, then globs each result. A glob matching nothing, a plain path that does not
// exist, an empty spec or a remote URL is a qv::Error naming it.
std::vector<std::string> expand_shards(const std::string& pattern);
std::vector<std::string> expand_shards(const std::vector<std::string>& patterns);

// The shards one rank reads: whole shards round-robin (shard i goes to rank i % world_size) when
// there are at least world_size shards; otherwise every rank reads all shards and keeps every
// world_size-th sample starting at its rank, so no rank is left without data.
struct RankShare {
  std::vector<std::string> shards;
  int64_t sample_stride = 1;  // keep sample n of the stream when n % stride == offset
  int64_t sample_offset = 0;
};
RankShare share_for_rank(const std::vector<std::string>& shards, int rank, int world_size);

}  // namespace qv::data
