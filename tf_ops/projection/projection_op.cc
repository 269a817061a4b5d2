// TensorFlow ops DifferMaskProjection, DifferFeatureProjection and their
// gradient ops: registration, shape functions, and kernels templated on the
// device and dtype: CPU work (float and double; forward: work units of (batch
// item, band of image rows), backward: blocks of points, on TensorFlow's thread
// pool) and, with GOOGLE_CUDA, float GPU work through the launchers of
// projection.cu.
#include "op_util.h"  // first: the GPU set-up, TensorFlow's op headers, kernels_cpu.h, launchers.h

#include <algorithm>
#include <cmath>

namespace differ_tf {
namespace {

constexpr char kMask[] = "mask_projection";
constexpr char kMaskGrad[] = "mask_projection_grad";
constexpr char kFeat[] = "feature_projection";
constexpr char kFeatGrad[] = "feature_projection_grad";
constexpr int kPointBlock = 256;  // points per work unit of the backward kernels

// pix must be (B, N, 3): row px, column px, depth. N = 0 is allowed (an empty image).
absl::Status PixShape(InferenceContext* c, int input, const char* op, ShapeHandle* shape) {
  if (!c->WithRank(c->input(input), 3, shape).ok())
    return absl::InvalidArgumentError(absl::StrCat(op, ": pix must have shape (batch, points, 3), got rank ",
                                                   c->Rank(c->input(input))));
  DimensionHandle last = c->Dim(*shape, 2);
  if (c->ValueKnown(last) && c->Value(last) != 3)
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": pix must hold (row, column, depth) in its last dimension (size 3), got ", c->Value(last)));
  return absl::OkStatus();
}

absl::Status ImageSizeAttrs(InferenceContext* c, int* h, int* w) {
  TF_RETURN_IF_ERROR(c->GetAttr("img_h", h));
  return c->GetAttr("img_w", w);
}

// Mask projection (CAPNet): pix (B,N,3) -> mask (B,img_h,img_w) = tanh of the summed
// Gaussian splats exp(-((p_r - r)^2 + (p_c - c)^2) / (2 sigma_sq)) over each point's
// (2*half+1)^2 window around (round(r), round(c)).
REGISTER_OP("DifferMaskProjection")
    .Input("pix: T")
    .Output("mask: T")
    .Attr("T: {float, double}")
    .Attr("img_h: int >= 1")
    .Attr("img_w: int >= 1")
    .Attr("sigma_sq: float")
    .Attr("window_half: int >= 0")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      ShapeHandle s;
      int h, w;
      TF_RETURN_IF_ERROR(PixShape(c, 0, kMask, &s));
      TF_RETURN_IF_ERROR(ImageSizeAttrs(c, &h, &w));
      c->set_output(0, c->MakeShape({c->Dim(s, 0), h, w}));
      return absl::OkStatus();
    });

REGISTER_OP("DifferMaskProjectionGrad")
    .Input("pix: T")
    .Input("mask: T")
    .Input("grad_mask: T")
    .Output("grad_pix: T")
    .Attr("T: {float, double}")
    .Attr("img_h: int >= 1")
    .Attr("img_w: int >= 1")
    .Attr("sigma_sq: float")
    .Attr("window_half: int >= 0")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

