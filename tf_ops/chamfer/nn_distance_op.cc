// TensorFlow op DifferNnDistance (+ its gradient op): registration, shape
// function, and kernels templated on the device: CPU work sharded over
// TensorFlow's thread pool and, when built with GOOGLE_CUDA, GPU work through
// the launchers of nn_distance.cu.
#include "op_util.h"  // first: the GPU set-up, TensorFlow's op headers, kernels_cpu.h, launchers.h

#include <algorithm>

namespace differ_tf {
namespace {

constexpr char kOp[] = "nn_distance";
constexpr char kGradOp[] = "nn_distance_grad";
constexpr int kQueryBlock = 64;  // query points per parallel work unit

// Squared Euclidean distance from every point to its nearest neighbour in the
// other cloud, both directions (Chamfer). xyz1 (B,N,3), xyz2 (B,M,3) ->
// dist1 (B,N), idx1 (B,N), dist2 (B,M), idx2 (B,M).
REGISTER_OP("DifferNnDistance")
    .Input("xyz1: float32")
    .Input("xyz2: float32")
    .Output("dist1: float32")
    .Output("idx1: int32")
    .Output("dist2: float32")
    .Output("idx2: int32")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      ShapeHandle s1, s2;
      DimensionHandle batch;
      TF_RETURN_IF_ERROR(CloudShape(c, 0, kOp, "xyz1", &s1));
      TF_RETURN_IF_ERROR(CloudShape(c, 1, kOp, "xyz2", &s2));
      TF_RETURN_IF_ERROR(MergeBatch(c, s1, s2, kOp, &batch));
      ShapeHandle o1 = c->MakeShape({batch, c->Dim(s1, 1)});
      ShapeHandle o2 = c->MakeShape({batch, c->Dim(s2, 1)});
      c->set_output(0, o1);
      c->set_output(1, o1);
      c->set_output(2, o2);
      c->set_output(3, o2);
      return absl::OkStatus();
    });

REGISTER_OP("DifferNnDistanceGrad")
    .Input("xyz1: float32")
    .Input("xyz2: float32")
    .Input("grad_dist1: float32")
    .Input("idx1: int32")
    .Input("grad_dist2: float32")
    .Input("idx2: int32")
    .Output("grad_xyz1: float32")
    .Output("grad_xyz2: float32")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      return absl::OkStatus();
    });

// Checks of the gradient op's inputs (shapes of the forward outputs).
absl::Status CheckGradInputs(OpKernelContext* ctx) {
  const Tensor& a = ctx->input(0);
  const Tensor& b = ctx->input(1);
  absl::Status s = CheckPair(a, b, kGradOp);
  const TensorShape s1({a.dim_size(0), a.dims() == 3 ? a.dim_size(1) : 0});
  const TensorShape s2({b.dim_size(0), b.dims() == 3 ? b.dim_size(1) : 0});
  if (s.ok()) s = CheckShape(ctx->input(2), s1, kGradOp, "grad_dist1");
  if (s.ok()) s = CheckShape(ctx->input(3), s1, kGradOp, "idx1");
  if (s.ok()) s = CheckShape(ctx->input(4), s2, kGradOp, "grad_dist2");
  if (s.ok()) s = CheckShape(ctx->input(5), s2, kGradOp, "idx2");
  return s;
}

// ---- kernels: the shared prologue in NnDistanceOp / NnDistanceGradOp, the work per device in
// LaunchNnDistance / LaunchNnDistanceGrad (called with b >= 1).

template <typename Device>
struct LaunchNnDistance;  // Run(ctx, b, n, m, xyz1, xyz2, dist1, idx1, dist2, idx2)

template <typename Device>
struct LaunchNnDistanceGrad;  // Run(ctx, b, n, m, xyz1, xyz2, grad_dist1, idx1, grad_dist2, idx2, grad1, grad2)

template <typename Device>
class NnDistanceOp : public OpKernel {
 public:
  explicit NnDistanceOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& t1 = ctx->input(0);
    const Tensor& t2 = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckPair(t1, t2, kOp));
    const int b = static_cast<int>(t1.dim_size(0));
    const int n = static_cast<int>(t1.dim_size(1));
    const int m = static_cast<int>(t2.dim_size(1));
    Tensor *dist1, *idx1, *dist2, *idx2;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({b, n}), &dist1));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({b, n}), &idx1));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({b, m}), &dist2));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({b, m}), &idx2));
    if (b == 0) return;
    LaunchNnDistance<Device>::Run(ctx, b, n, m, t1.flat<float>().data(), t2.flat<float>().data(),
                                  dist1->flat<float>().data(), idx1->flat<int>().data(), dist2->flat<float>().data(),
                                  idx2->flat<int>().data());
  }
};

template <typename Device>
class NnDistanceGradOp : public OpKernel {
 public:
  explicit NnDistanceGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckGradInputs(ctx));
    const Tensor& t1 = ctx->input(0);
    const Tensor& t2 = ctx->input(1);
    const int b = static_cast<int>(t1.dim_size(0));
    const int n = static_cast<int>(t1.dim_size(1));
    const int m = static_cast<int>(t2.dim_size(1));
    Tensor *g1, *g2;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, t1.shape(), &g1));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, t2.shape(), &g2));
    if (b == 0) return;
    LaunchNnDistanceGrad<Device>::Run(ctx, b, n, m, t1.flat<float>().data(), t2.flat<float>().data(),
                                      ctx->input(2).flat<float>().data(), ctx->input(3).flat<int>().data(),
                                      ctx->input(4).flat<float>().data(), ctx->input(5).flat<int>().data(),
                                      g1->flat<float>().data(), g2->flat<float>().data());
  }
};

