// CUDA kernels of the avedge ops for PyTorch (TORCH_LIBRARY_IMPL on the CUDA key). Built on a
// machine with a GPU by _build.build_cuda() (torch.utils.cpp_extension.load); the schemas come
// from ops.py. The `.out` overloads compute then copy, as on CPU.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "kernels.h"

#ifdef AVEDGE_CUDA_COMPILE_CHECK
// CPU-only torch wheels lack c10/cuda's generated headers, so the CI compile check (which
// never runs this code) builds against the default stream and no device guard.
namespace {
cudaStream_t current_stream() { return nullptr; }
struct DeviceGuard {
  explicit DeviceGuard(c10::Device) {}
};
}  // namespace
#else
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
namespace {
cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }
using DeviceGuard = c10::cuda::CUDAGuard;
}  // namespace
#endif

// float32, float16, bfloat16 only (the kernels compute in float; double is rejected).
#define AVEDGE_DISPATCH(TYPE, NAME, ...)                      \
  AT_DISPATCH_SWITCH(TYPE, NAME,                              \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)  \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

namespace {

using at::Tensor;

// Storage type of a torch scalar type on the device (same bit layout).
template <typename T> struct Dev { using type = T; };
template <> struct Dev<at::Half> { using type = __half; };
template <> struct Dev<at::BFloat16> { using type = __nv_bfloat16; };

template <typename T>
const typename Dev<T>::type* dptr(const Tensor& t) {
  return t.defined() ? reinterpret_cast<const typename Dev<T>::type*>(t.const_data_ptr<T>()) : nullptr;
}
template <typename T>
typename Dev<T>::type* mptr(Tensor& t) {
  return reinterpret_cast<typename Dev<T>::type*>(t.mutable_data_ptr<T>());
}

void check_cuda(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(err));
}

void check_inputs(std::initializer_list<std::pair<const Tensor*, const char*>> ts, const char* op) {
  const Tensor& ref = *ts.begin()->first;
  TORCH_CHECK_TYPE(ref.scalar_type() == at::kFloat || ref.scalar_type() == at::kHalf ||
                       ref.scalar_type() == at::kBFloat16,
                   op, ": inputs must be float32, float16 or bfloat16, got ", ref.scalar_type());
  for (const auto& [t, name] : ts) {
    TORCH_CHECK_TYPE(t->scalar_type() == ref.scalar_type(), op, ": ", name, " has dtype ", t->scalar_type(),
                     " but the first input has ", ref.scalar_type());
    TORCH_CHECK_VALUE(t->device() == ref.device(), op, ": ", name, " is on ", t->device(), ", expected ",
                      ref.device());
  }
}

void write_out(const Tensor& result, Tensor& out) {
  if (!out.sizes().equals(result.sizes())) out.resize_(result.sizes());
  out.copy_(result);
}