// Depth-aware feature projection (DIFFER): pix (B,N,3), feat (B,N,C) ->
// feat_map (B,img_h,img_w,C), coverage (B,img_h,img_w), stats (B,img_h,img_w,2)
// (per-pixel maximum logit and 1 / softmax denominator, for the gradient).
REGISTER_OP("DifferFeatureProjection")
    .Input("pix: T")
    .Input("feat: T")
    .Output("feat_map: T")
    .Output("coverage: T")
    .Output("stats: T")
    .Attr("T: {float, double}")
    .Attr("img_h: int >= 1")
    .Attr("img_w: int >= 1")
    .Attr("well_radius: float")
    .Attr("window_half: int >= 0")
    .Attr("beta: float")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      ShapeHandle s, f;
      int h, w;
      TF_RETURN_IF_ERROR(PixShape(c, 0, kFeat, &s));
      TF_RETURN_IF_ERROR(ImageSizeAttrs(c, &h, &w));
      if (!c->WithRank(c->input(1), 3, &f).ok())
        return absl::InvalidArgumentError(absl::StrCat(kFeat, ": feat must have shape (batch, points, channels), got rank ",
                                                       c->Rank(c->input(1))));
      DimensionHandle batch, points;
      if (!c->Merge(c->Dim(s, 0), c->Dim(f, 0), &batch).ok() || !c->Merge(c->Dim(s, 1), c->Dim(f, 1), &points).ok())
        return absl::InvalidArgumentError(absl::StrCat(kFeat, ": pix and feat must have the same batch size and number "
                                                       "of points, got (", c->Value(c->Dim(s, 0)), ", ",
                                                       c->Value(c->Dim(s, 1)), ") and (", c->Value(c->Dim(f, 0)),
                                                       ", ", c->Value(c->Dim(f, 1)), ")"));
      c->set_output(0, c->MakeShape({batch, h, w, c->Dim(f, 2)}));
      c->set_output(1, c->MakeShape({batch, h, w}));
      c->set_output(2, c->MakeShape({batch, h, w, 2}));
      return absl::OkStatus();
    });

REGISTER_OP("DifferFeatureProjectionGrad")
    .Input("pix: T")
    .Input("feat: T")
    .Input("feat_map: T")
    .Input("stats: T")
    .Input("grad_feat_map: T")
    .Output("grad_pix: T")
    .Output("grad_feat: T")
    .Attr("T: {float, double}")
    .Attr("img_h: int >= 1")
    .Attr("img_w: int >= 1")
    .Attr("well_radius: float")
    .Attr("window_half: int >= 0")
    .Attr("beta: float")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      c->set_output(0, c->input(0));
      c->set_output(1, c->input(1));
      return absl::OkStatus();
    });

// ---- run-time checks (shapes are known)

absl::Status CheckPix(const Tensor& t, const char* op) {
  if (t.dims() != 3 || t.dim_size(2) != 3)
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": pix must have shape (batch, points, 3), got ", t.shape().DebugString()));
  if (t.dim_size(0) > INT_MAX || t.dim_size(1) > INT_MAX / 4)
    return absl::InvalidArgumentError(absl::StrCat(op, ": pix is too large: ", t.shape().DebugString()));
  return absl::OkStatus();
}

absl::Status CheckFeat(const Tensor& pix, const Tensor& feat, const char* op) {
  if (feat.dims() != 3 || feat.dim_size(0) != pix.dim_size(0) || feat.dim_size(1) != pix.dim_size(1))
    return absl::InvalidArgumentError(absl::StrCat(op, ": feat must have shape (batch, points, channels) = (",
                                                   pix.dim_size(0), ", ", pix.dim_size(1), ", C), got ",
                                                   feat.shape().DebugString()));
  if (feat.dim_size(2) > 4096)
    return absl::InvalidArgumentError(absl::StrCat(op, ": too many feature channels: ", feat.dim_size(2)));
  return absl::OkStatus();
}

// Attributes shared by the four ops.
struct ProjAttrs {
  int h = 0, w = 0, half = 0;
  float sigma_sq = 0.f, radius = 0.f, beta = 0.f;

