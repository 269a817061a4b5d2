// TensorFlow ops DifferPixelNearest and DifferPixelNearestGrad: registration,
// shape functions, and kernels templated on the device and dtype: CPU work
// (float and double; one batch item per work unit on TensorFlow's thread pool)
// and, with GOOGLE_CUDA, float GPU work through pixel_nearest.cu.
#include "op_util.h"  // first: the GPU set-up, TensorFlow's op headers, kernels_cpu.h, launchers.h

#include <cmath>

namespace differ_tf {
namespace {

constexpr char kOp[] = "pixel_nearest";
constexpr char kGradOp[] = "pixel_nearest_grad";

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

// The gradient op's inputs: idx and grad_dist (B,H,W).
absl::Status CheckGradInputs(OpKernelContext* ctx) {
  const Tensor& pts = ctx->input(0);
  const Tensor& idx = ctx->input(1);
  absl::Status s = CheckInputs(pts, idx);
  if (s.ok()) s = CheckShape(ctx->input(2), idx.shape(), kGradOp, "grad_dist");
  return s;
}

absl::Status ReadCap(OpKernelConstruction* ctx, float* cap) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("max_dist_sq", cap));
  if (!(*cap >= 0.f))
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": max_dist_sq must be >= 0, got ", *cap));
  return absl::OkStatus();
}

// ---- kernels: the shared prologue in the OpKernel class templates over (device, dtype), the
// work in the Launch* specialisations (CPU: float and double; GPU: float).

template <typename Device, typename T>
struct LaunchPixelNearest;  // Run(ctx, b, n, dim, points, h, w, query, max_dist_sq, idx, dist); b, h, w >= 1

template <typename Device, typename T>
struct LaunchPixelNearestGrad;  // Run(ctx, b, n, dim, points, h, w, idx, grad_dist, grad_points); b >= 1

template <typename Device, typename T>
class PixelNearestOp : public OpKernel {
 public:
  explicit PixelNearestOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, ReadCap(ctx, &cap_)); }

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
    LaunchPixelNearest<Device, T>::Run(ctx, b, n, dim, pts.flat<T>().data(), h, w, query.flat<T>().data(),
                                       static_cast<double>(cap_), idx->flat<int>().data(), dist->flat<T>().data());
  }

 private:
  float cap_ = 0.f;
};

template <typename Device, typename T>
class PixelNearestGradOp : public OpKernel {
 public:
  explicit PixelNearestGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckGradInputs(ctx));
    const Tensor& pts = ctx->input(0);
    const Tensor& idx = ctx->input(1);
    const int b = static_cast<int>(pts.dim_size(0)), n = static_cast<int>(pts.dim_size(1));
    const int dim = static_cast<int>(pts.dim_size(2));
    const int h = static_cast<int>(idx.dim_size(1)), w = static_cast<int>(idx.dim_size(2));
    Tensor* grad;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, pts.shape(), &grad));
    if (b == 0) return;
    LaunchPixelNearestGrad<Device, T>::Run(ctx, b, n, dim, pts.flat<T>().data(), h, w, idx.flat<int>().data(),
                                           ctx->input(2).flat<T>().data(), grad->flat<T>().data());
  }
};

template <typename T>
struct LaunchPixelNearest<CPUDevice, T> {
  static void Run(OpKernelContext* ctx, int b, int n, int dim, const T* p, int h, int w, const T* q, double cap,
                  int* out, T* d) {
    const std::int64_t hw = static_cast<std::int64_t>(h) * w;
    ParallelFor(ctx, b, 40 * (hw + n), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t k = begin; k < end; ++k)
        differ::pixel_nearest<T>(n, dim, p + k * n * dim, h, w, q + k * hw, cap, out + k * hw, d + k * hw);
    });
  }
};

template <typename T>
struct LaunchPixelNearestGrad<CPUDevice, T> {
  static void Run(OpKernelContext* ctx, int b, int n, int dim, const T* p, int h, int w, const int* idx, const T* g,
                  T* out) {
    // Indices come from the forward op (host memory here); a corrupted one must not write out of bounds.
    const std::int64_t hw = static_cast<std::int64_t>(h) * w;
    for (std::int64_t k = 0; k < b * hw; ++k)
      OP_REQUIRES(ctx, idx[k] >= -1 && idx[k] < n,
                  absl::InvalidArgumentError(absl::StrCat(kGradOp, ": idx out of range [-1, ", n, ")")));
    ParallelFor(ctx, b, 5 * (hw + n), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t k = begin; k < end; ++k)
        differ::pixel_nearest_grad<T>(n, dim, p + k * n * dim, h, w, idx + k * hw, g + k * hw, out + k * n * dim);
    });
  }
};

#define DIFFER_REGISTER(DEVICE, TAG, T)                                                                        \
  REGISTER_KERNEL_BUILDER(Name("DifferPixelNearest").Device(DEVICE).TypeConstraint<T>("T"),                   \
                          PixelNearestOp<TAG, T>);                                                            \
  REGISTER_KERNEL_BUILDER(Name("DifferPixelNearestGrad").Device(DEVICE).TypeConstraint<T>("T"),               \
                          PixelNearestGradOp<TAG, T>);
DIFFER_REGISTER(DEVICE_CPU, CPUDevice, float)
DIFFER_REGISTER(DEVICE_CPU, CPUDevice, double)

#if GOOGLE_CUDA
// GPU (float only): work enqueued on TensorFlow's stream. idx is device memory here, so the
// gradient cannot check its range.
template <>
struct LaunchPixelNearest<GPUDevice, float> {
  static void Run(OpKernelContext* ctx, int b, int n, int dim, const float* p, int h, int w, const float* q,
                  double cap, int* out, float* d) {
    Tensor temp;
    const std::int64_t bytes = static_cast<std::int64_t>(differ_pixel_nearest_temp_bytes(b, n, h, w));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_INT8, TensorShape({bytes}), &temp));
    OP_REQUIRES_OK(ctx, CudaStatus(kOp, differ_pixel_nearest_launcher(b, n, dim, p, h, w, q, cap, out, d,
                                                                      temp.flat<tensorflow::int8>().data(),
                                                                      ctx->eigen_gpu_device().stream())));
  }
};

template <>
struct LaunchPixelNearestGrad<GPUDevice, float> {
  static void Run(OpKernelContext* ctx, int b, int n, int dim, const float* p, int h, int w, const int* idx,
                  const float* g, float* out) {
    OP_REQUIRES_OK(ctx, CudaStatus(kGradOp, differ_pixel_nearest_grad_launcher(b, n, dim, p, h, w, idx, g, out,
                                                                               ctx->eigen_gpu_device().stream())));
  }
};

DIFFER_REGISTER(tensorflow::DEVICE_GPU, GPUDevice, float)
#endif  // GOOGLE_CUDA
#undef DIFFER_REGISTER

}  // namespace
}  // namespace differ_tf
