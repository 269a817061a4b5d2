// TensorFlow ops DifferApproxMatch, DifferMatchCost and DifferMatchCostGrad:
// registration, shape functions, and kernels templated on the device: CPU work
// (one batch item per work unit on TensorFlow's thread pool) and, with
// GOOGLE_CUDA, GPU work through the launchers of approx_match.cu.
#include "op_util.h"  // first: the GPU set-up, TensorFlow's op headers, kernels_cpu.h, launchers.h

#include <vector>

namespace differ_tf {
namespace {

constexpr char kMatch[] = "approx_match";
constexpr char kCost[] = "match_cost";
constexpr char kCostGrad[] = "match_cost_grad";

// Approximate EMD matching of PSGN: xyz1 (B,N,3), xyz2 (B,M,3) -> match (B,M,N),
// match[b,j,i] = mass moved from xyz1[b,i] to xyz2[b,j]. Not differentiable.
REGISTER_OP("DifferApproxMatch")
    .Input("xyz1: float32")
    .Input("xyz2: float32")
    .Output("match: float32")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      ShapeHandle s1, s2;
      DimensionHandle batch;
      TF_RETURN_IF_ERROR(CloudShape(c, 0, kMatch, "xyz1", &s1));
      TF_RETURN_IF_ERROR(CloudShape(c, 1, kMatch, "xyz2", &s2));
      TF_RETURN_IF_ERROR(MergeBatch(c, s1, s2, kMatch, &batch));
      c->set_output(0, c->MakeShape({batch, c->Dim(s2, 1), c->Dim(s1, 1)}));
      return absl::OkStatus();
    });

// Shape function shared by MatchCost: inputs xyz1, xyz2, match (B,M,N).
absl::Status MatchCostShape(InferenceContext* c, const char* op, DimensionHandle* batch) {
  ShapeHandle s1, s2, sm;
  TF_RETURN_IF_ERROR(CloudShape(c, 0, op, "xyz1", &s1));
  TF_RETURN_IF_ERROR(CloudShape(c, 1, op, "xyz2", &s2));
  TF_RETURN_IF_ERROR(MergeBatch(c, s1, s2, op, batch));
  if (!c->WithRank(c->input(2), 3, &sm).ok() ||
      !c->Merge(sm, c->MakeShape({*batch, c->Dim(s2, 1), c->Dim(s1, 1)}), &sm).ok())
    return absl::InvalidArgumentError(absl::StrCat(op, ": match must have shape (batch, M, N) = (",
                                                   c->Value(*batch), ", ", c->Value(c->Dim(s2, 1)), ", ",
                                                   c->Value(c->Dim(s1, 1)), ")"));
  return absl::OkStatus();
}

// cost[b] = sum_{j,i} match[b,j,i] * |xyz1[b,i] - xyz2[b,j]| (Euclidean distance).
REGISTER_OP("DifferMatchCost")
    .Input("xyz1: float32")
    .Input("xyz2: float32")
    .Input("match: float32")
    .Output("cost: float32")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      DimensionHandle batch;
      TF_RETURN_IF_ERROR(MatchCostShape(c, kCost, &batch));
      c->set_output(0, c->MakeShape({batch}));
      return absl::OkStatus();
    });

REGISTER_OP("DifferMatchCostGrad")
    .Input("xyz1: float32")
    .Input("xyz2: float32")
    .Input("match: float32")
    .Input("grad_cost: float32")
    .Output("grad_xyz1: float32")
    .Output("grad_xyz2: float32")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      return absl::OkStatus();
    });

// Run-time checks of (xyz1, xyz2, match[, grad_cost]).
absl::Status CheckCostInputs(OpKernelContext* ctx, const char* op, bool with_grad) {
  const Tensor& a = ctx->input(0);
  const Tensor& b = ctx->input(1);
  absl::Status s = CheckPair(a, b, op);
  if (!s.ok()) return s;
  s = CheckShape(ctx->input(2), TensorShape({a.dim_size(0), b.dim_size(1), a.dim_size(1)}), op, "match");
  if (s.ok() && with_grad) s = CheckShape(ctx->input(3), TensorShape({a.dim_size(0)}), op, "grad_cost");
  return s;
}

// ---- kernels: the shared prologue in the OpKernel class templates, the work per device in the
// Launch* specialisations (called with b >= 1).

template <typename Device>
struct LaunchApproxMatch;  // Run(ctx, b, n, m, xyz1, xyz2, match)

template <typename Device>
struct LaunchMatchCost;  // Run(ctx, b, n, m, xyz1, xyz2, match, cost)

template <typename Device>
struct LaunchMatchCostGrad;  // Run(ctx, b, n, m, xyz1, xyz2, match, grad_cost, grad1, grad2)

template <typename Device>
class ApproxMatchOp : public OpKernel {
 public:
  explicit ApproxMatchOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& t1 = ctx->input(0);
    const Tensor& t2 = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckPair(t1, t2, kMatch));
    const int b = static_cast<int>(t1.dim_size(0));
    const int n = static_cast<int>(t1.dim_size(1));
    const int m = static_cast<int>(t2.dim_size(1));
    Tensor* match;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({b, m, n}), &match));
    if (b == 0) return;
    LaunchApproxMatch<Device>::Run(ctx, b, n, m, t1.flat<float>().data(), t2.flat<float>().data(),
                                   match->flat<float>().data());
  }
};

