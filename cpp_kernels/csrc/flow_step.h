// avedge::flow_step CPU core: one fused update of a flow-matching ODE sampler.
//
//   g   = v_c                          (no guidance: v_u absent)
//   g   = v_u + s * (v_c - v_u)        (classifier-free guidance)
//   out = x + dt * g                   (Euler step; Heun predictor; midpoint half step)
//   out = (x + x_pred + dt * g) / 2    (Heun corrector, x_pred = x + dt * g_1 from the
//                                       predictor, so g_1 need not be kept or re-combined)
//
// Eager PyTorch spends 5-6 kernels and as many temporaries on this; here it is one pass that
// reads each input once and writes the output once. T is float, c10::Half/BFloat16 or the
// ExecuTorch equivalents: arithmetic is always float.
#pragma once

#include <cstdint>

namespace avedge {

constexpr int64_t kFlowGrain = 1 << 15;  // elements per task: smaller tensors stay on one thread

template <typename T>
struct FlowStepArgs {
  int64_t n;
  const T *x, *v_c, *v_u, *x_pred;  // v_u, x_pred may be null
  float dt, guidance;
  T* out;
};

template <typename T>
inline void flow_step_range(const FlowStepArgs<T>& a, int64_t begin, int64_t end) {
  const T* __restrict x = a.x;
  const T* __restrict vc = a.v_c;
  const T* __restrict vu = a.v_u;
  const T* __restrict xp = a.x_pred;
  T* __restrict out = a.out;
  const float dt = a.dt, s = a.guidance;
  // Four specialised loops so that each inner loop is branch-free and vectorises.
  if (vu && xp) {
    for (int64_t i = begin; i < end; ++i) {
      const float u = static_cast<float>(vu[i]);
      const float g = u + s * (static_cast<float>(vc[i]) - u);
      out[i] = static_cast<T>(0.5f * (static_cast<float>(x[i]) + static_cast<float>(xp[i]) + dt * g));
    }
  } else if (vu) {
    for (int64_t i = begin; i < end; ++i) {
      const float u = static_cast<float>(vu[i]);
      const float g = u + s * (static_cast<float>(vc[i]) - u);
      out[i] = static_cast<T>(static_cast<float>(x[i]) + dt * g);
    }
  } else if (xp) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = static_cast<T>(0.5f * (static_cast<float>(x[i]) + static_cast<float>(xp[i]) +
                                      dt * static_cast<float>(vc[i])));
  } else {
    for (int64_t i = begin; i < end; ++i)
      out[i] = static_cast<T>(static_cast<float>(x[i]) + dt * static_cast<float>(vc[i]));
  }
}

template <typename T, typename ParallelFor>
void flow_step_cpu(const FlowStepArgs<T>& a, ParallelFor parallel_for) {
  if (a.n <= kFlowGrain) {  // skip the thread pool entirely for kiosk-sized states
    flow_step_range(a, 0, a.n);
    return;
  }
  parallel_for(0, a.n, kFlowGrain, [&](int64_t begin, int64_t end) { flow_step_range(a, begin, end); });
}

}  // namespace avedge
