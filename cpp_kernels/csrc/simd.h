// Portable SIMD for the avedge CPU kernels (shared by the torch and the ExecuTorch builds).
//
// GCC/Clang vector extensions instead of at::vec: the ExecuTorch build has no ATen, and one
// source for both builds keeps the two runtimes bit-for-bit on the same arithmetic. A vf is
// 16 floats: one zmm on AVX-512, two ymm on AVX2, four q-registers on NEON (Jetson).
#pragma once

#include <cstdint>
#include <cstring>

namespace avedge {

constexpr int kLanes = 16;
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline vf vbroadcast(float x) {
  return vf{} + x;
}

// Unaligned load/store: memcpy compiles to one vector move and is alias-safe.
inline vf vload(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(vf));
  return v;
}

inline void vstore(float* p, vf v) {
  std::memcpy(p, &v, sizeof(vf));
}

inline float vmax_reduce(vf v) {
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

inline float vsum_reduce(vf v) {
  float s = 0.f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// exp(x) for x <= 0 (softmax after max subtraction); inputs below kExpUnderflow give exactly 0,
// so masked scores (-inf) contribute nothing. Cody-Waite range reduction + degree-6 polynomial,
// relative error < 2e-7 on [-87, 0] (same scheme as Cephes/SLEEF expf).
constexpr float kExpUnderflow = -87.0f;

inline vf vexp(vf x) {
  const vf lo = vbroadcast(kExpUnderflow);
  const vf xc = x < lo ? lo : x;
  const vf log2e = vbroadcast(1.44269504088896341f);
  const vf round_magic = vbroadcast(12582912.0f);  // 1.5 * 2^23: adds round-to-nearest
  vf n = (xc * log2e + round_magic) - round_magic;
  vf r = xc - n * vbroadcast(0.693359375f);  // ln2 split into hi + lo for exact reduction
  r = r - n * vbroadcast(-2.12194440e-4f);
  vf p = vbroadcast(1.9875691500e-4f);
  p = p * r + vbroadcast(1.3981999507e-3f);
  p = p * r + vbroadcast(8.3334519073e-3f);
  p = p * r + vbroadcast(4.1665795894e-2f);
  p = p * r + vbroadcast(1.6666665459e-1f);
  p = p * r + vbroadcast(5.0000001201e-1f);
  p = p * r * r + r + vbroadcast(1.0f);
  vi e = (__builtin_convertvector(n, vi) + 127) << 23;  // 2^n as float bits
  vf scale;
  std::memcpy(&scale, &e, sizeof(vf));
  const vf y = p * scale;
  return x < lo ? vf{} : y;
}

}  // namespace avedge
