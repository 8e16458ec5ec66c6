#include "model/positions.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace qv::model {

namespace {

// Positions of one document (its valid tokens only), appended to out[3].
struct DocWalker {
  const ModelConfig& config;
  const std::vector<Grid>& images;
  HostVector<Grid> video_frames;  // each video grid split into t single-frame grids
  size_t next_image = 0, next_frame = 0;

  void walk(const HostVector<int64_t>& ids, HostVector<int64_t> out[3], int64_t& max_pos) {
    const int64_t m = config.vision.spatial_merge_size;
    const int64_t n = static_cast<int64_t>(ids.size());
    int64_t images_left = 0, videos_left = 0;
    for (int64_t i = 0; i + 1 < n; ++i) {
      if (ids[i] != config.vision_start_token_id) continue;
      if (ids[i + 1] == config.image_token_id) ++images_left;
      if (ids[i + 1] == config.video_token_id) ++videos_left;
    }
    int64_t st = 0, next = 0;  // next = first unused position
    auto emit_text = [&](int64_t len) {
      for (int64_t k = 0; k < len; ++k)
        for (int r = 0; r < 3; ++r) out[r].push_back(next + k);
      next += len;
    };
    while (images_left + videos_left > 0) {
      auto find_from = [&](int64_t token) {
        for (int64_t i = st; i < n; ++i)
          if (ids[i] == token) return i;
        return n + 1;
      };
      const int64_t ed_image = images_left > 0 ? find_from(config.image_token_id) : n + 1;
      const int64_t ed_video = videos_left > 0 ? find_from(config.video_token_id) : n + 1;
      QV_CHECK(ed_image <= n || ed_video <= n,
               "a <|vision_start|> announces an image/video but no placeholder token follows");
      Grid g;
      int64_t ed;
      if (ed_image < ed_video) {
        QV_CHECK(next_image < images.size(), "input_ids contain more images than image_grid_thw (",
                 images.size(), ")");
        g = images[next_image++];
        --images_left;
        ed = ed_image;
      } else {
        QV_CHECK(next_frame < video_frames.size(),
                 "input_ids contain more video frames than video_grid_thw describes (",
                 video_frames.size(), ")");
        g = video_frames[next_frame++];
        --videos_left;
        ed = ed_video;
      }
      QV_CHECK(g.h % m == 0 && g.w % m == 0, "grid [", g.t, ", ", g.h, ", ", g.w,
               "] is not divisible by spatial_merge_size ", m);
      const int64_t gt = g.t, gh = g.h / m, gw = g.w / m;
      emit_text(ed - st);
      const int64_t base = next;
      int64_t block_max = base;
      for (int64_t a = 0; a < gt; ++a)
        for (int64_t b = 0; b < gh; ++b)
          for (int64_t c = 0; c < gw; ++c) {
            out[0].push_back(base + a);
            out[1].push_back(base + b);
            out[2].push_back(base + c);
            block_max = std::max({block_max, base + a, base + b, base + c});
          }
      next = block_max + 1;
      st = ed + gt * gh * gw;
      QV_CHECK(st <= n, "an image/video block of ", gt * gh * gw,
               " tokens runs past the end of its sequence");
    }
    if (st < n) emit_text(n - st);
    max_pos = std::max(max_pos, next - 1);
  }
};

}  // namespace

RopeIndex compute_rope_index(const ModelConfig& config, const ModelInputs& in) {
  const int64_t B = in.batch, S = in.seq, N = B * S;
  QV_CHECK(static_cast<int64_t>(in.input_ids.size()) == N, "input_ids has ", in.input_ids.size(),
           " entries, expected ", N);
  RopeIndex r;
  r.positions.assign(3 * N, 1);  // HF leaves padded positions at 1
  r.deltas.assign(B, 0);
  DocWalker walker{config, in.image_grids, {}};
  for (const Grid& g : in.video_grids)
    for (int64_t f = 0; f < g.t; ++f) walker.video_frames.push_back({1, g.h, g.w});
  const bool any_vision = !in.image_grids.empty() || !in.video_grids.empty();
  for (int64_t b = 0; b < B; ++b) {
    int64_t max_pos = -1;
    int64_t s = 0;
    while (s < S) {
      // One document: [s, e) of row b.
      int64_t e = s + 1;
      if (!in.document_ids.empty())
        while (e < S && in.document_ids[b * S + e] == in.document_ids[b * S + s]) ++e;
      else
        e = S;
      HostVector<int64_t> ids, where;
      for (int64_t i = s; i < e; ++i)
        if (in.valid(b * S + i)) {
          ids.push_back(in.input_ids[b * S + i]);
          where.push_back(b * S + i);
        }
      HostVector<int64_t> pos[3];
      walker.walk(ids, pos, max_pos);
      for (size_t k = 0; k < where.size(); ++k)
        for (int row = 0; row < 3; ++row) r.positions[row * N + where[k]] = pos[row][k];
      s = e;
    }
    if (!any_vision) {
      // HF's text-only path takes the max over every position, padded ones (1) included.
      for (int64_t i = 0; i < S; ++i)
        if (!in.valid(b * S + i)) max_pos = std::max<int64_t>(max_pos, 1);
    }
    r.deltas[b] = max_pos + 1 - S;
  }
  return r;
}