  absl::Status Read(OpKernelConstruction* ctx, bool feature) {
    TF_RETURN_IF_ERROR(ctx->GetAttr("img_h", &h));
    TF_RETURN_IF_ERROR(ctx->GetAttr("img_w", &w));
    TF_RETURN_IF_ERROR(ctx->GetAttr("window_half", &half));
    if (static_cast<std::int64_t>(h) * w > (1 << 28))
      return absl::InvalidArgumentError(absl::StrCat("projection: image too large: ", h, " x ", w));
    if (half > 1024) return absl::InvalidArgumentError(absl::StrCat("projection: window half-width too large: ", half));
    if (!feature) {
      TF_RETURN_IF_ERROR(ctx->GetAttr("sigma_sq", &sigma_sq));
      if (!(sigma_sq > 0.f) || !std::isfinite(sigma_sq))
        return absl::InvalidArgumentError(absl::StrCat(kMask, ": sigma_sq must be a positive number, got ", sigma_sq));
    } else {
      TF_RETURN_IF_ERROR(ctx->GetAttr("well_radius", &radius));
      TF_RETURN_IF_ERROR(ctx->GetAttr("beta", &beta));
      if (!(radius >= 0.f) || !std::isfinite(radius))
        return absl::InvalidArgumentError(absl::StrCat(kFeat, ": well_radius must be >= 0, got ", radius));
      if (!std::isfinite(beta)) return absl::InvalidArgumentError(absl::StrCat(kFeat, ": beta must be finite"));
    }
    return absl::OkStatus();
  }
};

// Forward work units: (batch item, band of image rows). The bands only decide who
// computes which pixels, never the order of a pixel's sum.
void ForRowBands(OpKernelContext* ctx, int b, int h, std::int64_t cost_per_item,
                 const std::function<void(int, int, int)>& work) {
  const int threads = ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
  int bands = std::max(1, std::min(h, (4 * threads + b - 1) / std::max(b, 1)));
  const int rows = (h + bands - 1) / bands;
  bands = (h + rows - 1) / rows;
  ParallelFor(ctx, static_cast<std::int64_t>(b) * bands, std::max<std::int64_t>(1, cost_per_item / bands),
              [&](std::int64_t begin, std::int64_t end) {
                for (std::int64_t u = begin; u < end; ++u) {
                  const int k = static_cast<int>(u / bands), band = static_cast<int>(u % bands);
                  work(k, band * rows, std::min(h, (band + 1) * rows));
                }
              });
}

// Backward work units: (batch item, block of points).
void ForPointBlocks(OpKernelContext* ctx, int b, int n, std::int64_t cost_per_point,
                    const std::function<void(int, int, int)>& work) {
  const int blocks = std::max(1, (n + kPointBlock - 1) / kPointBlock);
  ParallelFor(ctx, static_cast<std::int64_t>(b) * blocks, cost_per_point * kPointBlock,
              [&](std::int64_t begin, std::int64_t end) {
                for (std::int64_t u = begin; u < end; ++u) {
                  const int k = static_cast<int>(u / blocks), blk = static_cast<int>(u % blocks);
                  work(k, blk * kPointBlock, std::min(n, (blk + 1) * kPointBlock));
                }
              });
}

// ---- kernels: the shared prologue (checks, outputs, empty-input exit) in the OpKernel class
// templates over (device, dtype), the work in the Launch* specialisations: CPU for float and
// double, GPU for float.

template <typename Device, typename T>
struct LaunchMaskProjection;  // Run(ctx, attrs, b, n, pix, mask); b >= 1

template <typename Device, typename T>
struct LaunchMaskProjectionGrad;  // Run(ctx, attrs, b, n, pix, mask, grad_mask, grad_pix); b, n >= 1

template <typename Device, typename T>
struct LaunchFeatureProjection;  // Run(ctx, attrs, b, n, nc, pix, feat, feat_map, coverage, stats); b >= 1

template <typename Device, typename T>
struct LaunchFeatureProjectionGrad;  // Run(ctx, attrs, b, n, nc, pix, feat, feat_map, stats, grad_map,
                                     //     grad_pix, grad_feat); b, n >= 1

// Base of the four kernels: their attributes, read and checked once, at construction.
class ProjectionKernel : public OpKernel {
 protected:
  ProjectionKernel(OpKernelConstruction* ctx, bool feature) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, a_.Read(ctx, feature)); }

  ProjAttrs a_;
};

