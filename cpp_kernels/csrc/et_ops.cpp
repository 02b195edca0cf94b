// ExecuTorch kernels of the avedge ops: the `.out` overloads that a `.pte` calls, registered
// into libexecutorch.so's operator registry when this library is loaded (ctypes, RTLD_GLOBAL)
// before Program::load_method. Same cores as the torch build (joint_attention.h, ...).
//
// Kernels are boxed by hand instead of EXECUTORCH_LIBRARY: that macro only unboxes ops with
// exactly one out tensor, and joint_attention.out has two. Stack layout, from the emitter:
// the schema's arguments in order (out tensors included), then the return value(s): the out
// tensor again for one output, or a TensorList of the outs for several.
#define ET_USE_THREADPOOL 1

#include <executorch/runtime/core/evalue.h>
#include <executorch/runtime/core/exec_aten/util/tensor_util.h>
#include <executorch/runtime/kernel/kernel_includes.h>
#include <executorch/runtime/kernel/operator_registry.h>
#include <executorch/runtime/kernel/thread_parallel_interface.h>

#include <cmath>
#include <vector>

#include "flow_step.h"
#include "joint_attention.h"
#include "mouth_warp.h"

namespace {

using executorch::aten::ScalarType;
using executorch::aten::SizesType;
using executorch::aten::Tensor;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::KernelRuntimeContext;
using executorch::runtime::Span;

const auto kParallelFor = [](int64_t begin, int64_t end, int64_t grain, const auto& fn) {
  executorch::extension::parallel_for(begin, end, grain, fn);
};

double scalar_arg(const EValue* v) {
  return v->isInt() ? static_cast<double>(v->toInt()) : v->toDouble();
}

bool is_float_like(ScalarType t) {
  return t == ScalarType::Float || t == ScalarType::Half || t == ScalarType::BFloat16;
}

// Contiguous float copy of a real tensor (fp16/bf16 activations, int64 positions).
std::vector<float> as_floats(const Tensor& t) {
  std::vector<float> out(t.numel());
  KernelRuntimeContext ctx;  // the switch reports unsupported dtypes through a context
  ET_SWITCH_REALHBF16_TYPES(t.scalar_type(), ctx, "as_floats", CTYPE, [&] {
    const CTYPE* p = t.const_data_ptr<CTYPE>();
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(p[i]);
  });
  return out;
}

template <typename CTYPE>
void store_floats(const std::vector<float>& src, Tensor& dst) {
  CTYPE* p = dst.mutable_data_ptr<CTYPE>();
  for (size_t i = 0; i < src.size(); ++i) p[i] = static_cast<CTYPE>(src[i]);
}

bool resize_like(Tensor& out, const Tensor& ref) {
  return executorch::runtime::resize_tensor(out, ref.sizes()) == Error::Ok;
}

// avedge::joint_attention.out(q_a, k_a, v_a, q_m, k_m, v_m, pos_a, pos_m, window, scale?, *,
//                             out_a, out_m) -> (out_a, out_m)
void joint_attention_out(KernelRuntimeContext& ctx, Span<EValue*> stack) {
  ET_KERNEL_CHECK_MSG(ctx, stack.size() >= 12, InvalidArgument, , "joint_attention.out: %zu args",
                      stack.size());
  const Tensor& q_a = stack[0]->toTensor();
  const Tensor& q_m = stack[3]->toTensor();
  const Tensor& pos_a = stack[6]->toTensor();
  const Tensor& pos_m = stack[7]->toTensor();
  const double window = scalar_arg(stack[8]);
  Tensor& out_a = stack[10]->toTensor();
  Tensor& out_m = stack[11]->toTensor();

  ET_KERNEL_CHECK_MSG(ctx, q_a.dim() == 4 && q_m.dim() == 4, InvalidArgument, ,
                      "joint_attention: q_a, q_m must be (B, H, T, D)");
  const int64_t B = q_a.size(0), H = q_a.size(1), Ta = q_a.size(2), D = q_a.size(3);
  const int64_t Tm = q_m.size(2);
  const ScalarType dtype = q_a.scalar_type();
  ET_KERNEL_CHECK_MSG(ctx, is_float_like(dtype), InvalidArgument, , "joint_attention: dtype %d",
                      static_cast<int>(dtype));
  for (int i = 0; i < 6; ++i) {
    const Tensor& t = stack[i]->toTensor();
    const Tensor& ref = i < 3 ? q_a : q_m;
    bool ok = t.dim() == 4 && t.scalar_type() == dtype;
    for (int d = 0; ok && d < 4; ++d) ok = t.size(d) == ref.size(d);
    ET_KERNEL_CHECK_MSG(ctx, ok, InvalidArgument, , "joint_attention: input %d shape/dtype", i);
  }
  ET_KERNEL_CHECK_MSG(ctx, q_m.size(0) == B && q_m.size(1) == H && q_m.size(3) == D, InvalidArgument, ,
                      "joint_attention: streams disagree on B/H/D");
  ET_KERNEL_CHECK_MSG(ctx, Ta >= 1 && Tm >= 1 && pos_a.numel() == Ta && pos_m.numel() == Tm,
                      InvalidArgument, , "joint_attention: positions must be (Ta,), (Tm,)");
  ET_KERNEL_CHECK_MSG(ctx, window >= 0, InvalidArgument, , "joint_attention: window < 0");
  ET_KERNEL_CHECK(ctx, resize_like(out_a, q_a) && resize_like(out_m, q_m), InvalidArgument, );
  ET_KERNEL_CHECK(ctx, out_a.scalar_type() == dtype && out_m.scalar_type() == dtype, InvalidArgument, );

  const double scale = stack[9]->isNone() ? 1.0 / std::sqrt(static_cast<double>(D)) : scalar_arg(stack[9]);
  const std::vector<float> pa = as_floats(pos_a), pm = as_floats(pos_m);
  avedge::JointAttentionArgs args{B, H, Ta, Tm, D, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                  pa.data(), pm.data(), static_cast<float>(window), static_cast<float>(scale),
                                  nullptr, nullptr};
  const float** inputs[6] = {&args.q_a, &args.k_a, &args.v_a, &args.q_m, &args.k_m, &args.v_m};
  if (dtype == ScalarType::Float) {
    for (int i = 0; i < 6; ++i) *inputs[i] = stack[i]->toTensor().const_data_ptr<float>();
    args.out_a = out_a.mutable_data_ptr<float>();
    args.out_m = out_m.mutable_data_ptr<float>();
    avedge::joint_attention_cpu(args, kParallelFor);
    return;
  }
  // fp16/bf16: compute in float32 like the torch kernel, then narrow.
  std::vector<float> copies[6];
  for (int i = 0; i < 6; ++i) {
    copies[i] = as_floats(stack[i]->toTensor());
    *inputs[i] = copies[i].data();
  }
  std::vector<float> oa(out_a.numel()), om(out_m.numel());
  args.out_a = oa.data();
  args.out_m = om.data();
  avedge::joint_attention_cpu(args, kParallelFor);
  if (dtype == ScalarType::Half) {
    store_floats<executorch::aten::Half>(oa, out_a);
    store_floats<executorch::aten::Half>(om, out_m);
  } else {
    store_floats<executorch::aten::BFloat16>(oa, out_a);
    store_floats<executorch::aten::BFloat16>(om, out_m);
  }
}

// avedge::flow_step.out(x, v_c, v_u?, x_pred?, dt, guidance, *, out) -> out
void flow_step_out(KernelRuntimeContext& ctx, Span<EValue*> stack) {
  ET_KERNEL_CHECK_MSG(ctx, stack.size() >= 7, InvalidArgument, , "flow_step.out: %zu args", stack.size());
  const Tensor& x = stack[0]->toTensor();
  const Tensor& v_c = stack[1]->toTensor();
  const bool has_vu = !stack[2]->isNone(), has_xp = !stack[3]->isNone();
  const double dt = scalar_arg(stack[4]), guidance = scalar_arg(stack[5]);
  Tensor& out = stack[6]->toTensor();
  ET_KERNEL_CHECK_MSG(ctx, is_float_like(x.scalar_type()), InvalidArgument, , "flow_step: dtype");
  const auto same = [&](const Tensor& t) {
    return t.scalar_type() == x.scalar_type() && t.numel() == x.numel() && t.dim() == x.dim();
  };
  ET_KERNEL_CHECK_MSG(ctx, same(v_c), InvalidArgument, , "flow_step: v_c must match x");
  ET_KERNEL_CHECK_MSG(ctx, !has_vu || same(stack[2]->toTensor()), InvalidArgument, , "flow_step: v_u must match x");
  ET_KERNEL_CHECK_MSG(ctx, !has_xp || same(stack[3]->toTensor()), InvalidArgument, , "flow_step: x_pred must match x");
  ET_KERNEL_CHECK(ctx, resize_like(out, x) && out.scalar_type() == x.scalar_type(), InvalidArgument, );

  ET_SWITCH_FLOATHBF16_TYPES(x.scalar_type(), ctx, "flow_step.out", CTYPE, [&] {
    avedge::FlowStepArgs<CTYPE> args{x.numel(),
                                     x.const_data_ptr<CTYPE>(),
                                     v_c.const_data_ptr<CTYPE>(),
                                     has_vu ? stack[2]->toTensor().const_data_ptr<CTYPE>() : nullptr,
                                     has_xp ? stack[3]->toTensor().const_data_ptr<CTYPE>() : nullptr,
                                     static_cast<float>(dt),
                                     static_cast<float>(guidance),
                                     out.mutable_data_ptr<CTYPE>()};
    avedge::flow_step_cpu(args, kParallelFor);
  });
}

// avedge::mouth_warp.out(image, flow, *, out) -> out
void mouth_warp_out(KernelRuntimeContext& ctx, Span<EValue*> stack) {
  ET_KERNEL_CHECK_MSG(ctx, stack.size() >= 3, InvalidArgument, , "mouth_warp.out: %zu args", stack.size());
  const Tensor& image = stack[0]->toTensor();
  const Tensor& flow = stack[1]->toTensor();
  Tensor& out = stack[2]->toTensor();
  ET_KERNEL_CHECK_MSG(ctx, image.dim() == 4 && flow.dim() == 4 && flow.size(0) == image.size(0) &&
                               flow.size(1) == 2 && flow.size(2) == image.size(2) && flow.size(3) == image.size(3),
                      InvalidArgument, , "mouth_warp: image (B,C,H,W) and flow (B,2,H,W)");
  ET_KERNEL_CHECK_MSG(ctx, is_float_like(image.scalar_type()) && flow.scalar_type() == image.scalar_type(),
                      InvalidArgument, , "mouth_warp: dtype");
  ET_KERNEL_CHECK(ctx, resize_like(out, image) && out.scalar_type() == image.scalar_type(), InvalidArgument, );
  if (out.numel() == 0) return;
  ET_SWITCH_FLOATHBF16_TYPES(image.scalar_type(), ctx, "mouth_warp.out", CTYPE, [&] {
    avedge::MouthWarpArgs<CTYPE> args{image.size(0), image.size(1), image.size(2), image.size(3),
                                      image.const_data_ptr<CTYPE>(), flow.const_data_ptr<CTYPE>(),
                                      out.mutable_data_ptr<CTYPE>()};
    avedge::mouth_warp_cpu(args, kParallelFor);
  });
}

const executorch::runtime::Kernel kKernels[] = {
    executorch::runtime::Kernel("avedge::joint_attention.out", joint_attention_out),
    executorch::runtime::Kernel("avedge::flow_step.out", flow_step_out),
    executorch::runtime::Kernel("avedge::mouth_warp.out", mouth_warp_out),
};

// Runs when the library is loaded; registering twice (a second dlopen of another copy) fails
// in the registry, which logs it, and the first registration stays in force.
const auto kRegistered = executorch::runtime::register_kernels(
    Span<const executorch::runtime::Kernel>(kKernels, sizeof(kKernels) / sizeof(kKernels[0])));

}  // namespace

// For the Python side to check that the library it loaded is the one it built.
extern "C" __attribute__((visibility("default"))) int avedge_et_ops_registered() {
  return kRegistered == Error::Ok ? 1 : 0;
}
