// TensorFlow ops DifferMaskProjection, DifferFeatureProjection and their
// gradient ops: registration, shape functions, CPU kernels (float and double;
// forward: work units of (batch item, band of image rows), backward: blocks of
// points, on TensorFlow's thread pool) and, with GOOGLE_CUDA, float GPU kernels
// calling the launchers of projection.cu.
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif

#include <algorithm>
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

template <typename T>
class MaskProjectionCpuOp : public OpKernel {
 public:
  explicit MaskProjectionCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, a_.Read(ctx, false)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& pix = ctx->input(0);
    OP_REQUIRES_OK(ctx, CheckPix(pix, kMask));
    const int b = static_cast<int>(pix.dim_size(0)), n = static_cast<int>(pix.dim_size(1));
    Tensor* mask;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({b, a_.h, a_.w}), &mask));
    if (b == 0) return;
    const T* p = pix.flat<T>().data();
    T* m = mask->flat<T>().data();
    const std::int64_t k = 2 * a_.half + 1, hw = static_cast<std::int64_t>(a_.h) * a_.w;
    ForRowBands(ctx, b, a_.h, 10 * n * k * k + 20 * hw, [&](int item, int r0, int r1) {
      differ::mask_projection_rows<T>(n, p + 3 * static_cast<std::int64_t>(item) * n, a_.h, a_.w, T(a_.sigma_sq),
                                      a_.half, r0, r1, m + item * hw);
    });
  }

 private:
  ProjAttrs a_;
};

template <typename T>
class MaskProjectionGradCpuOp : public OpKernel {
 public:
  explicit MaskProjectionGradCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, a_.Read(ctx, false));
  }

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
    const T* p = pix.flat<T>().data();
    const T* m = ctx->input(1).flat<T>().data();
    const T* g = ctx->input(2).flat<T>().data();
    T* out = grad->flat<T>().data();
    const std::int64_t k = 2 * a_.half + 1, hw = static_cast<std::int64_t>(a_.h) * a_.w;
    Tensor a_tensor;  // d loss / d (sum under the tanh), per pixel, in padded rows
    const std::int64_t a_hw = static_cast<std::int64_t>(a_.h) * differ::mask_grad_row_stride(a_.w);
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value, TensorShape({b, a_hw}), &a_tensor));
    T* a = a_tensor.flat<T>().data();
    ParallelFor(ctx, b, 4 * hw, [&](std::int64_t begin, std::int64_t end) {
      differ::mask_projection_grad_pixels<T>(static_cast<int>((end - begin) * a_.h), a_.w, m + begin * hw,
                                             g + begin * hw, a + begin * a_hw);
    });
    ForPointBlocks(ctx, b, n, 8 * k * k, [&](int item, int i0, int i1) {
      const std::int64_t off = 3 * static_cast<std::int64_t>(item) * n;
      differ::mask_projection_grad_points<T>(n, p + off, a_.h, a_.w, T(a_.sigma_sq), a_.half, a + item * a_hw, i0,
                                             i1, out + off);
    });
  }

 private:
  ProjAttrs a_;
};

template <typename T>
class FeatureProjectionCpuOp : public OpKernel {
 public:
  explicit FeatureProjectionCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, a_.Read(ctx, true)); }

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
    const T* p = pix.flat<T>().data();
    const T* f = feat.flat<T>().data();
    T* fm = fmap->flat<T>().data();
    T* cv = cov->flat<T>().data();
    T* st = stats->flat<T>().data();
    const std::int64_t k = 2 * a_.half + 1, hw = static_cast<std::int64_t>(a_.h) * a_.w;
    ForRowBands(ctx, b, a_.h, 2 * n * k * k * (nc + 10) + hw * (nc + 10), [&](int item, int r0, int r1) {
      differ::feature_projection_rows<T>(n, nc, p + 3 * static_cast<std::int64_t>(item) * n,
                                         f + static_cast<std::int64_t>(item) * n * nc, a_.h, a_.w, T(a_.radius),
                                         a_.half, T(a_.beta), r0, r1, fm + item * hw * nc, cv + item * hw,
                                         st + item * hw * 2);
    });
  }

 private:
  ProjAttrs a_;
};

template <typename T>
class FeatureProjectionGradCpuOp : public OpKernel {
 public:
  explicit FeatureProjectionGradCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, a_.Read(ctx, true));
  }

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
    const T* p = pix.flat<T>().data();
    const T* f = feat.flat<T>().data();
    const T* fm = ctx->input(2).flat<T>().data();
    const T* st = ctx->input(3).flat<T>().data();
    const T* g = ctx->input(4).flat<T>().data();
    T* gp = g_pix->flat<T>().data();
    T* gf = g_feat->flat<T>().data();
    const std::int64_t k = 2 * a_.half + 1, hw = static_cast<std::int64_t>(a_.h) * a_.w;
    ForPointBlocks(ctx, b, n, k * k * (3 * nc + 20), [&](int item, int i0, int i1) {
      const std::int64_t off_p = 3 * static_cast<std::int64_t>(item) * n;
      const std::int64_t off_f = static_cast<std::int64_t>(item) * n * nc;
      differ::feature_projection_grad_points<T>(n, nc, p + off_p, f + off_f, a_.h, a_.w, T(a_.radius), a_.half,
                                                T(a_.beta), fm + item * hw * nc, st + item * hw * 2,
                                                g + item * hw * nc, i0, i1, gp + off_p, gf + off_f);
    });
  }

 private:
  ProjAttrs a_;
};