std::tuple<Tensor, Tensor> joint_attention(const Tensor& q_a, const Tensor& k_a, const Tensor& v_a,
                                           const Tensor& q_m, const Tensor& k_m, const Tensor& v_m,
                                           const Tensor& pos_a, const Tensor& pos_m, double window,
                                           std::optional<double> scale) {
  constexpr const char* op = "avedge::joint_attention";
  check_inputs({{&q_a, "q_a"}, {&k_a, "k_a"}, {&v_a, "v_a"}, {&q_m, "q_m"}, {&k_m, "k_m"}, {&v_m, "v_m"}}, op);
  TORCH_CHECK_VALUE(q_a.dim() == 4 && q_m.dim() == 4, op, ": q_a, q_m must be (B, H, T, D)");
  TORCH_CHECK_VALUE(k_a.sizes() == q_a.sizes() && v_a.sizes() == q_a.sizes(), op,
                    ": q_a, k_a, v_a must share one shape");
  TORCH_CHECK_VALUE(k_m.sizes() == q_m.sizes() && v_m.sizes() == q_m.sizes(), op,
                    ": q_m, k_m, v_m must share one shape");
  const int64_t B = q_a.size(0), H = q_a.size(1), Ta = q_a.size(2), D = q_a.size(3), Tm = q_m.size(2);
  TORCH_CHECK_VALUE(q_m.size(0) == B && q_m.size(1) == H && q_m.size(3) == D, op,
                    ": audio and motion must agree on batch, heads and head dim");
  TORCH_CHECK_VALUE(Ta >= 1 && Tm >= 1, op, ": both streams need at least one token");
  TORCH_CHECK_VALUE(D <= avedge::cuda::kMaxHeadDim, op, ": head dim ", D, " > ", avedge::cuda::kMaxHeadDim,
                    " is not supported by the CUDA kernel");
  TORCH_CHECK_VALUE(pos_a.dim() == 1 && pos_a.size(0) == Ta && pos_m.dim() == 1 && pos_m.size(0) == Tm, op,
                    ": positions must be (Ta,) and (Tm,)");
  TORCH_CHECK_VALUE(window >= 0, op, ": window must be >= 0 (and not NaN), got ", window);

  const DeviceGuard guard(q_a.device());
  const Tensor qa = q_a.contiguous(), ka = k_a.contiguous(), va = v_a.contiguous();
  const Tensor qm = q_m.contiguous(), km = k_m.contiguous(), vm = v_m.contiguous();
  const Tensor pa = pos_a.to(q_a.device(), at::kFloat).contiguous();
  const Tensor pm = pos_m.to(q_a.device(), at::kFloat).contiguous();
  Tensor out_a = at::empty({B, H, Ta, D}, qa.options());
  Tensor out_m = at::empty({B, H, Tm, D}, qa.options());
  AVEDGE_DISPATCH(q_a.scalar_type(), "avedge_joint_attention_cuda", [&] {
    avedge::cuda::JointAttentionParams<typename Dev<scalar_t>::type> p{
        B, H, Ta, Tm, D,
        dptr<scalar_t>(qa), dptr<scalar_t>(ka), dptr<scalar_t>(va),
        dptr<scalar_t>(qm), dptr<scalar_t>(km), dptr<scalar_t>(vm),
        pa.const_data_ptr<float>(), pm.const_data_ptr<float>(),
        static_cast<float>(window), static_cast<float>(scale.value_or(1.0 / std::sqrt(double(D)))),
        mptr<scalar_t>(out_a), mptr<scalar_t>(out_m)};
    check_cuda(avedge::cuda::launch_joint_attention(p, current_stream()), op);
  });
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

Tensor flow_step(const Tensor& x, const Tensor& v_c, const std::optional<Tensor>& v_u,
                 const std::optional<Tensor>& x_pred, double dt, double guidance) {
  constexpr const char* op = "avedge::flow_step";
  const Tensor none;
  check_inputs({{&x, "x"}, {&v_c, "v_c"}, {v_u ? &*v_u : &v_c, "v_u"}, {x_pred ? &*x_pred : &v_c, "x_pred"}}, op);
  for (const Tensor* t : {&v_c, v_u ? &*v_u : &v_c, x_pred ? &*x_pred : &v_c})
    TORCH_CHECK_VALUE(t->sizes() == x.sizes(), op, ": got shape ", t->sizes(), " but x has ", x.sizes(),
                      " (no broadcasting: pass full velocities)");
  const DeviceGuard guard(x.device());
  const Tensor xc = x.contiguous(), vc = v_c.contiguous();
  const Tensor vu = v_u ? v_u->contiguous() : none, xp = x_pred ? x_pred->contiguous() : none;
  Tensor out = at::empty(x.sizes(), xc.options());
  AVEDGE_DISPATCH(x.scalar_type(), "avedge_flow_step_cuda", [&] {
    avedge::cuda::FlowStepParams<typename Dev<scalar_t>::type> p{
        xc.numel(), dptr<scalar_t>(xc), dptr<scalar_t>(vc), dptr<scalar_t>(vu), dptr<scalar_t>(xp),
        static_cast<float>(dt), static_cast<float>(guidance), mptr<scalar_t>(out)};
    check_cuda(avedge::cuda::launch_flow_step(p, current_stream()), op);
  });
  return out;
}

Tensor& flow_step_out(const Tensor& x, const Tensor& v_c, const std::optional<Tensor>& v_u,
                      const std::optional<Tensor>& x_pred, double dt, double guidance, Tensor& out) {
  write_out(flow_step(x, v_c, v_u, x_pred, dt, guidance), out);
  return out;
}

Tensor mouth_warp(const Tensor& image, const Tensor& flow) {
  constexpr const char* op = "avedge::mouth_warp";
  check_inputs({{&image, "image"}, {&flow, "flow"}}, op);
  TORCH_CHECK_VALUE(image.dim() == 4, op, ": image must be (B, C, H, W), got ", image.sizes());
  TORCH_CHECK_VALUE(flow.dim() == 4 && flow.size(0) == image.size(0) && flow.size(1) == 2 &&
                        flow.size(2) == image.size(2) && flow.size(3) == image.size(3),
                    op, ": flow must be (B, 2, H, W), got ", flow.sizes());
  const DeviceGuard guard(image.device());
  const Tensor img = image.contiguous(), fl = flow.contiguous();
  Tensor out = at::empty(image.sizes(), img.options());
  AVEDGE_DISPATCH(image.scalar_type(), "avedge_mouth_warp_cuda", [&] {
    avedge::cuda::MouthWarpParams<typename Dev<scalar_t>::type> p{
        image.size(0), image.size(1), image.size(2), image.size(3), dptr<scalar_t>(img), dptr<scalar_t>(fl),
        mptr<scalar_t>(out)};
    check_cuda(avedge::cuda::launch_mouth_warp(p, current_stream()), op);
  });
  return out;
}

Tensor& mouth_warp_out(const Tensor& image, const Tensor& flow, Tensor& out) {
  write_out(mouth_warp(image, flow), out);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(avedge, CUDA, m) {
  m.impl("joint_attention", TORCH_FN(joint_attention));
  m.impl("joint_attention.out", TORCH_FN(joint_attention_out));
  m.impl("flow_step", TORCH_FN(flow_step));
  m.impl("flow_step.out", TORCH_FN(flow_step_out));
  m.impl("mouth_warp", TORCH_FN(mouth_warp));
  m.impl("mouth_warp.out", TORCH_FN(mouth_warp_out));
}