template <typename Device>
class MatchCostOp : public OpKernel {
 public:
  explicit MatchCostOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckCostInputs(ctx, kCost, false));
    const Tensor& t1 = ctx->input(0);
    const Tensor& t2 = ctx->input(1);
    const int b = static_cast<int>(t1.dim_size(0));
    Tensor* cost;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({b}), &cost));
    if (b == 0) return;
    LaunchMatchCost<Device>::Run(ctx, b, static_cast<int>(t1.dim_size(1)), static_cast<int>(t2.dim_size(1)),
                                 t1.flat<float>().data(), t2.flat<float>().data(), ctx->input(2).flat<float>().data(),
                                 cost->flat<float>().data());
  }
};

template <typename Device>
class MatchCostGradOp : public OpKernel {
 public:
  explicit MatchCostGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckCostInputs(ctx, kCostGrad, true));
    const Tensor& t1 = ctx->input(0);
    const Tensor& t2 = ctx->input(1);
    const int b = static_cast<int>(t1.dim_size(0));
    Tensor *g1, *g2;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, t1.shape(), &g1));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, t2.shape(), &g2));
    if (b == 0) return;
    LaunchMatchCostGrad<Device>::Run(ctx, b, static_cast<int>(t1.dim_size(1)), static_cast<int>(t2.dim_size(1)),
                                     t1.flat<float>().data(), t2.flat<float>().data(),
                                     ctx->input(2).flat<float>().data(), ctx->input(3).flat<float>().data(),
                                     g1->flat<float>().data(), g2->flat<float>().data());
  }
};

template <>
struct LaunchApproxMatch<CPUDevice> {
  static void Run(OpKernelContext* ctx, int b, int n, int m, const float* x1, const float* x2, float* out) {
    // Scratch memory per work range (not per batch item): at most one per thread.
    const std::size_t ws_size = differ::approx_match_workspace(n, m);
    const std::int64_t nm = static_cast<std::int64_t>(n) * m;
    ParallelFor(ctx, b, 200 * nm, [&](std::int64_t begin, std::int64_t end) {
      std::vector<float> ws(ws_size);
      for (std::int64_t k = begin; k < end; ++k)
        differ::approx_match(n, m, x1 + k * 3 * n, x2 + k * 3 * m, out + k * nm, ws.data());
    });
  }
};

template <>
struct LaunchMatchCost<CPUDevice> {
  static void Run(OpKernelContext* ctx, int b, int n, int m, const float* x1, const float* x2, const float* mt,
                  float* out) {
    const std::int64_t nm = static_cast<std::int64_t>(n) * m;
    ParallelFor(ctx, b, 10 * nm, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t k = begin; k < end; ++k)
        out[k] = static_cast<float>(differ::match_cost(n, m, x1 + k * 3 * n, x2 + k * 3 * m, mt + k * nm));
    });
  }
};

template <>
struct LaunchMatchCostGrad<CPUDevice> {
  static void Run(OpKernelContext* ctx, int b, int n, int m, const float* x1, const float* x2, const float* mt,
                  const float* gc, float* o1, float* o2) {
    const std::int64_t nm = static_cast<std::int64_t>(n) * m;
    ParallelFor(ctx, b, 20 * nm, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t k = begin; k < end; ++k)
        differ::match_cost_grad(n, m, x1 + k * 3 * n, x2 + k * 3 * m, mt + k * nm, gc[k], o1 + k * 3 * n,
                                o2 + k * 3 * m);
    });
  }
};

REGISTER_KERNEL_BUILDER(Name("DifferApproxMatch").Device(DEVICE_CPU), ApproxMatchOp<CPUDevice>);
REGISTER_KERNEL_BUILDER(Name("DifferMatchCost").Device(DEVICE_CPU), MatchCostOp<CPUDevice>);
REGISTER_KERNEL_BUILDER(Name("DifferMatchCostGrad").Device(DEVICE_CPU), MatchCostGradOp<CPUDevice>);

#if GOOGLE_CUDA
template <>
struct LaunchApproxMatch<GPUDevice> {
  static void Run(OpKernelContext* ctx, int b, int n, int m, const float* x1, const float* x2, float* out) {
    Tensor temp;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT,
                                           TensorShape({static_cast<std::int64_t>(
                                               differ_approx_match_temp_floats(b, n, m))}),
                                           &temp));
    OP_REQUIRES_OK(ctx, CudaStatus(kMatch, differ_approx_match_launcher(b, n, m, x1, x2, out, temp.flat<float>().data(),
                                                                        ctx->eigen_gpu_device().stream())));
  }
};

template <>
struct LaunchMatchCost<GPUDevice> {
  static void Run(OpKernelContext* ctx, int b, int n, int m, const float* x1, const float* x2, const float* mt,
                  float* out) {
    OP_REQUIRES_OK(ctx, CudaStatus(kCost, differ_match_cost_launcher(b, n, m, x1, x2, mt, out,
                                                                     ctx->eigen_gpu_device().stream())));
  }
};

template <>
struct LaunchMatchCostGrad<GPUDevice> {
  static void Run(OpKernelContext* ctx, int b, int n, int m, const float* x1, const float* x2, const float* mt,
                  const float* gc, float* o1, float* o2) {
    OP_REQUIRES_OK(ctx, CudaStatus(kCostGrad, differ_match_cost_grad_launcher(b, n, m, x1, x2, mt, gc, o1, o2,
                                                                              ctx->eigen_gpu_device().stream())));
  }
};

REGISTER_KERNEL_BUILDER(Name("DifferApproxMatch").Device(tensorflow::DEVICE_GPU), ApproxMatchOp<GPUDevice>);
REGISTER_KERNEL_BUILDER(Name("DifferMatchCost").Device(tensorflow::DEVICE_GPU), MatchCostOp<GPUDevice>);
REGISTER_KERNEL_BUILDER(Name("DifferMatchCostGrad").Device(tensorflow::DEVICE_GPU), MatchCostGradOp<GPUDevice>);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace differ_tf
