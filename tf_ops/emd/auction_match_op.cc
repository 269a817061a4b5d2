// TensorFlow op DifferAuctionMatch: registration, shape function, and a kernel
// templated on the device: CPU work (one batch item per work unit on
// TensorFlow's thread pool) and, with GOOGLE_CUDA, GPU work through the launcher
// of auction_match.cu.
#include "op_util.h"  // first: the GPU set-up, TensorFlow's op headers, kernels_cpu.h, launchers.h

#include <vector>

namespace differ_tf {
namespace {

constexpr char kOp[] = "auction_match";

// Minimum-cost one-to-one assignment (cost: Euclidean distance) between two clouds
// of N points, by an epsilon-scaling auction certified to be within rel_tol of the
// optimum: idx1[b,i] = j matched to xyz1[b,i], idx2[b,j] = i.
REGISTER_OP("DifferAuctionMatch")
    .Input("xyz1: float32")
    .Input("xyz2: float32")
    .Attr("rel_tol: float = 0.0001")
    .Output("idx1: int32")
    .Output("idx2: int32")
    .SetShapeFn([](InferenceContext* c) -> absl::Status {
      ShapeHandle s1, s2;
      DimensionHandle batch, points;
      TF_RETURN_IF_ERROR(CloudShape(c, 0, kOp, "xyz1", &s1));
      TF_RETURN_IF_ERROR(CloudShape(c, 1, kOp, "xyz2", &s2));
      TF_RETURN_IF_ERROR(MergeBatch(c, s1, s2, kOp, &batch));
      if (!c->Merge(c->Dim(s1, 1), c->Dim(s2, 1), &points).ok())
        return absl::InvalidArgumentError(absl::StrCat(
            kOp, ": xyz1 and xyz2 must have the same number of points for a one-to-one assignment, got ",
            c->Value(c->Dim(s1, 1)), " and ", c->Value(c->Dim(s2, 1))));
      ShapeHandle out = c->MakeShape({batch, points});
      c->set_output(0, out);
      c->set_output(1, out);
      return absl::OkStatus();
    });

absl::Status CheckAuctionInputs(OpKernelContext* ctx) {
  const Tensor& a = ctx->input(0);
  const Tensor& b = ctx->input(1);
  absl::Status s = CheckPair(a, b, kOp);
  if (s.ok() && a.dim_size(1) != b.dim_size(1))
    s = absl::InvalidArgumentError(absl::StrCat(
        kOp, ": xyz1 and xyz2 must have the same number of points for a one-to-one assignment, got ",
        a.shape().DebugString(), " and ", b.shape().DebugString()));
  return s;
}

// ---- kernel: the shared prologue in AuctionMatchOp, the work per device in LaunchAuctionMatch
// (called with b >= 1).

template <typename Device>
struct LaunchAuctionMatch;  // Run(ctx, b, n, xyz1, xyz2, rel_tol, idx1, idx2)

template <typename Device>
class AuctionMatchOp : public OpKernel {
 public:
  explicit AuctionMatchOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("rel_tol", &rel_tol_));
    OP_REQUIRES(ctx, rel_tol_ >= 0.f, absl::InvalidArgumentError("auction_match: rel_tol must be >= 0"));
  }

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckAuctionInputs(ctx));
    const Tensor& t1 = ctx->input(0);
    const Tensor& t2 = ctx->input(1);
    const int b = static_cast<int>(t1.dim_size(0));
    const int n = static_cast<int>(t1.dim_size(1));
    Tensor *l, *r;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({b, n}), &l));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({b, n}), &r));
    if (b == 0) return;
    LaunchAuctionMatch<Device>::Run(ctx, b, n, t1.flat<float>().data(), t2.flat<float>().data(), rel_tol_,
                                    l->flat<int>().data(), r->flat<int>().data());
  }

 private:
  float rel_tol_;
};

template <>
struct LaunchAuctionMatch<CPUDevice> {
  static void Run(OpKernelContext* ctx, int b, int n, const float* x1, const float* x2, float tol, int* ml, int* mr) {
    // Non-finite coordinates have no meaningful assignment (and would stall the auction).
    const std::int64_t count = 3 * static_cast<std::int64_t>(b) * n;
    OP_REQUIRES(ctx, AllFinite(x1, count) && AllFinite(x2, count),
                absl::InvalidArgumentError("auction_match: xyz1 or xyz2 contains NaN or Inf"));
    const std::size_t ws_size = differ::auction_match_workspace(n);
    ParallelFor(ctx, b, 500 * static_cast<std::int64_t>(n) * n, [&](std::int64_t begin, std::int64_t end) {
      std::vector<float> ws(ws_size);
      for (std::int64_t k = begin; k < end; ++k)
        differ::auction_match(n, x1 + k * 3 * n, x2 + k * 3 * n, tol, ml + k * n, mr + k * n, ws.data());
    });
  }
};

REGISTER_KERNEL_BUILDER(Name("DifferAuctionMatch").Device(DEVICE_CPU), AuctionMatchOp<CPUDevice>);

#if GOOGLE_CUDA
template <>
struct LaunchAuctionMatch<GPUDevice> {
  static void Run(OpKernelContext* ctx, int b, int n, const float* x1, const float* x2, float tol, int* ml, int* mr) {
    Tensor temp;
    const std::int64_t bytes = static_cast<std::int64_t>(differ_auction_match_temp_bytes(b, n));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_INT8, TensorShape({bytes}), &temp));
    // The GPU kernel cannot report NaN input; it returns the identity permutation for such a pair.
    OP_REQUIRES_OK(ctx, CudaStatus(kOp, differ_auction_match_launcher(b, n, x1, x2, tol, ml, mr,
                                                                      temp.flat<tensorflow::int8>().data(),
                                                                      ctx->eigen_gpu_device().stream())));
  }
};

REGISTER_KERNEL_BUILDER(Name("DifferAuctionMatch").Device(tensorflow::DEVICE_GPU), AuctionMatchOp<GPUDevice>);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace differ_tf
