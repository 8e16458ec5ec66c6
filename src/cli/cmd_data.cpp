// qwen3vl data inspect|bench --config FILE: what the data loader feeds the trainer for a job.
//   inspect [--batches N]           per batch: rows, tokens, padding, images and their grids,
//                                   packing, a text preview of a row; then the skip counters.
//   bench [--batches N] [--workers 1,2]  loader throughput (samples/s, tokens/s) per worker count,
//                                   then the cost of resuming there by seeking and by replaying.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "cli/command.h"
#include "core/error.h"
#include "data/pipeline/loader.h"
#include "train/data_source.h"
#include "train/job_config.h"
#include "train/trainer.h"

namespace qv::cli {
namespace {

data::LoaderConfig job_loader_config(const std::string& path) {
  const train::JobConfig job = train::JobConfig::load(path);
  QV_CHECK(train::parse_dataset_kind(job.dataset) != train::DatasetKind::kFixed, path,
           ": training.dataset = \"fixed\" does not use the loader");
  return train::loader_config(job, train::model_config(job), 0, 1);
}

struct BatchStats {
  int64_t real_tokens = 0, documents = 0;
};

BatchStats stats_of(const data::Batch& b) {
  BatchStats s;
  for (int64_t m : b.attention_mask) s.real_tokens += m;
  s.documents = static_cast<int64_t>(b.origins.size());
  return s;
}

// Row `r` as text, runs of image/video pad tokens collapsed to "<|image_pad|>x64", cut to
// about `max_chars` bytes at a character boundary.
std::string preview_row(const data::Batch& b, int64_t r, const data::Tokenizer& tok,
                        const data::TokenIds& ids, size_t max_chars) {
  std::string out;
  std::vector<int32_t> run;
  auto flush = [&] {
    if (!run.empty()) out += tok.decode(run);
    run.clear();
  };
  for (int64_t i = 0; i < b.seq; ++i) {
    const int64_t k = r * b.seq + i;
    if (!b.attention_mask[k]) break;
    const auto id = static_cast<int32_t>(b.ids[k]);
    if (id == ids.image_pad || id == ids.video_pad) {
      int64_t n = 0;
      while (i + n < b.seq && b.ids[k + n] == id) ++n;
      flush();
      out += (id == ids.image_pad ? "<|image_pad|>x" : "<|video_pad|>x") + std::to_string(n);
      i += n - 1;
      continue;
    }
    run.push_back(id);
  }
  flush();
  if (out.size() > max_chars) {
    size_t cut = max_chars;
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out = out.substr(0, cut) + " ...";
  }
  return out;
}

int inspect(const Flags& f) {
  const data::LoaderConfig c = job_loader_config(f.require("config"));
  const int64_t batches = f.get_int("batches", 2);
  QV_CHECK(batches > 0, "--batches must be positive");
  const data::Tokenizer tok = data::Tokenizer::load(c.tokenizer_path);
  const data::TokenIds ids = data::token_ids(tok);
  data::DataLoader loader(c);
  std::printf(
      "dataset %s: %s\n%lld rows x %lld tokens per batch, packing buffer %lld, "
      "at most %lld images per row\n",
      c.dataset.c_str(), c.path.c_str(), (long long)c.batch_size, (long long)c.seq_len,
      (long long)c.packing_buffer_size, (long long)c.max_images_per_row);
  const int64_t max_tokens =
      c.max_tokens_per_sample > 0 ? std::min(c.max_tokens_per_sample, c.seq_len) : c.seq_len;
  std::printf(
      "per sample: at most %lld tokens (longer ones %s), at most %lld images\n",
      (long long)max_tokens, c.truncate_long_samples ? "truncated" : "skipped",
      (long long)(c.max_images_per_sample > 0 ? c.max_images_per_sample : c.max_images_per_row));
  int64_t all_real = 0, all_slots = 0;
  for (int64_t n = 1; n <= batches; ++n) {
    const data::Batch b = loader.next();
    const BatchStats s = stats_of(b);
    const int64_t slots = b.rows * b.seq;
    all_real += s.real_tokens;
    all_slots += slots;
    std::printf(
        "\nbatch %lld: %lld rows, %lld documents, %lld tokens + %lld pad (pad fraction "
        "%.3f), %zu images\n",
        (long long)n, (long long)b.rows, (long long)s.documents, (long long)s.real_tokens,
        (long long)(slots - s.real_tokens), 1.0 - double(s.real_tokens) / slots,
        b.image_grids.size() + b.video_grids.size());
    std::ostringstream grids;
    for (const auto& g : b.image_grids) grids << " " << g.t << "x" << g.h << "x" << g.w;
    for (const auto& g : b.video_grids) grids << " video:" << g.t << "x" << g.h << "x" << g.w;
    if (!grids.str().empty())
      std::printf("  image grids (t x h x w patches):%s\n", grids.str().c_str());
    for (int64_t r = 0; r < b.rows; ++r) {
      int64_t used = 0, docs = 0, last_doc = -1;
      for (int64_t i = 0; i < b.seq; ++i) {
        if (!b.attention_mask[r * b.seq + i]) continue;
        ++used;
        if (b.document_ids[r * b.seq + i] != last_doc) ++docs;
        last_doc = b.document_ids[r * b.seq + i];
      }
      std::printf("  row %lld: %lld documents, %lld tokens, packing efficiency %.3f\n",
                  (long long)r, (long long)docs, (long long)used, double(used) / b.seq);
    }
    std::printf("  first document: %s\n", b.origins.empty() ? "-" : b.origins[0].c_str());
    std::printf("  row 0 text: %s\n", preview_row(b, 0, tok, ids, 400).c_str());
  }
  std::printf("\npacking efficiency over %lld batches: %.3f\n", (long long)batches,
              double(all_real) / all_slots);
  std::printf("skipped: %lld (%s)\n", (long long)loader.skips().total(),
              loader.skips().summary().c_str());
  for (const auto& r : loader.skips().records()) std::printf("  %s\n", r.message().c_str());
  return 0;
}

std::vector<int> parse_workers(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const int w = std::atoi(item.c_str());
    QV_CHECK(w >= 1 && w <= 256, "--workers takes a list like 1,2 (got '", s, "')");
    out.push_back(w);
  }
  QV_CHECK(!out.empty(), "--workers takes a list like 1,2");
  return out;
}

int bench(const Flags& f) {
  const data::LoaderConfig base = job_loader_config(f.require("config"));
  const int64_t batches = f.get_int("batches", 40);
  QV_CHECK(batches > 0, "--batches must be positive");
  std::printf("bench data: %s, %lld x %lld tokens per batch, %lld batches after a warm-up batch\n",
              base.path.c_str(), (long long)base.batch_size, (long long)base.seq_len,
              (long long)batches);
  nlohmann::json state;
  for (const int workers : parse_workers(f.get("workers", "1,2"))) {
    data::LoaderConfig c = base;
    c.num_workers = workers;
    data::DataLoader loader(c);
    loader.next();  // warm-up: the first batch waits for a full packing buffer
    const auto t0 = std::chrono::steady_clock::now();
    int64_t samples = 0, tokens = 0;
    for (int64_t n = 0; n < batches; ++n) {
      const BatchStats s = stats_of(loader.next());
      samples += s.documents;
      tokens += s.real_tokens;
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "workers %d: %lld samples, %lld tokens in %.2f s: %.1f samples/s, %.0f tokens/s "
        "(skipped %lld)\n",
        workers, (long long)samples, (long long)tokens, secs, samples / secs, tokens / secs,
        (long long)loader.skips().total());
    state = loader.state();
  }
  // What resuming at the last point costs: seeking (the saved pipeline) against replaying the
  // stream from the start (a state without it), each up to the first batch after the restore.
  for (const bool seek : {true, false}) {
    nlohmann::json s = state;
    if (!seek) s.erase("pipeline");
    data::DataLoader loader(base);
    const auto t0 = std::chrono::steady_clock::now();
    loader.restore(s);
    loader.next();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("resume after %lld batches by %s: %.2f s, %lld samples built\n",
                (long long)state.value("batches", int64_t{0}), seek ? "seeking" : "replaying", secs,
                (long long)loader.samples_built());
  }
  return 0;
}

int run_data(const Args& args) {
  const char* usage =
      "usage: qwen3vl data inspect --config FILE [--batches N]\n"
      "       qwen3vl data bench --config FILE [--batches N] [--workers 1,2]";
  QV_CHECK(!args.empty() && (args[0] == "inspect" || args[0] == "bench"), usage);
  Flags f(Args(args.begin() + 1, args.end()));
  if (args[0] == "inspect") {
    f.allow_only({"config", "batches"});
    return inspect(f);
  }
  f.allow_only({"config", "batches", "workers"});
  return bench(f);
}

const Registration kRegistration({"data",
                                  "show or time what the data loader feeds training (data "
                                  "inspect|bench --config FILE [--batches N])",
                                  run_data});

}  // namespace
}  // namespace qv::cli