template <>
struct LaunchNnDistance<CPUDevice> {
  static void Run(OpKernelContext* ctx, int b, int n, int m, const float* x1, const float* x2, float* d1, int* i1,
                  float* d2, int* i2) {
    // Both clouds as NaN-padded SoA, then all query blocks of both directions
    // as one list of work units for the thread pool.
    const int n_pad = differ::pad_to_lanes(n), m_pad = differ::pad_to_lanes(m);
    Tensor soa1, soa2;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT, TensorShape({b, 3 * n_pad}), &soa1));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT, TensorShape({b, 3 * m_pad}), &soa2));
    float* s1 = soa1.flat<float>().data();
    float* s2 = soa2.flat<float>().data();
    ParallelFor(ctx, b, 20 * (n + m), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t k = begin; k < end; ++k) {
        differ::to_soa_padded(x1 + k * 3 * n, n, s1 + k * 3 * n_pad);
        differ::to_soa_padded(x2 + k * 3 * m, m, s2 + k * 3 * m_pad);
      }
    });

    const std::int64_t blocks1 = (n + kQueryBlock - 1) / kQueryBlock;
    const std::int64_t blocks2 = (m + kQueryBlock - 1) / kQueryBlock;
    const std::int64_t units = b * (blocks1 + blocks2);
    const std::int64_t cost = static_cast<std::int64_t>(kQueryBlock) * std::max(n, m);  // ~1 cycle per pair
    ParallelFor(ctx, units, cost, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t u = begin; u < end; ++u) {
        const std::int64_t k = u / (blocks1 + blocks2);
        std::int64_t blk = u % (blocks1 + blocks2);
        if (blk < blocks1) {  // xyz1 -> xyz2
          const int q0 = static_cast<int>(blk * kQueryBlock), q1 = std::min(n, q0 + kQueryBlock);
          differ::nn_search(s1 + k * 3 * n_pad, n_pad, q0, q1, s2 + k * 3 * m_pad, m, d1 + k * n, i1 + k * n);
        } else {  // xyz2 -> xyz1
          blk -= blocks1;
          const int q0 = static_cast<int>(blk * kQueryBlock), q1 = std::min(m, q0 + kQueryBlock);
          differ::nn_search(s2 + k * 3 * m_pad, m_pad, q0, q1, s1 + k * 3 * n_pad, n, d2 + k * m, i2 + k * m);
        }
      }
    });
  }
};

template <>
struct LaunchNnDistanceGrad<CPUDevice> {
  static void Run(OpKernelContext* ctx, int b, int n, int m, const float* x1, const float* x2, const float* gd1,
                  const int* idx1, const float* gd2, const int* idx2, float* o1, float* o2) {
    // Indices come from the forward op; a corrupted one must not write out of bounds.
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(b) * n; ++i)
      OP_REQUIRES(ctx, idx1[i] >= 0 && idx1[i] < m,
                  absl::InvalidArgumentError(absl::StrCat(kGradOp, ": idx1 out of range [0, ", m, ")")));
    for (std::int64_t j = 0; j < static_cast<std::int64_t>(b) * m; ++j)
      OP_REQUIRES(ctx, idx2[j] >= 0 && idx2[j] < n,
                  absl::InvalidArgumentError(absl::StrCat(kGradOp, ": idx2 out of range [0, ", n, ")")));
    ParallelFor(ctx, b, 30 * (n + m), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t k = begin; k < end; ++k)
        differ::nn_distance_grad(n, m, x1 + k * 3 * n, x2 + k * 3 * m, gd1 + k * n, idx1 + k * n, gd2 + k * m,
                                 idx2 + k * m, o1 + k * 3 * n, o2 + k * 3 * m);
    });
  }
};

REGISTER_KERNEL_BUILDER(Name("DifferNnDistance").Device(DEVICE_CPU), NnDistanceOp<CPUDevice>);
REGISTER_KERNEL_BUILDER(Name("DifferNnDistanceGrad").Device(DEVICE_CPU), NnDistanceGradOp<CPUDevice>);

#if GOOGLE_CUDA
// GPU: the same prologue (on host-side shapes), work enqueued on TF's stream. The indices are
// device memory here, so the gradient cannot check their range.
template <>
struct LaunchNnDistance<GPUDevice> {
  static void Run(OpKernelContext* ctx, int b, int n, int m, const float* x1, const float* x2, float* d1, int* i1,
                  float* d2, int* i2) {
    OP_REQUIRES_OK(ctx, CudaStatus(kOp, differ_nn_distance_launcher(b, n, x1, m, x2, d1, i1, d2, i2,
                                                                    ctx->eigen_gpu_device().stream())));
  }
};

template <>
struct LaunchNnDistanceGrad<GPUDevice> {
  static void Run(OpKernelContext* ctx, int b, int n, int m, const float* x1, const float* x2, const float* gd1,
                  const int* idx1, const float* gd2, const int* idx2, float* o1, float* o2) {
    OP_REQUIRES_OK(ctx, CudaStatus(kGradOp, differ_nn_distance_grad_launcher(b, n, x1, m, x2, gd1, idx1, gd2, idx2,
                                                                             o1, o2, ctx->eigen_gpu_device().stream())));
  }
};

REGISTER_KERNEL_BUILDER(Name("DifferNnDistance").Device(tensorflow::DEVICE_GPU), NnDistanceOp<GPUDevice>);
REGISTER_KERNEL_BUILDER(Name("DifferNnDistanceGrad").Device(tensorflow::DEVICE_GPU), NnDistanceGradOp<GPUDevice>);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace differ_tf