template <typename Device, typename T>
class MaskProjectionOp : public ProjectionKernel {
 public:
  explicit MaskProjectionOp(OpKernelConstruction* ctx) : ProjectionKernel(ctx, false) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& pix = ctx->input(0);
    OP_REQUIRES_OK(ctx, CheckPix(pix, kMask));
    const int b = static_cast<int>(pix.dim_size(0)), n = static_cast<int>(pix.dim_size(1));
    Tensor* mask;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({b, a_.h, a_.w}), &mask));
    if (b == 0) return;
    LaunchMaskProjection<Device, T>::Run(ctx, a_, b, n, pix.flat<T>().data(), mask->flat<T>().data());
  }
};

template <typename Device, typename T>
class MaskProjectionGradOp : public ProjectionKernel {
 public:
  explicit MaskProjectionGradOp(OpKernelConstruction* ctx) : ProjectionKernel(ctx, false) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& pix = ctx->input(0);
    OP_REQUIRES_OK(ctx, CheckPix(pix, kMaskGrad));
    const int b = static_cast<int>(pix.dim_size(0)), n = static_cast<int>(pix.dim_size(1));
    const TensorShape img({b, a_.h, a_.w});
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(1), img, kMaskGrad, "mask"));
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(2), img, kMaskGrad, "grad_mask"));
    Tensor* grad;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, pix.shape(), &grad));
    if (b == 0 || n == 0) return;
    LaunchMaskProjectionGrad<Device, T>::Run(ctx, a_, b, n, pix.flat<T>().data(), ctx->input(1).flat<T>().data(),
                                             ctx->input(2).flat<T>().data(), grad->flat<T>().data());
  }
};

template <typename Device, typename T>
class FeatureProjectionOp : public ProjectionKernel {
 public:
  explicit FeatureProjectionOp(OpKernelConstruction* ctx) : ProjectionKernel(ctx, true) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& pix = ctx->input(0);
    const Tensor& feat = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckPix(pix, kFeat));
    OP_REQUIRES_OK(ctx, CheckFeat(pix, feat, kFeat));
    const int b = static_cast<int>(pix.dim_size(0)), n = static_cast<int>(pix.dim_size(1));
    const int nc = static_cast<int>(feat.dim_size(2));
    Tensor *fmap, *cov, *stats;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({b, a_.h, a_.w, nc}), &fmap));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({b, a_.h, a_.w}), &cov));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({b, a_.h, a_.w, 2}), &stats));
    if (b == 0) return;
    LaunchFeatureProjection<Device, T>::Run(ctx, a_, b, n, nc, pix.flat<T>().data(), feat.flat<T>().data(),
                                            fmap->flat<T>().data(), cov->flat<T>().data(), stats->flat<T>().data());
  }
};

template <typename Device, typename T>
class FeatureProjectionGradOp : public ProjectionKernel {
 public:
  explicit FeatureProjectionGradOp(OpKernelConstruction* ctx) : ProjectionKernel(ctx, true) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& pix = ctx->input(0);
    const Tensor& feat = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckPix(pix, kFeatGrad));
    OP_REQUIRES_OK(ctx, CheckFeat(pix, feat, kFeatGrad));
    const int b = static_cast<int>(pix.dim_size(0)), n = static_cast<int>(pix.dim_size(1));
    const int nc = static_cast<int>(feat.dim_size(2));
    const TensorShape map_shape({b, a_.h, a_.w, nc});
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(2), map_shape, kFeatGrad, "feat_map"));
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(3), TensorShape({b, a_.h, a_.w, 2}), kFeatGrad, "stats"));
    OP_REQUIRES_OK(ctx, CheckShape(ctx->input(4), map_shape, kFeatGrad, "grad_feat_map"));
    Tensor *g_pix, *g_feat;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, pix.shape(), &g_pix));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, feat.shape(), &g_feat));
    if (b == 0 || n == 0) return;
    LaunchFeatureProjectionGrad<Device, T>::Run(
        ctx, a_, b, n, nc, pix.flat<T>().data(), feat.flat<T>().data(), ctx->input(2).flat<T>().data(),
        ctx->input(3).flat<T>().data(), ctx->input(4).flat<T>().data(), g_pix->flat<T>().data(),
        g_feat->flat<T>().data());
  }
};

