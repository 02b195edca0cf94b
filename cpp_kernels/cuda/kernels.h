// CUDA kernels of the avedge ops (no torch: compile-checked with plain nvcc for sm_87/sm_90;
// the torch binding is torch_cuda_ops.cu). Semantics are those of the CPU cores in ../csrc
// and of reference.py; arithmetic is float32 whatever the storage type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace avedge {
namespace cuda {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;       // joint_attention: one warp per query
constexpr int kMaxHeadDim = 128;        // each lane owns head_dim / 32 <= 4 output dims
constexpr int kDimsPerLane = kMaxHeadDim / kWarp;
constexpr int kThreads = 256;           // elementwise kernels

// Explicit conversions: torch builds with __CUDA_NO_HALF_CONVERSIONS__.
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ int warp_min_i(int v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ int warp_max_i(int v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// ---------------------------------------------------------------- joint_attention

template <typename T>
struct JointAttentionParams {
  int64_t B, H, Ta, Tm, D;
  const T *q_a, *k_a, *v_a, *q_m, *k_m, *v_m;  // contiguous (B, H, T, D)
  const float *pos_a, *pos_m;                   // (Ta,), (Tm,)
  float window, scale;
  T *out_a, *out_m;
};

// Online (flash-style) softmax state of one query, spread over a warp: lane l owns output
// dims l, l+32, l+64, l+96.
struct QueryState {
  float m, l, o[kDimsPerLane];
};

// Scores keys [lo, hi) of (k, v) in chunks of 32 (one key per lane), folds them into st.
// With pos_q/pos_k set, keys outside |pos_q - pos_k| <= window are skipped.
template <typename T>
__device__ void fold_keys(QueryState& st, const float* q_sh, const T* k, const T* v, int64_t lo, int64_t hi,
                          int64_t D, float scale, const float* pos_k, float pos_q, float window) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t base = lo; base < hi; base += kWarp) {
    const int64_t j = base + lane;
    bool valid = j < hi;
    if (valid && pos_k) valid = fabsf(pos_q - pos_k[j]) <= window;
    float s = -INFINITY;
    if (valid) {
      float acc = 0.f;
      const T* kj = k + j * D;
      for (int64_t d = 0; d < D; ++d) acc += q_sh[d] * to_f(kj[d]);
      s = acc * scale;
    }
    const float new_m = fmaxf(st.m, warp_max(s));
    if (new_m == -INFINITY) continue;  // nothing visible yet
    const float p = valid ? __expf(s - new_m) : 0.f;
    const float corr = __expf(st.m - new_m);  // 0 when st.m is -inf
    st.l = st.l * corr + warp_sum(p);
    for (int c = 0; c < kDimsPerLane; ++c) st.o[c] *= corr;
    const int n = hi - base < kWarp ? static_cast<int>(hi - base) : kWarp;
    for (int t = 0; t < n; ++t) {
      const float pt = __shfl_sync(0xffffffffu, p, t);
      if (pt == 0.f) continue;  // uniform across the warp: no divergence
      const T* vt = v + (base + t) * D;
      for (int c = 0; c < kDimsPerLane; ++c) {
        const int64_t d = lane + c * kWarp;
        if (d < D) st.o[c] += pt * to_f(vt[d]);
      }
    }
    st.m = new_m;
  }
}

template <typename T>
__global__ void joint_attention_kernel(JointAttentionParams<T> p) {
  __shared__ float q_sh[kWarpsPerBlock][kMaxHeadDim];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t per_bh = p.Ta + p.Tm;
  const int64_t query = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (query >= p.B * p.H * per_bh) return;  // whole warp exits together
  const int64_t bh = query / per_bh, t = query % per_bh;
  const bool audio = t < p.Ta;
  const int64_t tq = audio ? t : t - p.Ta;
  const int64_t Tq = audio ? p.Ta : p.Tm, To = audio ? p.Tm : p.Ta;
  const T* q = (audio ? p.q_a : p.q_m) + (bh * Tq + tq) * p.D;
  const T* k_self = (audio ? p.k_a : p.k_m) + bh * Tq * p.D;
  const T* v_self = (audio ? p.v_a : p.v_m) + bh * Tq * p.D;
  const T* k_other = (audio ? p.k_m : p.k_a) + bh * To * p.D;
  const T* v_other = (audio ? p.v_m : p.v_a) + bh * To * p.D;
  const float* pos_o = audio ? p.pos_m : p.pos_a;
  const float pos_q = (audio ? p.pos_a : p.pos_m)[tq];

  for (int64_t d = lane; d < p.D; d += kWarp) q_sh[warp][d] = to_f(q[d]);
  __syncwarp();

  // Band of visible other-stream keys (exact for any ordering; tight for sorted positions).
  int lo = INT32_MAX, hi = -1;
  for (int64_t j = lane; j < To; j += kWarp)
    if (fabsf(pos_q - pos_o[j]) <= p.window) {
      lo = min(lo, static_cast<int>(j));
      hi = max(hi, static_cast<int>(j));
    }
  lo = warp_min_i(lo);
  hi = warp_max_i(hi);

  QueryState st;
  st.m = -INFINITY;
  st.l = 0.f;
  for (int c = 0; c < kDimsPerLane; ++c) st.o[c] = 0.f;
  fold_keys(st, q_sh[warp], k_self, v_self, 0, Tq, p.D, p.scale, static_cast<const float*>(nullptr), 0.f, 0.f);
  if (hi >= lo) fold_keys(st, q_sh[warp], k_other, v_other, lo, hi + 1, p.D, p.scale, pos_o, pos_q, p.window);

  T* out = (audio ? p.out_a : p.out_m) + (bh * Tq + tq) * p.D;
  const float inv = 1.f / st.l;  // own-stream keys always exist, so l > 0
  for (int c = 0; c < kDimsPerLane; ++c) {
    const int64_t d = lane + c * kWarp;
    if (d < p.D) out[d] = from_f<T>(st.o[c] * inv);
  }
}

template <typename T>
cudaError_t launch_joint_attention(const JointAttentionParams<T>& p, cudaStream_t stream) {
  if (p.D > kMaxHeadDim) return cudaErrorInvalidValue;
  const int64_t queries = p.B * p.H * (p.Ta + p.Tm);
  const unsigned blocks = static_cast<unsigned>((queries + kWarpsPerBlock - 1) / kWarpsPerBlock);
  joint_attention_kernel<T><<<blocks, kWarpsPerBlock * kWarp, 0, stream>>>(p);
  return cudaGetLastError();
}

// ---------------------------------------------------------------- flow_step

template <typename T>
struct FlowStepParams {
  int64_t n;
  const T *x, *v_c, *v_u, *x_pred;  // v_u, x_pred may be null
  float dt, guidance;
  T* out;
};

template <typename T>
__global__ void flow_step_kernel(FlowStepParams<T> p) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float g = to_f(p.v_c[i]);
    if (p.v_u) {
      const float u = to_f(p.v_u[i]);
      g = u + p.guidance * (g - u);
    }
    float y = to_f(p.x[i]) + p.dt * g;
    if (p.x_pred) y = 0.5f * (y + to_f(p.x_pred[i]));
    p.out[i] = from_f<T>(y);
  }
}

