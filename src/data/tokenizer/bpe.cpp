#include "data/tokenizer/bpe.h"

#include <algorithm>
#include <array>
#include <functional>
#include <mutex>

namespace qv::data {

// Open-addressing hash table (linear probing) from a pair of token ids to its merge.
struct BpeModel::PairTable {
  struct Slot {
    uint64_t key = kEmpty;
    int32_t rank = 0, merged = 0;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // no pair of non-negative ids packs to this

  std::vector<Slot> slots;
  uint64_t mask = 0;
  int shift = 64;

  static uint64_t key_of(int32_t left, int32_t right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
  }
  size_t home(uint64_t key) const {
    return size_t((key * 0x9E3779B97F4A7C15ull) >> shift);  // Fibonacci hashing
  }

  explicit PairTable(size_t n) {
    size_t cap = 16;
    int bits = 4;
    while (cap < n + n / 2) cap <<= 1, ++bits;  // load factor at most 2/3
    slots.resize(cap);
    mask = cap - 1;
    shift = 64 - bits;
  }

  void insert(int32_t left, int32_t right, int32_t rank, int32_t merged) {
    const uint64_t key = key_of(left, right);
    for (size_t i = home(key);; i = (i + 1) & mask) {
      if (slots[i].key == kEmpty || slots[i].key == key) {
        slots[i] = {key, rank, merged};
        return;
      }
    }
  }

  const Slot* find(int32_t left, int32_t right) const {
    const uint64_t key = key_of(left, right);
    for (size_t i = home(key);; i = (i + 1) & mask) {
      if (slots[i].key == key) return &slots[i];
      if (slots[i].key == kEmpty) return nullptr;
    }
  }
};

// Word -> ids for words seen before. Sharded so that loader threads rarely wait on each other;
// once a shard is full it stops taking new words (frequent words arrive early), which keeps
// memory bounded without eviction bookkeeping.
struct BpeModel::WordCache {
  static constexpr size_t kShards = 16;
  static constexpr size_t kMaxWordBytes = 128;  // longer words seldom repeat
  struct Shard {
    std::mutex mutex;
    StringMap<std::vector<int32_t>> words;
  };
  std::array<Shard, kShards> shards;
  size_t per_shard_capacity;

  explicit WordCache(size_t capacity) : per_shard_capacity((capacity + kShards - 1) / kShards) {}

  Shard& shard_of(size_t hash) { return shards[(hash >> 32) % kShards]; }

  bool get(std::string_view word, size_t hash, std::vector<int32_t>& out) {
    Shard& s = shard_of(hash);
    std::lock_guard lock(s.mutex);
    auto it = s.words.find(word);
    if (it == s.words.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  }

  void put(std::string_view word, size_t hash, const int32_t* ids, size_t n) {
    Shard& s = shard_of(hash);
    std::lock_guard lock(s.mutex);
    if (s.words.size() >= per_shard_capacity) return;
    s.words.emplace(std::string(word), std::vector<int32_t>(ids, ids + n));
  }
};

BpeModel::BpeModel(const std::vector<int32_t>& byte_token, const std::vector<MergeRule>& merges,
                   StringMap<int32_t> vocab, bool ignore_merges, size_t cache_capacity)
    : merges_(merges),
      pairs_(std::make_unique<PairTable>(merges.size())),
      vocab_(std::move(vocab)),
      ignore_merges_(ignore_merges),
      cache_(cache_capacity > 0 ? std::make_unique<WordCache>(cache_capacity) : nullptr) {
  std::copy(byte_token.begin(), byte_token.begin() + 256, byte_token_);
  for (size_t r = 0; r < merges.size(); ++r)
    pairs_->insert(merges[r].left, merges[r].right, static_cast<int32_t>(r), merges[r].merged);
  // A pair listed twice keeps its later rank; its earlier entry can then never match.
}

BpeModel::~BpeModel() = default;
BpeModel::BpeModel(BpeModel&&) noexcept = default;

int32_t BpeModel::token_of_bytes(std::string_view bytes) const {
  auto it = vocab_.find(bytes);
  return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (word.size() == 1) {
    out.push_back(byte_token_[static_cast<unsigned char>(word[0])]);
    return;
  }
  if (ignore_merges_) {
    if (const int32_t id = token_of_bytes(word); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  if (!cache_ || word.size() > WordCache::kMaxWordBytes) {
    merge(word, out);
    return;
  }
  const size_t hash = StringHash{}(word);
  if (cache_->get(word, hash, out)) return;
  const size_t first = out.size();
  merge(word, out);
  cache_->put(word, hash, out.data() + first, out.size() - first);
}

void BpeModel::merge(std::string_view word, std::vector<int32_t>& out) const {
  // Symbols live at the index of their first byte; a merge keeps the left one and kills the
  // right one (id -1), so a symbol's index is its position in the word and breaks rank ties.
  thread_local std::vector<int32_t> id, next, prev;
  thread_local std::vector<uint64_t> heap;  // (rank << 32 | index), smallest on top
  const int32_t n = static_cast<int32_t>(word.size());
  id.resize(n);
  next.resize(n);
  prev.resize(n);
  heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    id[i] = byte_token_[static_cast<unsigned char>(word[i])];
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  auto push = [&](int32_t i) {
    if (const PairTable::Slot* m = pairs_->find(id[i], id[next[i]]))
      heap.push_back((uint64_t(uint32_t(m->rank)) << 32) | uint32_t(i));
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  std::make_heap(heap.begin(), heap.end(), std::greater<>());
  auto push_heap_entry = [&](int32_t i) {
    const size_t before = heap.size();
    push(i);
    if (heap.size() != before) std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const uint64_t top = heap.back();
    heap.pop_back();
    const int32_t i = static_cast<int32_t>(top & 0xFFFFFFFFu);
    const int32_t rank = static_cast<int32_t>(top >> 32);
    // Skip entries made stale by earlier merges: the pair at i must still be this merge.
    if (id[i] < 0 || next[i] < 0) continue;
    const MergeRule& m = merges_[rank];
    if (id[i] != m.left || id[next[i]] != m.right) continue;
    const int32_t j = next[i];
    id[i] = m.merged;
    id[j] = -1;
    next[i] = next[j];
    if (next[i] >= 0) prev[next[i]] = i;
    if (prev[i] >= 0) push_heap_entry(prev[i]);
    if (next[i] >= 0) push_heap_entry(i);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(id[i]);
  if (n > (1 << 16)) {  // a huge word (e.g. a long base64 blob): do not keep its scratch space
    for (auto* v : {&id, &next, &prev}) std::vector<int32_t>().swap(*v);
    std::vector<uint64_t>().swap(heap);
  }
}

}  // namespace qv::data
