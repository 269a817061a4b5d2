// TensorFlow op DifferAuctionMatch: registration, shape function, CPU kernel
// (one batch item per work unit on TensorFlow's thread pool) and, with
// GOOGLE_CUDA, a GPU kernel calling the launcher of auction_match.cu.
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

class AuctionMatchCpuOp : public OpKernel {
 public:
  explicit AuctionMatchCpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("rel_tol", &rel_tol_));
    OP_REQUIRES(ctx, rel_tol_ >= 0.f, absl::InvalidArgumentError("auction_match: rel_tol must be >= 0"));
  }

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckAuctionInputs(ctx));
    const Tensor& t1 = ctx->input(0);
    const Tensor& t2 = ctx->input(1);
    const int b = static_cast<int>(t1.dim_size(0));
    const int n = static_cast<int>(t1.dim_size(1));
    const float* x1 = t1.flat<float>().data();
    const float* x2 = t2.flat<float>().data();
    // Non-finite coordinates have no meaningful assignment (and would stall the auction).
    OP_REQUIRES(ctx, AllFinite(x1, t1.NumElements()) && AllFinite(x2, t2.NumElements()),
                absl::InvalidArgumentError("auction_match: xyz1 or xyz2 contains NaN or Inf"));
    Tensor *l, *r;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({b, n}), &l));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({b, n}), &r));
    int* ml = l->flat<int>().data();
    int* mr = r->flat<int>().data();
    const std::size_t ws_size = differ::auction_match_workspace(n);
    const float tol = rel_tol_;
    ParallelFor(ctx, b, 500 * static_cast<std::int64_t>(n) * n, [&](std::int64_t begin, std::int64_t end) {
      std::vector<float> ws(ws_size);
      for (std::int64_t k = begin; k < end; ++k)
        differ::auction_match(n, x1 + k * 3 * n, x2 + k * 3 * n, tol, ml + k * n, mr + k * n, ws.data());
    });
  }

 private:
  float rel_tol_;
};

REGISTER_KERNEL_BUILDER(Name("DifferAuctionMatch").Device(DEVICE_CPU), AuctionMatchCpuOp);

#if GOOGLE_CUDA
class AuctionMatchGpuOp : public OpKernel {
 public:
  explicit AuctionMatchGpuOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("rel_tol", &rel_tol_));
    OP_REQUIRES(ctx, rel_tol_ >= 0.f, absl::InvalidArgumentError("auction_match: rel_tol must be >= 0"));
  }

  void Compute(OpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, CheckAuctionInputs(ctx));
    const Tensor& t1 = ctx->input(0);
    const Tensor& t2 = ctx->input(1);
    const int b = static_cast<int>(t1.dim_size(0));
    const int n = static_cast<int>(t1.dim_size(1));
    Tensor *l, *r, temp;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({b, n}), &l));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({b, n}), &r));
    if (b == 0) return;
    const std::int64_t bytes = static_cast<std::int64_t>(differ_auction_match_temp_bytes(b, n));
    OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_INT8, TensorShape({bytes}), &temp));
    // The GPU kernel cannot report NaN input; it returns the identity permutation for such a pair.
    const char* err = differ_auction_match_launcher(b, n, t1.flat<float>().data(), t2.flat<float>().data(),
                                                    rel_tol_, l->flat<int>().data(), r->flat<int>().data(),
                                                    temp.flat<tensorflow::int8>().data(),
                                                    ctx->eigen_gpu_device().stream());
    OP_REQUIRES(ctx, err == nullptr, absl::InternalError(absl::StrCat(kOp, ": CUDA error: ", err ? err : "")));
  }

 private:
  float rel_tol_;
};

REGISTER_KERNEL_BUILDER(Name("DifferAuctionMatch").Device(tensorflow::DEVICE_GPU), AuctionMatchGpuOp);
#endif  // GOOGLE_CUDA

}  // namespace
}  // namespace differ_tf
