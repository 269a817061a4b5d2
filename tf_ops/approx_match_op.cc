// TensorFlow ops DifferApproxMatch, DifferMatchCost and DifferMatchCostGrad:
// registration, shape functions, CPU kernels (one batch item per work unit on
// TensorFlow's thread pool) and, with GOOGLE_CUDA, GPU kernels calling the
// launchers of approx_match.cu.
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include <vector>

#include "kernels_cpu.h"
#include "op_util.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"

#if GOOGLE_CUDA
#include "launchers.h"
#endif

namespace differ_tf {
namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::TensorShape;

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

class ApproxMatchCpuOp : public OpKernel {
 public:
  explicit ApproxMatchCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

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
    // Scratch memory per work range (not per batch item): at most one per thread.
    const std::size_t ws_size = differ::approx_match_workspace(n, m);
    const float* x1 = t1.flat<float>().data();
    const float* x2 = t2.flat<float>().data();
    float* out = match->flat<float>().data();
    const std::int64_t nm = static_cast<std::int64_t>(n) * m;
    ParallelFor(ctx, b, 200 * nm, [&](std::int64_t begin, std::int64_t end) {
      std::vector<float> ws(ws_size);
      for (std::int64_t k = begin; k < end; ++k)
        differ::approx_match(n, m, x1 + k * 3 * n, x2 + k * 3 * m, out + k * nm, ws.data());
    });
  }
};

class MatchCostCpuOp : public OpKernel {
 public:
  explicit MatchCostCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckCostInputs(ctx, kCost, false));
    const Tensor& t1 = ctx->input(0);
    const Tensor& t2 = ctx->input(1);
    const int b = static_cast<int>(t1.dim_size(0));
    const int n = static_cast<int>(t1.dim_size(1));
    const int m = static_cast<int>(t2.dim_size(1));
    Tensor* cost;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({b}), &cost));
    const float* x1 = t1.flat<float>().data();
    const float* x2 = t2.flat<float>().data();
    const float* mt = ctx->input(2).flat<float>().data();
    float* out = cost->flat<float>().data();
    const std::int64_t nm = static_cast<std::int64_t>(n) * m;
    ParallelFor(ctx, b, 10 * nm, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t k = begin; k < end; ++k)
        out[k] = static_cast<float>(differ::match_cost(n, m, x1 + k * 3 * n, x2 + k * 3 * m, mt + k * nm));
    });
  }
};

class MatchCostGradCpuOp : public OpKernel {
 public:
  explicit MatchCostGradCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckCostInputs(ctx, kCostGrad, true));
    const Tensor& t1 = ctx->input(0);
    const Tensor& t2 = ctx->input(1);
    const int b = static_cast<int>(t1.dim_size(0));
    const int n = static_cast<int>(t1.dim_size(1));
    const int m = static_cast<int>(t2.dim_size(1));
    Tensor *g1, *g2;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, t1.shape(), &g1));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, t2.shape(), &g2));
    const float* x1 = t1.flat<float>().data();
    const float* x2 = t2.flat<float>().data();
    const float* mt = ctx->input(2).flat<float>().data();
    const float* gc = ctx->input(3).flat<float>().data();
    float* o1 = g1->flat<float>().data();
    float* o2 = g2->flat<float>().data();
    const std::int64_t nm = static_cast<std::int64_t>(n) * m;
    ParallelFor(ctx, b, 20 * nm, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t k = begin; k < end; ++k)
        differ::match_cost_grad(n, m, x1 + k * 3 * n, x2 + k * 3 * m, mt + k * nm, gc[k], o1 + k * 3 * n,
                                o2 + k * 3 * m);
    });
  }
};

REGISTER_KERNEL_BUILDER(Name("DifferApproxMatch").Device(DEVICE_CPU), ApproxMatchCpuOp);
REGISTER_KERNEL_BUILDER(Name("DifferMatchCost").Device(DEVICE_CPU), MatchCostCpuOp);
REGISTER_KERNEL_BUILDER(Name("DifferMatchCostGrad").Device(DEVICE_CPU), MatchCostGradCpuOp);

#if GOOGLE_CUDA
class ApproxMatchGpuOp : public OpKernel {
 public:
  explicit ApproxMatchGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

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
    Tensor temp;
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT,
                                           TensorShape({static_cast<std::int64_t>(
                                               differ_approx_match_temp_floats(b, n, m))}),
                                           &temp));
    const char* err = differ_approx_match_launcher(b, n, m, t1.flat<float>().data(), t2.flat<float>().data(),
                                                   match->flat<float>().data(), temp.flat<float>().data(),
                                                   ctx->eigen_gpu_device().stream());
    OP_REQUIRES(ctx, err == nullptr, absl::InternalError(absl::StrCat(kMatch, ": CUDA error: ", err ? err : "")));
  }
};

class MatchCostGpuOp : public OpKernel {
 public:
  explicit MatchCostGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckCostInputs(ctx, kCost, false));
    const Tensor& t1 = ctx->input(0);
    const Tensor& t2 = ctx->input(1);
    const int b = static_cast<int>(t1.dim_size(0));
    Tensor* cost;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({b}), &cost));
    if (b == 0) return;
    const char* err = differ_match_cost_launcher(
        b, static_cast<int>(t1.dim_size(1)), static_cast<int>(t2.dim_size(1)), t1.flat<float>().data(),
        t2.flat<float>().data(), ctx->input(2).flat<float>().data(), cost->flat<float>().data(),
        ctx->eigen_gpu_device().stream());
    OP_REQUIRES(ctx, err == nullptr, absl::InternalError(absl::StrCat(kCost, ": CUDA error: ", err ? err : "")));
  }
};

class MatchCostGradGpuOp : public OpKernel {
 public:
  explicit MatchCostGradGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckCostInputs(ctx, kCostGrad, true));
    const Tensor& t1 = ctx->input(0);
    const Tensor& t2 = ctx->input(1);
    const int b = static_cast<int>(t1.dim_size(0));
    Tensor *g1, *g2;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, t1.shape(), &g1));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, t2.shape(), &g2));
    if (b == 0) return;
    const char* err = differ_match_cost_grad_launcher(
        b, static_cast<int>(t1.dim_size(1)), static_cast<int>(t2.dim_size(1)), t1.flat<float>().data(),
        t2.flat<float>().data(), ctx->input(2).flat<float>().data(), ctx->input(3).flat<float>().data(),
        g1->flat<float>().data(), g2->flat<float>().data(), ctx->eigen_gpu_device().stream());
    OP_REQUIRES(ctx, err == nullptr,
                absl::InternalError(absl::StrCat(kCostGrad, ": CUDA error: ", err ? err : "")));
  }
};

REGISTER_KERNEL_BUILDER(Name("DifferApproxMatch").Device(tensorflow::DEVICE_GPU), ApproxMatchGpuOp);
REGISTER_KERNEL_BUILDER(Name("DifferMatchCost").Device(tensorflow::DEVICE_GPU), MatchCostGpuOp);
REGISTER_KERNEL_BUILDER(Name("DifferMatchCostGrad").Device(tensorflow::DEVICE_GPU), MatchCostGradGpuOp);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace differ_tf
