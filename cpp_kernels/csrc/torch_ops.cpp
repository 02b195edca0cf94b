// CPU kernels of the avedge ops for PyTorch (TORCH_LIBRARY_IMPL). The schemas are defined in
// Python (cpp_kernels/ops.py) so that the no-compiler fallback registers the very same ones;
// this library only adds the CPU implementations of the functional and `.out` overloads.
// Argument errors raise ValueError/TypeError (TORCH_CHECK_VALUE/TYPE) with the offending shapes.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "flow_step.h"
#include "joint_attention.h"
#include "mouth_warp.h"

namespace {

using at::Tensor;

const auto kParallelFor = [](int64_t begin, int64_t end, int64_t grain, const auto& fn) {
  at::parallel_for(begin, end, grain, fn);
};

void check_float_dtype(const Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kHalf ||
                       t.scalar_type() == at::kBFloat16,
                   op, ": ", name, " must be float32, float16 or bfloat16, got ", t.scalar_type());
}

void check_same_dtype(const Tensor& ref, const Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ",
                   t.scalar_type(), " but the first input has ", ref.scalar_type());
}

// Writes `result` into a caller-provided out tensor (resizing it as `.out` ops must).
void write_out(const Tensor& result, Tensor& out) {
  if (!out.sizes().equals(result.sizes())) out.resize_(result.sizes());
  out.copy_(result);
}

// ---------------------------------------------------------------- joint_attention

std::tuple<Tensor, Tensor> joint_attention(const Tensor& q_a, const Tensor& k_a, const Tensor& v_a,
                                           const Tensor& q_m, const Tensor& k_m, const Tensor& v_m,
                                           const Tensor& pos_a, const Tensor& pos_m, double window,
                                           std::optional<double> scale) {
  constexpr const char* op = "avedge::joint_attention";
  const Tensor* qkv[6] = {&q_a, &k_a, &v_a, &q_m, &k_m, &v_m};
  const char* names[6] = {"q_a", "k_a", "v_a", "q_m", "k_m", "v_m"};
  for (int i = 0; i < 6; ++i) {
    TORCH_CHECK_VALUE(qkv[i]->dim() == 4, op, ": ", names[i], " must be (B, H, T, D), got shape ",
                      qkv[i]->sizes());
    check_float_dtype(*qkv[i], op, names[i]);
    check_same_dtype(q_a, *qkv[i], op, names[i]);
  }
  const int64_t B = q_a.size(0), H = q_a.size(1), Ta = q_a.size(2), D = q_a.size(3);
  const int64_t Tm = q_m.size(2);
  TORCH_CHECK_VALUE(k_a.sizes() == q_a.sizes() && v_a.sizes() == q_a.sizes(), op,
                    ": q_a, k_a, v_a must share one shape, got ", q_a.sizes(), ", ", k_a.sizes(),
                    ", ", v_a.sizes());
  TORCH_CHECK_VALUE(k_m.sizes() == q_m.sizes() && v_m.sizes() == q_m.sizes(), op,
                    ": q_m, k_m, v_m must share one shape, got ", q_m.sizes(), ", ", k_m.sizes(),
                    ", ", v_m.sizes());
  TORCH_CHECK_VALUE(q_m.size(0) == B && q_m.size(1) == H && q_m.size(3) == D, op,
                    ": audio ", q_a.sizes(), " and motion ", q_m.sizes(),
                    " must agree on batch, heads and head dim");
  TORCH_CHECK_VALUE(Ta >= 1 && Tm >= 1 && D >= 1, op, ": both streams need at least one token, got Ta=",
                    Ta, " Tm=", Tm, " D=", D);
  TORCH_CHECK_VALUE(pos_a.dim() == 1 && pos_a.size(0) == Ta, op, ": pos_a must be (Ta,) = (", Ta,
                    ",), got ", pos_a.sizes());
  TORCH_CHECK_VALUE(pos_m.dim() == 1 && pos_m.size(0) == Tm, op, ": pos_m must be (Tm,) = (", Tm,
                    ",), got ", pos_m.sizes());
  TORCH_CHECK_TYPE(!pos_a.is_complex() && !pos_m.is_complex() && pos_a.scalar_type() != at::kBool &&
                       pos_m.scalar_type() != at::kBool,
                   op, ": positions must be real numbers");
  TORCH_CHECK_VALUE(window >= 0, op, ": window must be >= 0 (and not NaN), got ", window);

  // fp16/bf16 run in float32 (the memory is tiny at these sizes; accuracy is what matters).
  const auto f32 = [](const Tensor& t) { return t.to(at::kFloat).contiguous(); };
  const Tensor qa = f32(q_a), ka = f32(k_a), va = f32(v_a), qm = f32(q_m), km = f32(k_m), vm = f32(v_m);
  const Tensor pa = f32(pos_a), pm = f32(pos_m);
  Tensor out_a = at::empty({B, H, Ta, D}, qa.options());
  Tensor out_m = at::empty({B, H, Tm, D}, qa.options());

  avedge::JointAttentionArgs args{B, H, Ta, Tm, D,
                                  qa.data_ptr<float>(), ka.data_ptr<float>(), va.data_ptr<float>(),
                                  qm.data_ptr<float>(), km.data_ptr<float>(), vm.data_ptr<float>(),
                                  pa.data_ptr<float>(), pm.data_ptr<float>(),
                                  static_cast<float>(window),
                                  static_cast<float>(scale.value_or(1.0 / std::sqrt(double(D)))),
                                  out_a.data_ptr<float>(), out_m.data_ptr<float>()};
  avedge::joint_attention_cpu(args, kParallelFor);
  if (q_a.scalar_type() != at::kFloat) {
    out_a = out_a.to(q_a.scalar_type());
    out_m = out_m.to(q_a.scalar_type());
  }
  return {out_a, out_m};
}

