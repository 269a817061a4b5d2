// TensorFlow op DifferPixelNearest: registration, shape function, CPU kernel
// (float and double; one batch item per work unit on TensorFlow's thread pool)
// and, with GOOGLE_CUDA, a float GPU kernel calling pixel_nearest.cu. Its output
// is an index (no gradient): callers recompute the distance from the gathered
// point, which differentiates through the gather.
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

// points (B,N,D), D >= 2 (row px, column px, ...), query (B,H,W) -> idx (B,H,W):
// the nearest point to each pixel centre with query != 0 (smallest index on exact
// ties), -1 where query == 0 or no point is within sqrt(max_dist_sq) px.
REGISTER_OP("DifferPixelNearest")
    .Input("points: T")
    .Input("query: T")
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
      c->set_output(0, c->MakeShape({batch, c->Dim(q, 1), c->Dim(q, 2)}));
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
    Tensor* idx;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, query.shape(), &idx));
    if (b == 0 || h == 0 || w == 0) return;
    const T* p = pts.flat<T>().data();
    const T* q = query.flat<T>().data();
    int* out = idx->flat<int>().data();
    const std::int64_t hw = static_cast<std::int64_t>(h) * w;
    const double cap = static_cast<double>(cap_);
    ParallelFor(ctx, b, 40 * (hw + n), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t k = begin; k < end; ++k)
        differ::pixel_nearest<T>(n, dim, p + k * n * dim, h, w, q + k * hw, cap, out + k * hw);
    });
  }

 private:
  float cap_ = 0.f;
};

REGISTER_KERNEL_BUILDER(Name("DifferPixelNearest").Device(DEVICE_CPU).TypeConstraint<float>("T"),
                        PixelNearestCpuOp<float>);
REGISTER_KERNEL_BUILDER(Name("DifferPixelNearest").Device(DEVICE_CPU).TypeConstraint<double>("T"),
                        PixelNearestCpuOp<double>);

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
    Tensor* idx;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, query.shape(), &idx));
    if (b == 0 || h == 0 || w == 0) return;
    Tensor temp;
    const std::int64_t bytes = static_cast<std::int64_t>(differ_pixel_nearest_temp_bytes(b, n, h, w));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_INT8, TensorShape({bytes}), &temp));
    const char* err = differ_pixel_nearest_launcher(b, n, dim, pts.flat<float>().data(), h, w,
                                                    query.flat<float>().data(), static_cast<double>(cap_),
                                                    idx->flat<int>().data(), temp.flat<tensorflow::int8>().data(),
                                                    ctx->eigen_gpu_device().stream());
    OP_REQUIRES(ctx, err == nullptr, absl::InternalError(absl::StrCat(kOp, ": CUDA error: ", err ? err : "")));
  }

 private:
  float cap_ = 0.f;
};

REGISTER_KERNEL_BUILDER(Name("DifferPixelNearest").Device(tensorflow::DEVICE_GPU).TypeConstraint<float>("T"),
                        PixelNearestGpuOp);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace differ_tf
