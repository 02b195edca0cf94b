// Instantiates every CUDA kernel for every storage type, so that `nvcc -c kernels.cu`
// (CI's compile check for sm_87 / sm_90) compiles all the device code without torch.
#include "kernels.h"

namespace avedge {
namespace cuda {

#define AVEDGE_INSTANTIATE(T)                                                              \
  template cudaError_t launch_joint_attention<T>(const JointAttentionParams<T>&, cudaStream_t); \
  template cudaError_t launch_flow_step<T>(const FlowStepParams<T>&, cudaStream_t);             \
  template cudaError_t launch_mouth_warp<T>(const MouthWarpParams<T>&, cudaStream_t);

AVEDGE_INSTANTIATE(float)
AVEDGE_INSTANTIATE(__half)
AVEDGE_INSTANTIATE(__nv_bfloat16)

#undef AVEDGE_INSTANTIATE

}  // namespace cuda
}  // namespace avedge