template <typename T>
struct LaunchMaskProjection<CPUDevice, T> {
  static void Run(OpKernelContext* ctx, const ProjAttrs& a, int b, int n, const T* p, T* m) {
    const std::int64_t k = 2 * a.half + 1, hw = static_cast<std::int64_t>(a.h) * a.w;
    ForRowBands(ctx, b, a.h, 10 * n * k * k + 20 * hw, [&](int item, int r0, int r1) {
      differ::mask_projection_rows<T>(n, p + 3 * static_cast<std::int64_t>(item) * n, a.h, a.w, T(a.sigma_sq),
                                      a.half, r0, r1, m + item * hw);
    });
  }
};

template <typename T>
struct LaunchMaskProjectionGrad<CPUDevice, T> {
  static void Run(OpKernelContext* ctx, const ProjAttrs& a, int b, int n, const T* p, const T* m, const T* g,
                  T* out) {
    const std::int64_t k = 2 * a.half + 1, hw = static_cast<std::int64_t>(a.h) * a.w;
    Tensor a_tensor;  // d loss / d (sum under the tanh), per pixel, in padded rows
    const std::int64_t a_hw = static_cast<std::int64_t>(a.h) * differ::mask_grad_row_stride(a.w);
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value, TensorShape({b, a_hw}), &a_tensor));
    T* d_sum = a_tensor.flat<T>().data();
    ParallelFor(ctx, b, 4 * hw, [&](std::int64_t begin, std::int64_t end) {
      differ::mask_projection_grad_pixels<T>(static_cast<int>((end - begin) * a.h), a.w, m + begin * hw,
                                             g + begin * hw, d_sum + begin * a_hw);
    });
    ForPointBlocks(ctx, b, n, 8 * k * k, [&](int item, int i0, int i1) {
      const std::int64_t off = 3 * static_cast<std::int64_t>(item) * n;
      differ::mask_projection_grad_points<T>(n, p + off, a.h, a.w, T(a.sigma_sq), a.half, d_sum + item * a_hw, i0,
                                             i1, out + off);
    });
  }
};

template <typename T>
struct LaunchFeatureProjection<CPUDevice, T> {
  static void Run(OpKernelContext* ctx, const ProjAttrs& a, int b, int n, int nc, const T* p, const T* f, T* fm,
                  T* cv, T* st) {
    const std::int64_t k = 2 * a.half + 1, hw = static_cast<std::int64_t>(a.h) * a.w;
    ForRowBands(ctx, b, a.h, 2 * n * k * k * (nc + 10) + hw * (nc + 10), [&](int item, int r0, int r1) {
      differ::feature_projection_rows<T>(n, nc, p + 3 * static_cast<std::int64_t>(item) * n,
                                         f + static_cast<std::int64_t>(item) * n * nc, a.h, a.w, T(a.radius),
                                         a.half, T(a.beta), r0, r1, fm + item * hw * nc, cv + item * hw,
                                         st + item * hw * 2);
    });
  }
};

template <typename T>
struct LaunchFeatureProjectionGrad<CPUDevice, T> {
  static void Run(OpKernelContext* ctx, const ProjAttrs& a, int b, int n, int nc, const T* p, const T* f,
                  const T* fm, const T* st, const T* g, T* gp, T* gf) {
    const std::int64_t k = 2 * a.half + 1, hw = static_cast<std::int64_t>(a.h) * a.w;
    ForPointBlocks(ctx, b, n, k * k * (3 * nc + 20), [&](int item, int i0, int i1) {
      const std::int64_t off_p = 3 * static_cast<std::int64_t>(item) * n;
      const std::int64_t off_f = static_cast<std::int64_t>(item) * n * nc;
      differ::feature_projection_grad_points<T>(n, nc, p + off_p, f + off_f, a.h, a.w, T(a.radius), a.half,
                                                T(a.beta), fm + item * hw * nc, st + item * hw * 2,
                                                g + item * hw * nc, i0, i1, gp + off_p, gf + off_f);
    });
  }
};