void text_rope_tables(const TextConfig& c, const HostVector<int64_t>& positions, int64_t tokens,
                      HostVector<float>& cos, HostVector<float>& sin) {
  const int64_t hd = c.head_dim, half = hd / 2;
  HostVector<float> inv_freq(half);
  for (int64_t j = 0; j < half; ++j) {
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(hd);
    inv_freq[j] = 1.0f / std::pow(static_cast<float>(c.rope_theta), exponent);
  }
  // Interleaved layout: slot j reads H when j % 3 == 1 and j < 3 * section[1], W when
  // j % 3 == 2 and j < 3 * section[2], T otherwise.
  HostVector<int> axis(half, 0);
  for (int64_t j = 0; j < half; ++j) {
    if (j % 3 == 1 && j < 3 * c.mrope_section[1]) axis[j] = 1;
    if (j % 3 == 2 && j < 3 * c.mrope_section[2]) axis[j] = 2;
  }
  cos.resize(tokens * hd);
  sin.resize(tokens * hd);
#pragma omp parallel for
  for (int64_t i = 0; i < tokens; ++i) {
    for (int64_t j = 0; j < half; ++j) {
      const float angle = inv_freq[j] * static_cast<float>(positions[axis[j] * tokens + i]);
      const float cv = std::cos(angle), sv = std::sin(angle);
      cos[i * hd + j] = cos[i * hd + j + half] = cv;
      sin[i * hd + j] = sin[i * hd + j + half] = sv;
    }
  }
}

HostVector<float> linspace_f32(float start, float end, int64_t steps) {
  HostVector<float> out(std::max<int64_t>(steps, 0));
  if (steps == 1) out[0] = start;
  if (steps <= 1) return out;
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int64_t halfway = steps / 2;
  for (int64_t i = 0; i < steps; ++i)
    out[i] = i < halfway ? start + step * static_cast<float>(i)
                         : end - step * static_cast<float>(steps - i - 1);
  return out;
}

VisionPositions vision_positions(const VisionConfig& c, const std::vector<Grid>& grids) {
  VisionPositions vp;
  const int64_t m = c.spatial_merge_size, hd = c.head_dim(), quarter = hd / 4;
  int64_t side = 0;
  while ((side + 1) * (side + 1) <= c.num_position_embeddings) ++side;
  // 2-D rotary: dim = head_dim / 2, inv_freq over arange(0, dim, 2) / dim.
  HostVector<float> inv_freq(quarter);
  const float dim = static_cast<float>(hd / 2);
  for (int64_t j = 0; j < quarter; ++j)
    inv_freq[j] = 1.0f / std::pow(10000.0f, static_cast<float>(2 * j) / dim);
  vp.cu_seqlens.host.push_back(0);
  for (const Grid& g : grids) {
    QV_CHECK(g.t > 0 && g.h > 0 && g.w > 0, "grid [", g.t, ", ", g.h, ", ", g.w,
             "] must be positive");
    QV_CHECK(g.h % m == 0 && g.w % m == 0, "grid [", g.t, ", ", g.h, ", ", g.w,
             "] is not divisible by spatial_merge_size ", m);
    const HostVector<float> hs = linspace_f32(0.0f, static_cast<float>(side - 1), g.h);
    const HostVector<float> ws = linspace_f32(0.0f, static_cast<float>(side - 1), g.w);
    for (int64_t t = 0; t < g.t; ++t) {
      vp.cu_seqlens.host.push_back(vp.cu_seqlens.host.back() + g.h * g.w);
      for (int64_t br = 0; br < g.h / m; ++br)
        for (int64_t bc = 0; bc < g.w / m; ++bc)
          for (int64_t ir = 0; ir < m; ++ir)
            for (int64_t ic = 0; ic < m; ++ic) {
              const int64_t row = br * m + ir, col = bc * m + ic;
              for (int64_t j = 0; j < quarter; ++j)
                vp.angles.push_back(static_cast<float>(row) * inv_freq[j]);
              for (int64_t j = 0; j < quarter; ++j)
                vp.angles.push_back(static_cast<float>(col) * inv_freq[j]);
              const int64_t hf = static_cast<int64_t>(hs[row]), wf = static_cast<int64_t>(ws[col]);
              const int64_t hc = std::min(hf + 1, side - 1), wc = std::min(wf + 1, side - 1);
              const float dh = hs[row] - static_cast<float>(hf);
              const float dw = ws[col] - static_cast<float>(wf);
              const int64_t idx[4] = {hf * side + wf, hf * side + wc, hc * side + wf,
                                      hc * side + wc};
              const float wt[4] = {(1 - dh) * (1 - dw), (1 - dh) * dw, dh * (1 - dw), dh * dw};
              for (int k = 0; k < 4; ++k) {
                vp.pos_index.host.push_back(idx[k]);
                vp.pos_weight.host.push_back(wt[k]);
              }
            }
    }
  }
  vp.patches = vp.cu_seqlens.host.back();
  const int64_t half = hd / 2;
  vp.cos.host.resize(vp.patches * hd);
  vp.sin.host.resize(vp.patches * hd);
  for (int64_t p = 0; p < vp.patches; ++p)
    for (int64_t j = 0; j < half; ++j) {
      const float a = vp.angles[p * half + j];
      vp.cos.host[p * hd + j] = vp.cos.host[p * hd + j + half] = std::cos(a);
      vp.sin.host[p * hd + j] = vp.sin.host[p * hd + j + half] = std::sin(a);
    }
  for (auto* m : {&vp.cos, &vp.sin, &vp.pos_weight}) m->upload();
  for (auto* m : {&vp.cu_seqlens, &vp.pos_index}) m->upload();
  return vp;
}

}  // namespace qv::model
