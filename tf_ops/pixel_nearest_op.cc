// TensorFlow ops DifferPixelNearest and DifferPixelNearestGrad: registration,
// shape functions, CPU kernels (float and double; one batch item per work unit
// on TensorFlow's thread pool) and, with GOOGLE_CUDA, float GPU kernels calling
// pixel_nearest.cu.
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include <cmath>

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

constexpr char kOp[] = "pixel_nearest";

// points (B,N,D), D >= 2 (row px, column px, ...), query (B,H,W) -> dist (B,H,W),
// idx (B,H,W): the nearest point to each pixel centre with query != 0 (smallest
// index on exact ties) and its squared distance (px^2); idx -1 and dist +inf where
// query == 0 or no point is within sqrt(max_dist_sq) px.
REGISTER_OP("DifferPixelNearest")
    .Input("points: T")
    .Input("query: T")
    .Output("dist: T")
    .Output("idx: int32")
    .Attr("T: {float, double}")
    .Attr("max_dist_sq: float")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      ShapeHandle s, q;
      if (!c->WithRank(c->input(0), 3, &s).ok())
        return absl::InvalidArgumentError(absl::StrCat(kOp, ": points must have shape (batch, points, 2 or more), got rank ",
                                                       c->Rank(c->input(0))));
      DimensionHandle last = c->Dim(s, 2);
      if (c->ValueKnown(last) && c->Value(last) < 2)
        return absl::InvalidArgumentError(
            absl::StrCat(kOp, ": points need (row, column) in their last dimension, got size ", c->Value(last)));
      if (!c->WithRank(c->input(1), 3, &q).ok())
        return absl::InvalidArgumentError(absl::StrCat(kOp, ": query must be an image batch (batch, H, W), got rank ",
                                                       c->Rank(c->input(1))));
      DimensionHandle batch;
      if (!c->Merge(c->Dim(s, 0), c->Dim(q, 0), &batch).ok())
        return absl::InvalidArgumentError(absl::StrCat(kOp, ": points and query must have the same batch size, got ",
                                                       c->Value(c->Dim(s, 0)), " and ", c->Value(c->Dim(q, 0))));
      ShapeHandle out = c->MakeShape({batch, c->Dim(q, 1), c->Dim(q, 2)});
      c->set_output(0, out);
      c->set_output(1, out);
      return absl::OkStatus();
    });

// Gradient of sum(grad_dist * dist) w.r.t. points: 2 g (point - pixel) on each
// pixel's nearest point.
REGISTER_OP("DifferPixelNearestGrad")
    .Input("points: T")
    .Input("idx: int32")
    .Input("grad_dist: T")
    .Output("grad_points: T")
    .Attr("T: {float, double}")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

absl::Status CheckInputs(const Tensor& pts, const Tensor& query) {
  if (pts.dims() != 3 || pts.dim_size(2) < 2)
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": points must have shape (batch, points, 2 or more), got ", pts.shape().DebugString()));
  if (query.dims() != 3 || query.dim_size(0) != pts.dim_size(0))
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": query must have shape (batch, H, W) with batch ",
                                                   pts.dim_size(0), ", got ", query.shape().DebugString()));
  if (pts.dim_size(1) * pts.dim_size(2) > INT_MAX / 2 || query.dim_size(1) > (1 << 15) ||
      query.dim_size(2) > (1 << 15) || pts.dim_size(0) > INT_MAX)
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": input too large: points ", pts.shape().DebugString(),
                                                   ", query ", query.shape().DebugString()));
  return absl::OkStatus();
}

// The gradient op's inputs: idx and grad_dist (B,H,W), indices within [-1, N).
absl::Status CheckGradInputs(OpKernelContext* ctx) {
  const Tensor& pts = ctx->input(0);
  const Tensor& idx = ctx->input(1);
  absl::Status s = CheckInputs(pts, idx);
  if (s.ok()) s = CheckShape(ctx->input(2), idx.shape(), "pixel_nearest_grad", "grad_dist");
  if (!s.ok()) return s;
  const int* i = idx.flat<int>().data();
  const std::int64_t n = pts.dim_size(1);
  for (std::int64_t k = 0; k < idx.NumElements(); ++k)
    if (i[k] < -1 || i[k] >= n)
      return absl::InvalidArgumentError(absl::StrCat("pixel_nearest_grad: idx out of range [-1, ", n, ")"));
  return absl::OkStatus();
}

absl::Status ReadCap(OpKernelConstruction* ctx, float* cap) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("max_dist_sq", cap));
  if (!(*cap >= 0.f))
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": max_dist_sq must be >= 0, got ", *cap));
  return absl::OkStatus();
}

template <typename T>
class PixelNearestCpuOp : public OpKernel {
 public:
  explicit PixelNearestCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, ReadCap(ctx, &cap_)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& pts = ctx->input(0);
    const Tensor& query = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckInputs(pts, query));
    const int b = static_cast<int>(pts.dim_size(0)), n = static_cast<int>(pts.dim_size(1));
    const int dim = static_cast<int>(pts.dim_size(2));
    const int h = static_cast<int>(query.dim_size(1)), w = static_cast<int>(query.dim_size(2));
    Tensor *dist, *idx;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, query.shape(), &dist));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, query.shape(), &idx));
    if (b == 0 || h == 0 || w == 0) return;
    const T* p = pts.flat<T>().data();
    const T* q = query.flat<T>().data();
    T* d = dist->flat<T>().data();
    int* out = idx->flat<int>().data();
    const std::int64_t hw = static_cast<std::int64_t>(h) * w;
    const double cap = static_cast<double>(cap_);
    ParallelFor(ctx, b, 40 * (hw + n), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t k = begin; k < end; ++k)
        differ::pixel_nearest<T>(n, dim, p + k * n * dim, h, w, q + k * hw, cap, out + k * hw, d + k * hw);
    });
  }

 private:
  float cap_ = 0.f;
};