std::tuple<Tensor&, Tensor&> joint_attention_out(const Tensor& q_a, const Tensor& k_a, const Tensor& v_a,
                                                 const Tensor& q_m, const Tensor& k_m, const Tensor& v_m,
                                                 const Tensor& pos_a, const Tensor& pos_m, double window,
                                                 std::optional<double> scale, Tensor& out_a, Tensor& out_m) {
  auto [ra, rm] = joint_attention(q_a, k_a, v_a, q_m, k_m, v_m, pos_a, pos_m, window, scale);
  write_out(ra, out_a);
  write_out(rm, out_m);
  return {out_a, out_m};
}

// ---------------------------------------------------------------- flow_step

Tensor flow_step(const Tensor& x, const Tensor& v_c, const std::optional<Tensor>& v_u,
                 const std::optional<Tensor>& x_pred, double dt, double guidance) {
  constexpr const char* op = "avedge::flow_step";
  check_float_dtype(x, op, "x");
  const auto check = [&](const Tensor& t, const char* name) {
    check_same_dtype(x, t, op, name);
    TORCH_CHECK_VALUE(t.sizes() == x.sizes(), op, ": ", name, " has shape ", t.sizes(),
                      " but x has ", x.sizes(), " (no broadcasting: pass full velocities)");
  };
  check(v_c, "v_c");
  if (v_u) check(*v_u, "v_u");
  if (x_pred) check(*x_pred, "x_pred");

  const Tensor xc = x.contiguous(), vc = v_c.contiguous();
  const Tensor vu = v_u ? v_u->contiguous() : Tensor();
  const Tensor xp = x_pred ? x_pred->contiguous() : Tensor();
  Tensor out = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "avedge_flow_step", [&] {
    avedge::FlowStepArgs<scalar_t> args{xc.numel(),
                                        xc.data_ptr<scalar_t>(),
                                        vc.data_ptr<scalar_t>(),
                                        vu.defined() ? vu.data_ptr<scalar_t>() : nullptr,
                                        xp.defined() ? xp.data_ptr<scalar_t>() : nullptr,
                                        static_cast<float>(dt),
                                        static_cast<float>(guidance),
                                        out.data_ptr<scalar_t>()};
    avedge::flow_step_cpu(args, kParallelFor);
  });
  return out;
}

Tensor& flow_step_out(const Tensor& x, const Tensor& v_c, const std::optional<Tensor>& v_u,
                      const std::optional<Tensor>& x_pred, double dt, double guidance, Tensor& out) {
  write_out(flow_step(x, v_c, v_u, x_pred, dt, guidance), out);
  return out;
}

// ---------------------------------------------------------------- mouth_warp

Tensor mouth_warp(const Tensor& image, const Tensor& flow) {
  constexpr const char* op = "avedge::mouth_warp";
  check_float_dtype(image, op, "image");
  check_same_dtype(image, flow, op, "flow");
  TORCH_CHECK_VALUE(image.dim() == 4, op, ": image must be (B, C, H, W), got ", image.sizes());
  TORCH_CHECK_VALUE(flow.dim() == 4 && flow.size(0) == image.size(0) && flow.size(1) == 2 &&
                        flow.size(2) == image.size(2) && flow.size(3) == image.size(3),
                    op, ": flow must be (B, 2, H, W) = (", image.size(0), ", 2, ", image.size(2), ", ",
                    image.size(3), "), got ", flow.sizes());
  const Tensor img = image.contiguous(), fl = flow.contiguous();
  Tensor out = at::empty(image.sizes(), image.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, image.scalar_type(), "avedge_mouth_warp", [&] {
    avedge::MouthWarpArgs<scalar_t> args{image.size(0), image.size(1), image.size(2), image.size(3),
                                         img.data_ptr<scalar_t>(), fl.data_ptr<scalar_t>(),
                                         out.data_ptr<scalar_t>()};
    avedge::mouth_warp_cpu(args, kParallelFor);
  });
  return out;
}

Tensor& mouth_warp_out(const Tensor& image, const Tensor& flow, Tensor& out) {
  write_out(mouth_warp(image, flow), out);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(avedge, CPU, m) {
  m.impl("joint_attention", TORCH_FN(joint_attention));
  m.impl("joint_attention.out", TORCH_FN(joint_attention_out));
  m.impl("flow_step", TORCH_FN(flow_step));
  m.impl("flow_step.out", TORCH_FN(flow_step_out));
  m.impl("mouth_warp", TORCH_FN(mouth_warp));
  m.impl("mouth_warp.out", TORCH_FN(mouth_warp_out));
}
