// avedge::mouth_warp CPU core: bilinear backward warp of an image by a displacement field.
//
//   out[b, c, y, x] = bilinear(image[b, c], x + flow[b, 0, y, x], y + flow[b, 1, y, x])
//
// Displacements are in pixels (flow[:, 0] horizontal, flow[:, 1] vertical). Border handling:
// sample coordinates are clamped to [0, W-1] x [0, H-1] ("border" / replicate), so a warp
// that reaches past the photo repeats its edge instead of pulling in black. Equals
// grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True).
//
// Layout: image (B, C, H, W), flow (B, 2, H, W), out (B, C, H, W), all contiguous.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace avedge {

template <typename T>
struct MouthWarpArgs {
  int64_t B, C, H, W;
  const T* image;
  const T* flow;
  T* out;
};

template <typename T, typename ParallelFor>
void mouth_warp_cpu(const MouthWarpArgs<T>& a, ParallelFor parallel_for) {
  const int64_t HW = a.H * a.W;
  const float xmax = static_cast<float>(a.W - 1), ymax = static_cast<float>(a.H - 1);
  // One task = one output row of one image: the 4 taps and weights are computed once per
  // pixel (vectorisable, no gathers) and then reused for every channel.
  parallel_for(0, a.B * a.H, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> i00(a.W), i01(a.W), i10(a.W), i11(a.W);
    std::vector<float> w00(a.W), w01(a.W), w10(a.W), w11(a.W);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = r / a.H, y = r % a.H;
      const T* fx = a.flow + (b * 2 + 0) * HW + y * a.W;
      const T* fy = a.flow + (b * 2 + 1) * HW + y * a.W;
      for (int64_t x = 0; x < a.W; ++x) {
        const float sx = std::min(std::max(static_cast<float>(x) + static_cast<float>(fx[x]), 0.f), xmax);
        const float sy = std::min(std::max(static_cast<float>(y) + static_cast<float>(fy[x]), 0.f), ymax);
        const float x0f = std::floor(sx), y0f = std::floor(sy);
        const float wx = sx - x0f, wy = sy - y0f;
        const int64_t x0 = static_cast<int64_t>(x0f), y0 = static_cast<int64_t>(y0f);
        const int64_t x1 = std::min<int64_t>(x0 + 1, a.W - 1), y1 = std::min<int64_t>(y0 + 1, a.H - 1);
        i00[x] = y0 * a.W + x0;
        i01[x] = y0 * a.W + x1;
        i10[x] = y1 * a.W + x0;
        i11[x] = y1 * a.W + x1;
        w00[x] = (1.f - wy) * (1.f - wx);
        w01[x] = (1.f - wy) * wx;
        w10[x] = wy * (1.f - wx);
        w11[x] = wy * wx;
      }
      for (int64_t c = 0; c < a.C; ++c) {
        const T* img = a.image + (b * a.C + c) * HW;
        T* o = a.out + (b * a.C + c) * HW + y * a.W;
        for (int64_t x = 0; x < a.W; ++x) {
          const float v = w00[x] * static_cast<float>(img[i00[x]]) + w01[x] * static_cast<float>(img[i01[x]]) +
                          w10[x] * static_cast<float>(img[i10[x]]) + w11[x] * static_cast<float>(img[i11[x]]);
          o[x] = static_cast<T>(v);
        }
      }
    }
  });
}

}  // namespace avedge