template <typename T>
class PixelNearestGradCpuOp : public OpKernel {
 public:
  explicit PixelNearestGradCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckGradInputs(ctx));
    const Tensor& pts = ctx->input(0);
    const int b = static_cast<int>(pts.dim_size(0)), n = static_cast<int>(pts.dim_size(1));
    const int dim = static_cast<int>(pts.dim_size(2));
    const int h = static_cast<int>(ctx->input(1).dim_size(1)), w = static_cast<int>(ctx->input(1).dim_size(2));
    Tensor* grad;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, pts.shape(), &grad));
    if (b == 0) return;
    const T* p = pts.flat<T>().data();
    const int* idx = ctx->input(1).flat<int>().data();
    const T* g = ctx->input(2).flat<T>().data();
    T* out = grad->flat<T>().data();
    const std::int64_t hw = static_cast<std::int64_t>(h) * w;
    ParallelFor(ctx, b, 5 * (hw + n), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t k = begin; k < end; ++k)
        differ::pixel_nearest_grad<T>(n, dim, p + k * n * dim, h, w, idx + k * hw, g + k * hw, out + k * n * dim);
    });
  }
};

#define DIFFER_REGISTER_CPU(T)                                                                                 \
  REGISTER_KERNEL_BUILDER(Name("DifferPixelNearest").Device(DEVICE_CPU).TypeConstraint<T>("T"),               \
                          PixelNearestCpuOp<T>);                                                              \
  REGISTER_KERNEL_BUILDER(Name("DifferPixelNearestGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),           \
                          PixelNearestGradCpuOp<T>);
DIFFER_REGISTER_CPU(float)
DIFFER_REGISTER_CPU(double)
#undef DIFFER_REGISTER_CPU

#if GOOGLE_CUDA
class PixelNearestGpuOp : public OpKernel {
 public:
  explicit PixelNearestGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, ReadCap(ctx, &cap_)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& pts = ctx->input(0);
    const Tensor& query = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckInputs(pts, query));
    const int b = static_cast<int>(pts.dim_size(0)), n = static_cast<int>(pts.dim_size(1));
    const int dim = static_cast<int>(pts.dim_size(2));
    const int h = static_cast<int>(query.dim_size(1)), w = static_cast<int>(query.dim_size(2));
    Tensor *dist, *idx;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, query.shape(), &dist));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, query.shape(), &idx));
    if (b == 0 || h == 0 || w == 0) return;
    Tensor temp;
    const std::int64_t bytes = static_cast<std::int64_t>(differ_pixel_nearest_temp_bytes(b, n, h, w));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_INT8, TensorShape({bytes}), &temp));
    const char* err = differ_pixel_nearest_launcher(b, n, dim, pts.flat<float>().data(), h, w,
                                                    query.flat<float>().data(), static_cast<double>(cap_),
                                                    idx->flat<int>().data(), dist->flat<float>().data(),
                                                    temp.flat<tensorflow::int8>().data(),
                                                    ctx->eigen_gpu_device().stream());
    OP_REQUIRES(ctx, err == nullptr, absl::InternalError(absl::StrCat(kOp, ": CUDA error: ", err ? err : "")));
  }

 private:
  float cap_ = 0.f;
};

class PixelNearestGradGpuOp : public OpKernel {
 public:
  explicit PixelNearestGradGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& pts = ctx->input(0);
    const Tensor& idx = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckInputs(pts, idx));  // (idx is device memory here: its range is not checked)
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(2), idx.shape(), "pixel_nearest_grad", "grad_dist"));
    const int b = static_cast<int>(pts.dim_size(0)), n = static_cast<int>(pts.dim_size(1));
    const int dim = static_cast<int>(pts.dim_size(2));
    const int h = static_cast<int>(idx.dim_size(1)), w = static_cast<int>(idx.dim_size(2));
    Tensor* grad;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, pts.shape(), &grad));
    if (b == 0) return;
    const char* err = differ_pixel_nearest_grad_launcher(b, n, dim, pts.flat<float>().data(), h, w,
                                                         idx.flat<int>().data(), ctx->input(2).flat<float>().data(),
                                                         grad->flat<float>().data(), ctx->eigen_gpu_device().stream());
    OP_REQUIRES(ctx, err == nullptr,
                absl::InternalError(absl::StrCat("pixel_nearest_grad: CUDA error: ", err ? err : "")));
  }
};

REGISTER_KERNEL_BUILDER(Name("DifferPixelNearest").Device(tensorflow::DEVICE_GPU).TypeConstraint<float>("T"),
                        PixelNearestGpuOp);
REGISTER_KERNEL_BUILDER(Name("DifferPixelNearestGrad").Device(tensorflow::DEVICE_GPU).TypeConstraint<float>("T"),
                        PixelNearestGradGpuOp);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace differ_tf