#define DIFFER_REGISTER_CPU(T)                                                                                    \
  REGISTER_KERNEL_BUILDER(Name("DifferMaskProjection").Device(DEVICE_CPU).TypeConstraint<T>("T"),                \
                          MaskProjectionCpuOp<T>);                                                               \
  REGISTER_KERNEL_BUILDER(Name("DifferMaskProjectionGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),            \
                          MaskProjectionGradCpuOp<T>);                                                           \
  REGISTER_KERNEL_BUILDER(Name("DifferFeatureProjection").Device(DEVICE_CPU).TypeConstraint<T>("T"),             \
                          FeatureProjectionCpuOp<T>);                                                            \
  REGISTER_KERNEL_BUILDER(Name("DifferFeatureProjectionGrad").Device(DEVICE_CPU).TypeConstraint<T>("T"),         \
                          FeatureProjectionGradCpuOp<T>);
DIFFER_REGISTER_CPU(float)
DIFFER_REGISTER_CPU(double)
#undef DIFFER_REGISTER_CPU

#if GOOGLE_CUDA
// GPU kernels (float only; double stays on the CPU): same checks on host-side
// shapes, work enqueued on TensorFlow's stream.
inline absl::Status CudaStatus(const char* op, const char* err) {
  return err == nullptr ? absl::OkStatus() : absl::InternalError(absl::StrCat(op, ": CUDA error: ", err));
}

class MaskProjectionGpuOp : public OpKernel {
 public:
  explicit MaskProjectionGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, a_.Read(ctx, false)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& pix = ctx->input(0);
    OP_REQUIRES_OK(ctx, CheckPix(pix, kMask));
    const int b = static_cast<int>(pix.dim_size(0)), n = static_cast<int>(pix.dim_size(1));
    Tensor* mask;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({b, a_.h, a_.w}), &mask));
    if (b == 0) return;
    OP_REQUIRES_OK(ctx, CudaStatus(kMask, differ_mask_projection_launcher(
                                              b, n, pix.flat<float>().data(), a_.h, a_.w, a_.sigma_sq, a_.half,
                                              mask->flat<float>().data(), ctx->eigen_gpu_device().stream())));
  }

 private:
  ProjAttrs a_;
};

class MaskProjectionGradGpuOp : public OpKernel {
 public:
  explicit MaskProjectionGradGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, a_.Read(ctx, false));
  }

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
    OP_REQUIRES_OK(ctx, CudaStatus(kMaskGrad, differ_mask_projection_grad_launcher(
                                                  b, n, pix.flat<float>().data(), a_.h, a_.w, a_.sigma_sq, a_.half,
                                                  ctx->input(1).flat<float>().data(),
                                                  ctx->input(2).flat<float>().data(), grad->flat<float>().data(),
                                                  ctx->eigen_gpu_device().stream())));
  }

 private:
  ProjAttrs a_;
};

class FeatureProjectionGpuOp : public OpKernel {
 public:
  explicit FeatureProjectionGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, a_.Read(ctx, true)); }

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
    OP_REQUIRES_OK(ctx, CudaStatus(kFeat, differ_feature_projection_launcher(
                                              b, n, nc, pix.flat<float>().data(), feat.flat<float>().data(), a_.h,
                                              a_.w, a_.radius, a_.half, a_.beta, fmap->flat<float>().data(),
                                              cov->flat<float>().data(), stats->flat<float>().data(),
                                              ctx->eigen_gpu_device().stream())));
  }

 private:
  ProjAttrs a_;
};

class FeatureProjectionGradGpuOp : public OpKernel {
 public:
  explicit FeatureProjectionGradGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, a_.Read(ctx, true));
  }

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
    OP_REQUIRES_OK(ctx, CudaStatus(kFeatGrad, differ_feature_projection_grad_launcher(
                                                  b, n, nc, pix.flat<float>().data(), feat.flat<float>().data(),
                                                  a_.h, a_.w, a_.radius, a_.half, a_.beta,
                                                  ctx->input(2).flat<float>().data(),
                                                  ctx->input(3).flat<float>().data(),
                                                  ctx->input(4).flat<float>().data(), g_pix->flat<float>().data(),
                                                  g_feat->flat<float>().data(), ctx->eigen_gpu_device().stream())));
  }

 private:
  ProjAttrs a_;
};

REGISTER_KERNEL_BUILDER(Name("DifferMaskProjection").Device(tensorflow::DEVICE_GPU).TypeConstraint<float>("T"),
                        MaskProjectionGpuOp);
REGISTER_KERNEL_BUILDER(Name("DifferMaskProjectionGrad").Device(tensorflow::DEVICE_GPU).TypeConstraint<float>("T"),
                        MaskProjectionGradGpuOp);
REGISTER_KERNEL_BUILDER(Name("DifferFeatureProjection").Device(tensorflow::DEVICE_GPU).TypeConstraint<float>("T"),
                        FeatureProjectionGpuOp);
REGISTER_KERNEL_BUILDER(
    Name("DifferFeatureProjectionGrad").Device(tensorflow::DEVICE_GPU).TypeConstraint<float>("T"),
    FeatureProjectionGradGpuOp);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace differ_tf