template <typename T>
cudaError_t launch_flow_step(const FlowStepParams<T>& p, cudaStream_t stream) {
  if (p.n == 0) return cudaSuccess;
  const int64_t blocks = (p.n + kThreads - 1) / kThreads;
  flow_step_kernel<T><<<static_cast<unsigned>(blocks < 65535 ? blocks : 65535), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

// ---------------------------------------------------------------- mouth_warp

template <typename T>
struct MouthWarpParams {
  int64_t B, C, H, W;
  const T* image;  // (B, C, H, W)
  const T* flow;   // (B, 2, H, W)
  T* out;          // (B, C, H, W)
};

template <typename T>
__global__ void mouth_warp_kernel(MouthWarpParams<T> p) {
  const int64_t HW = p.H * p.W;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.B * HW;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / HW, yx = i % HW, y = yx / p.W, x = yx % p.W;
    const float sx = fminf(fmaxf(x + to_f(p.flow[(b * 2) * HW + yx]), 0.f), float(p.W - 1));
    const float sy = fminf(fmaxf(y + to_f(p.flow[(b * 2 + 1) * HW + yx]), 0.f), float(p.H - 1));
    const float x0f = floorf(sx), y0f = floorf(sy), wx = sx - x0f, wy = sy - y0f;
    const int64_t x0 = static_cast<int64_t>(x0f), y0 = static_cast<int64_t>(y0f);
    const int64_t x1 = min(x0 + 1, p.W - 1), y1 = min(y0 + 1, p.H - 1);
    for (int64_t c = 0; c < p.C; ++c) {
      const T* img = p.image + (b * p.C + c) * HW;
      const float v = (1.f - wy) * ((1.f - wx) * to_f(img[y0 * p.W + x0]) + wx * to_f(img[y0 * p.W + x1])) +
                      wy * ((1.f - wx) * to_f(img[y1 * p.W + x0]) + wx * to_f(img[y1 * p.W + x1]));
      p.out[(b * p.C + c) * HW + yx] = from_f<T>(v);
    }
  }
}

template <typename T>
cudaError_t launch_mouth_warp(const MouthWarpParams<T>& p, cudaStream_t stream) {
  const int64_t n = p.B * p.H * p.W;
  if (n == 0 || p.C == 0) return cudaSuccess;
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  mouth_warp_kernel<T><<<static_cast<unsigned>(blocks < 65535 ? blocks : 65535), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace avedge
