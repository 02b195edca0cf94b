// avedge::joint_attention CPU core, shared by the torch and the ExecuTorch builds.
//
// Two token streams (audio "a", motion "m") of one model layer. A query of either stream
// attends, in ONE softmax, to
//   * every key of its own stream (full self attention, as in JAM-Flow), and
//   * the keys of the other stream whose aligned time lies within +-window of its own:
//     |pos_q - pos_k| <= window (positions on a common clock).
// The (Ta+Tm)^2 joint mask is never built: own-stream scores are dense, and for a block of
// queries only the band of other-stream keys inside the window is scored (for sorted
// positions that band is ~2*window wide; unsorted positions are still exact, just slower).
//
// Layout: every tensor is contiguous float32. q/k/v_a: (B, H, Ta, D); q/k/v_m: (B, H, Tm, D);
// pos_a: (Ta,), pos_m: (Tm,); out_a: (B, H, Ta, D); out_m: (B, H, Tm, D).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "simd.h"

namespace avedge {

constexpr int kQueryBlock = 8;  // queries scored together: each key load feeds 8 FMAs

struct JointAttentionArgs {
  int64_t B, H, Ta, Tm, D;
  const float *q_a, *k_a, *v_a, *q_m, *k_m, *v_m;
  const float *pos_a, *pos_m;
  float window, scale;
  float *out_a, *out_m;
};

namespace ja {

inline int64_t round_up(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

// Row stride of a transposed key buffer: padded so that a 16-lane load starting anywhere
// inside the T valid columns stays in bounds (the pad is zero and masked later).
inline int64_t kt_stride(int64_t T) {
  return round_up(T, kLanes) + kLanes;
}

// k: (T, D) row-major -> kt: (D, kt_stride(T)); keys become contiguous along the lane axis so
// one vector load covers 16 keys.
inline void transpose_keys(const float* k, int64_t T, int64_t D, float* kt) {
  const int64_t ld = kt_stride(T);
  for (int64_t d = 0; d < D; ++d) {
    float* row = kt + d * ld;
    for (int64_t t = 0; t < T; ++t) row[t] = k[t * D + d];
    for (int64_t t = T; t < ld; ++t) row[t] = 0.f;
  }
}

// s[i, j] = qs_i . kt[:, lo + j] for i < kQueryBlock and j < round_up(n, 16).
// qs: (kQueryBlock, D), already multiplied by the softmax scale.
inline void score_block(const float* qs, int64_t D, const float* kt, int64_t ldk, int64_t lo,
                        int64_t n, float* s, int64_t lds) {
  for (int64_t j = 0; j < n; j += kLanes) {
    vf acc[kQueryBlock] = {};
    const float* kcol = kt + lo + j;
    for (int64_t d = 0; d < D; ++d) {
      const vf kv = vload(kcol + d * ldk);
      for (int i = 0; i < kQueryBlock; ++i) acc[i] += qs[i * D + d] * kv;
    }
    for (int i = 0; i < kQueryBlock; ++i) vstore(s + i * lds + j, acc[i]);
  }
}

// out_i += sum_j p[i, j] * v[j, :] for j < n; acc: (kQueryBlock, D).
inline void accumulate_pv(const float* p, int64_t ldp, const float* v, int64_t n, int64_t D,
                          float* acc) {
  int64_t d0 = 0;
  for (; d0 + kLanes <= D; d0 += kLanes) {
    vf o[kQueryBlock];
    for (int i = 0; i < kQueryBlock; ++i) o[i] = vload(acc + i * D + d0);
    for (int64_t j = 0; j < n; ++j) {
      const vf vv = vload(v + j * D + d0);
      for (int i = 0; i < kQueryBlock; ++i) o[i] += p[i * ldp + j] * vv;
    }
    for (int i = 0; i < kQueryBlock; ++i) vstore(acc + i * D + d0, o[i]);
  }
  for (; d0 < D; ++d0) {  // head dims that are not a multiple of 16
    for (int i = 0; i < kQueryBlock; ++i) {
      float o = acc[i * D + d0];
      for (int64_t j = 0; j < n; ++j) o += p[i * ldp + j] * v[j * D + d0];
      acc[i * D + d0] = o;
    }
  }
}

// One work item: queries [t0, t0 + nq) of one (batch, head, stream).
struct StreamView {
  const float *q, *k_self_t, *v_self, *k_other_t, *v_other, *pos_q, *pos_o;
  int64_t Tq, To;
  float* out;
};

inline void attend_block(const StreamView& sv, int64_t t0, int nq, int64_t D, float window,
                         float scale, std::vector<float>& scratch) {
  const float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t ldk_self = kt_stride(sv.Tq), ldk_other = kt_stride(sv.To);

  // Band of other-stream keys that any query of the block can see.
  float pmin = sv.pos_q[t0], pmax = sv.pos_q[t0];
  for (int i = 1; i < nq; ++i) {
    pmin = std::min(pmin, sv.pos_q[t0 + i]);
    pmax = std::max(pmax, sv.pos_q[t0 + i]);
  }
  int64_t lo = sv.To, hi = 0;
  for (int64_t j = 0; j < sv.To; ++j) {
    const float p = sv.pos_o[j];
    if (p >= pmin - window && p <= pmax + window) {
      lo = std::min(lo, j);
      hi = j + 1;
    }
  }
  const int64_t n_cross = hi > lo ? hi - lo : 0;

  const int64_t self_w = round_up(sv.Tq, kLanes), cross_w = round_up(n_cross, kLanes);
  const int64_t lds = self_w + cross_w;
  scratch.resize(kQueryBlock * (lds + 2 * D));
  float* s = scratch.data();                   // (kQueryBlock, lds) scores -> probabilities
  float* qs = s + kQueryBlock * lds;           // (kQueryBlock, D) scaled queries
  float* acc = qs + kQueryBlock * D;           // (kQueryBlock, D) output accumulator
  for (int i = 0; i < kQueryBlock; ++i)
    for (int64_t d = 0; d < D; ++d)
      qs[i * D + d] = i < nq ? sv.q[(t0 + i) * D + d] * scale : 0.f;

  score_block(qs, D, sv.k_self_t, ldk_self, 0, sv.Tq, s, lds);
  if (n_cross > 0) score_block(qs, D, sv.k_other_t, ldk_other, lo, n_cross, s + self_w, lds);

  for (int i = 0; i < nq; ++i) {
    float* row = s + i * lds;
    for (int64_t j = sv.Tq; j < self_w; ++j) row[j] = kNegInf;  // lane padding
    const float pq = sv.pos_q[t0 + i];
    for (int64_t j = 0; j < cross_w; ++j) {
      const bool visible = j < n_cross && std::fabs(pq - sv.pos_o[lo + j]) <= window;
      if (!visible) row[self_w + j] = kNegInf;
    }
    // Softmax over the row; own-stream keys always exist, so the max is finite.
    vf m = vbroadcast(kNegInf);
    for (int64_t j = 0; j < lds; j += kLanes) {
      const vf x = vload(row + j);
      m = x > m ? x : m;
    }
    const vf mx = vbroadcast(vmax_reduce(m));
    vf sum = {};
    for (int64_t j = 0; j < lds; j += kLanes) {
      const vf e = vexp(vload(row + j) - mx);
      vstore(row + j, e);
      sum += e;
    }
    const float inv = 1.f / vsum_reduce(sum);
    for (int64_t j = 0; j < lds; j += kLanes) vstore(row + j, vload(row + j) * inv);
  }
  for (int i = nq; i < kQueryBlock; ++i)  // absent queries: zero weights, results dropped
    for (int64_t j = 0; j < lds; ++j) s[i * lds + j] = 0.f;

  std::fill(acc, acc + kQueryBlock * D, 0.f);
  accumulate_pv(s, lds, sv.v_self, sv.Tq, D, acc);
  if (n_cross > 0) accumulate_pv(s + self_w, lds, sv.v_other + lo * D, n_cross, D, acc);
  for (int i = 0; i < nq; ++i)
    std::copy(acc + i * D, acc + (i + 1) * D, sv.out + (t0 + i) * D);
}

}  // namespace ja

// parallel_for(begin, end, grain, fn(begin, end)): at::parallel_for in the torch build,
// executorch::extension::parallel_for in the ExecuTorch build.
template <typename ParallelFor>
void joint_attention_cpu(const JointAttentionArgs& a, ParallelFor parallel_for) {
  const int64_t BH = a.B * a.H, D = a.D;
  const int64_t kt_a_size = D * ja::kt_stride(a.Ta), kt_m_size = D * ja::kt_stride(a.Tm);
  std::vector<float> kt_a(BH * kt_a_size), kt_m(BH * kt_m_size);

  // Pass 1: transpose every head's keys once; both query streams reuse them.
  parallel_for(0, 2 * BH, 1, [&](int64_t begin, int64_t end) {
    for (int64_t w = begin; w < end; ++w) {
      const int64_t bh = w / 2;
      if (w % 2 == 0)
        ja::transpose_keys(a.k_a + bh * a.Ta * D, a.Ta, D, kt_a.data() + bh * kt_a_size);
      else
        ja::transpose_keys(a.k_m + bh * a.Tm * D, a.Tm, D, kt_m.data() + bh * kt_m_size);
    }
  });

  // Pass 2: work items = (batch*head, stream, query block).
  const int64_t nb_a = ja::round_up(a.Ta, kQueryBlock) / kQueryBlock;
  const int64_t nb_m = ja::round_up(a.Tm, kQueryBlock) / kQueryBlock;
  parallel_for(0, BH * (nb_a + nb_m), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch;
    for (int64_t w = begin; w < end; ++w) {
      const int64_t bh = w / (nb_a + nb_m), blk = w % (nb_a + nb_m);
      const float* kta = kt_a.data() + bh * kt_a_size;
      const float* ktm = kt_m.data() + bh * kt_m_size;
      ja::StreamView sv;
      int64_t t0;
      if (blk < nb_a) {
        sv = {a.q_a + bh * a.Ta * D, kta, a.v_a + bh * a.Ta * D, ktm, a.v_m + bh * a.Tm * D,
              a.pos_a, a.pos_m, a.Ta, a.Tm, a.out_a + bh * a.Ta * D};
        t0 = blk * kQueryBlock;
      } else {
        sv = {a.q_m + bh * a.Tm * D, ktm, a.v_m + bh * a.Tm * D, kta, a.v_a + bh * a.Ta * D,
              a.pos_m, a.pos_a, a.Tm, a.Ta, a.out_m + bh * a.Tm * D};
        t0 = (blk - nb_a) * kQueryBlock;
      }
      const int nq = static_cast<int>(std::min<int64_t>(kQueryBlock, sv.Tq - t0));
      ja::attend_block(sv, t0, nq, D, a.window, a.scale, scratch);
    }
  });
}

}  // namespace avedge
