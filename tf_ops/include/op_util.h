// Shared pieces of the TensorFlow op wrappers (*_op.cc, which include this header
// FIRST): the GPU set-up and the headers every wrapper needs, input checks with
// clear messages (shape functions and kernels), the device tags of the kernel
// templates, CUDA errors as a Status, and CPU sharding.
#ifndef DIFFER_TF_OPS_OP_UTIL_H_
#define DIFFER_TF_OPS_OP_UTIL_H_

#if GOOGLE_CUDA && !defined(EIGEN_USE_GPU)
#define EIGEN_USE_GPU  // before TensorFlow's headers: the GPU kernels use ctx->eigen_gpu_device()
#endif

#include <climits>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels_cpu.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/util/work_sharder.h"

#if GOOGLE_CUDA
#include "launchers.h"
#endif

namespace differ_tf {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::TensorShape;

using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// ---- shape functions (graph construction time; unknown dimensions pass)

// `input` must be (B, N, 3); *shape receives it.
inline absl::Status CloudShape(InferenceContext* c, int input, const char* op, const char* name,
                               ShapeHandle* shape) {
  if (!c->WithRank(c->input(input), 3, shape).ok())
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": ", name, " must be a point cloud of shape (batch, points, 3), got rank ",
        c->Rank(c->input(input))));
  DimensionHandle last = c->Dim(*shape, 2);
  if (c->ValueKnown(last) && c->Value(last) != 3)
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": ", name, " must have 3 coordinates in its last dimension, got ", c->Value(last)));
  DimensionHandle points = c->Dim(*shape, 1);
  if (c->ValueKnown(points) && c->Value(points) == 0)
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is an empty point cloud (0 points)"));
  return absl::OkStatus();
}

// Merges the batch dimensions of two clouds, with a clear error on mismatch.
inline absl::Status MergeBatch(InferenceContext* c, ShapeHandle s1, ShapeHandle s2, const char* op,
                               DimensionHandle* batch) {
  if (!c->Merge(c->Dim(s1, 0), c->Dim(s2, 0), batch).ok())
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": xyz1 and xyz2 must have the same batch size, got ", c->Value(c->Dim(s1, 0)), " and ",
        c->Value(c->Dim(s2, 0))));
  return absl::OkStatus();
}

// ---- kernels (run time: shapes are always known)

// Device tags. Each op has ONE OpKernel class template over the device (the usual TF pattern):
// its Compute checks the inputs and allocates the outputs for every device alike, then calls
// Launch<Op><Device>::Run, the device's part (CPU: the kernels of kernels_cpu.h on TF's thread
// pool; GPU, only under GOOGLE_CUDA: the C launchers of launchers.h on TF's stream).
struct CPUDevice {};
struct GPUDevice {};

// A CUDA launcher's result (nullptr or its error message) as a Status.
inline absl::Status CudaStatus(const char* op, const char* err) {
  return err == nullptr ? absl::OkStatus() : absl::InternalError(absl::StrCat(op, ": CUDA error: ", err));
}

inline absl::Status CheckCloud(const Tensor& t, const char* op, const char* name) {
  if (t.dims() != 3 || t.dim_size(2) != 3)
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": ", name, " must be a point cloud of shape (batch, points, 3), got ", t.shape().DebugString()));
  if (t.dim_size(1) == 0)
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is an empty point cloud (0 points)"));
  if (t.dim_size(1) > INT_MAX / 4 || t.dim_size(0) > INT_MAX)
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is too large: ", t.shape().DebugString()));
  return absl::OkStatus();
}

inline absl::Status CheckPair(const Tensor& a, const Tensor& b, const char* op) {
  absl::Status s = CheckCloud(a, op, "xyz1");
  if (s.ok()) s = CheckCloud(b, op, "xyz2");
  if (s.ok() && a.dim_size(0) != b.dim_size(0))
    s = absl::InvalidArgumentError(absl::StrCat(op, ": xyz1 and xyz2 must have the same batch size, got ",
                                                a.shape().DebugString(), " and ", b.shape().DebugString()));
  return s;
}

inline absl::Status CheckShape(const Tensor& t, const tensorflow::TensorShape& want, const char* op,
                               const char* name) {
  if (t.shape() != want)
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " must have shape ", want.DebugString(),
                                                   ", got ", t.shape().DebugString()));
  return absl::OkStatus();
}

inline bool AllFinite(const float* p, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i)
    if (!std::isfinite(p[i])) return false;
  return true;
}

// Runs work(begin, end) over [0, total) on TensorFlow's intra-op CPU pool.
// cost_per_unit: rough cycles per unit, used to decide how finely to split.
inline void ParallelFor(OpKernelContext* ctx, std::int64_t total, std::int64_t cost_per_unit,
                        const std::function<void(std::int64_t, std::int64_t)>& work) {
  auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
  tensorflow::Shard(threads->num_threads, threads->workers, total, cost_per_unit, work);
}

}  // namespace differ_tf

#endif  // DIFFER_TF_OPS_OP_UTIL_H_