#define DIFFER_REGISTER(DEVICE, TAG, T)                                                                           \
  REGISTER_KERNEL_BUILDER(Name("DifferMaskProjection").Device(DEVICE).TypeConstraint<T>("T"),                    \
                          MaskProjectionOp<TAG, T>);                                                             \
  REGISTER_KERNEL_BUILDER(Name("DifferMaskProjectionGrad").Device(DEVICE).TypeConstraint<T>("T"),                \
                          MaskProjectionGradOp<TAG, T>);                                                         \
  REGISTER_KERNEL_BUILDER(Name("DifferFeatureProjection").Device(DEVICE).TypeConstraint<T>("T"),                 \
                          FeatureProjectionOp<TAG, T>);                                                          \
  REGISTER_KERNEL_BUILDER(Name("DifferFeatureProjectionGrad").Device(DEVICE).TypeConstraint<T>("T"),             \
                          FeatureProjectionGradOp<TAG, T>);
DIFFER_REGISTER(DEVICE_CPU, CPUDevice, float)
DIFFER_REGISTER(DEVICE_CPU, CPUDevice, double)

#if GOOGLE_CUDA
// GPU (float only; double stays on the CPU): work enqueued on TensorFlow's stream.
template <>
struct LaunchMaskProjection<GPUDevice, float> {
  static void Run(OpKernelContext* ctx, const ProjAttrs& a, int b, int n, const float* p, float* m) {
    OP_REQUIRES_OK(ctx, CudaStatus(kMask, differ_mask_projection_launcher(b, n, p, a.h, a.w, a.sigma_sq, a.half, m,
                                                                          ctx->eigen_gpu_device().stream())));
  }
};

template <>
struct LaunchMaskProjectionGrad<GPUDevice, float> {
  static void Run(OpKernelContext* ctx, const ProjAttrs& a, int b, int n, const float* p, const float* m,
                  const float* g, float* out) {
    OP_REQUIRES_OK(ctx, CudaStatus(kMaskGrad, differ_mask_projection_grad_launcher(
                                                  b, n, p, a.h, a.w, a.sigma_sq, a.half, m, g, out,
                                                  ctx->eigen_gpu_device().stream())));
  }
};

template <>
struct LaunchFeatureProjection<GPUDevice, float> {
  static void Run(OpKernelContext* ctx, const ProjAttrs& a, int b, int n, int nc, const float* p, const float* f,
                  float* fm, float* cv, float* st) {
    OP_REQUIRES_OK(ctx, CudaStatus(kFeat, differ_feature_projection_launcher(
                                              b, n, nc, p, f, a.h, a.w, a.radius, a.half, a.beta, fm, cv, st,
                                              ctx->eigen_gpu_device().stream())));
  }
};

template <>
struct LaunchFeatureProjectionGrad<GPUDevice, float> {
  static void Run(OpKernelContext* ctx, const ProjAttrs& a, int b, int n, int nc, const float* p, const float* f,
                  const float* fm, const float* st, const float* g, float* gp, float* gf) {
    OP_REQUIRES_OK(ctx, CudaStatus(kFeatGrad, differ_feature_projection_grad_launcher(
                                                  b, n, nc, p, f, a.h, a.w, a.radius, a.half, a.beta, fm, st, g,
                                                  gp, gf, ctx->eigen_gpu_device().stream())));
  }
};

DIFFER_REGISTER(tensorflow::DEVICE_GPU, GPUDevice, float)
#endif  // GOOGLE_CUDA
#undef DIFFER_REGISTER

}  // namespace
}  // namespace differ_tf
