// Host-pointer wrappers around the CUDA launchers, for tf_ops/check_gpu.py
// (ctypes). Not part of the TensorFlow op library. Each wrapper copies its
// inputs to the device, runs the launcher once to warm up and `reps` more times
// under CUDA events (average milliseconds into *ms), copies the outputs back
// and returns NULL or an error message.
#include <cuda_runtime.h>

#include <cstring>
#include <vector>

#include "launchers.h"

namespace {

struct DeviceBuffers {
  std::vector<void*> ptrs;
  ~DeviceBuffers() {
    for (void* p : ptrs) cudaFree(p);
  }
  template <typename T>
  T* alloc(size_t count) {
    void* p = nullptr;
    if (cudaMalloc(&p, count * sizeof(T) + 16) != cudaSuccess) return nullptr;
    ptrs.push_back(p);
    return static_cast<T*>(p);
  }
  template <typename T>
  T* upload(const T* host, size_t count) {
    T* d = alloc<T>(count);
    if (d) cudaMemcpy(d, host, count * sizeof(T), cudaMemcpyHostToDevice);
    return d;
  }
};

#define DIFFER_CHECK(expr)                                  \
  do {                                                      \
    const cudaError_t e_ = (expr);                          \
    if (e_ != cudaSuccess) return cudaGetErrorString(e_);   \
  } while (0)
#define DIFFER_CHECK_PTR(p) \
  if (!(p)) return "cudaMalloc failed"
#define DIFFER_CHECK_MSG(m)        \
  do {                             \
    const char* m_ = (m);          \
    if (m_) return m_;             \
  } while (0)

// Runs f() once, then reps times between two events; *ms = mean time per run.
template <typename F>
const char* timed(F f, int reps, float* ms) {
  DIFFER_CHECK_MSG(f());
  DIFFER_CHECK(cudaDeviceSynchronize());
  cudaEvent_t a, b;
  DIFFER_CHECK(cudaEventCreate(&a));
  DIFFER_CHECK(cudaEventCreate(&b));
  cudaEventRecord(a);
  for (int r = 0; r < reps; ++r) DIFFER_CHECK_MSG(f());
  cudaEventRecord(b);
  DIFFER_CHECK(cudaEventSynchronize(b));
  float total = 0.f;
  cudaEventElapsedTime(&total, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  *ms = reps > 0 ? total / reps : 0.f;
  return nullptr;
}

}  // namespace

extern "C" const char* differ_gpu_name(char* out, int len) {
  int count = 0;
  DIFFER_CHECK(cudaGetDeviceCount(&count));
  if (count < 1) return "no CUDA device";
  cudaDeviceProp prop;
  DIFFER_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::strncpy(out, prop.name, len - 1);
  out[len - 1] = '\0';
  return nullptr;
}

extern "C" const char* differ_host_nn_distance(int b, int n, const float* xyz1, int m, const float* xyz2,
                                               float* dist1, int* idx1, float* dist2, int* idx2, int reps,
                                               float* ms) {
  DeviceBuffers buf;
  const float* d1 = buf.upload(xyz1, 3 * static_cast<size_t>(b) * n);
  const float* d2 = buf.upload(xyz2, 3 * static_cast<size_t>(b) * m);
  float* o1 = buf.alloc<float>(static_cast<size_t>(b) * n);
  float* o2 = buf.alloc<float>(static_cast<size_t>(b) * m);
  int* i1 = buf.alloc<int>(static_cast<size_t>(b) * n);
  int* i2 = buf.alloc<int>(static_cast<size_t>(b) * m);
  DIFFER_CHECK_PTR(d1 && d2 && o1 && o2 && i1 && i2);
  DIFFER_CHECK_MSG(timed([&] { return differ_nn_distance_launcher(b, n, d1, m, d2, o1, i1, o2, i2, nullptr); },
                         reps, ms));
  DIFFER_CHECK(cudaMemcpy(dist1, o1, sizeof(float) * b * n, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(idx1, i1, sizeof(int) * b * n, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(dist2, o2, sizeof(float) * b * m, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(idx2, i2, sizeof(int) * b * m, cudaMemcpyDeviceToHost));
  return nullptr;
}

extern "C" const char* differ_host_nn_distance_grad(int b, int n, const float* xyz1, int m, const float* xyz2,
                                                    const float* grad_dist1, const int* idx1,
                                                    const float* grad_dist2, const int* idx2, float* grad1,
                                                    float* grad2, int reps, float* ms) {
  DeviceBuffers buf;
  const float* d1 = buf.upload(xyz1, 3 * static_cast<size_t>(b) * n);
  const float* d2 = buf.upload(xyz2, 3 * static_cast<size_t>(b) * m);
  const float* g1 = buf.upload(grad_dist1, static_cast<size_t>(b) * n);
  const float* g2 = buf.upload(grad_dist2, static_cast<size_t>(b) * m);
  const int* i1 = buf.upload(idx1, static_cast<size_t>(b) * n);
  const int* i2 = buf.upload(idx2, static_cast<size_t>(b) * m);
  float* o1 = buf.alloc<float>(3 * static_cast<size_t>(b) * n);
  float* o2 = buf.alloc<float>(3 * static_cast<size_t>(b) * m);
  DIFFER_CHECK_PTR(d1 && d2 && g1 && g2 && i1 && i2 && o1 && o2);
  DIFFER_CHECK_MSG(timed(
      [&] { return differ_nn_distance_grad_launcher(b, n, d1, m, d2, g1, i1, g2, i2, o1, o2, nullptr); }, reps,
      ms));
  DIFFER_CHECK(cudaMemcpy(grad1, o1, sizeof(float) * 3 * b * n, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(grad2, o2, sizeof(float) * 3 * b * m, cudaMemcpyDeviceToHost));
  return nullptr;
}

extern "C" const char* differ_host_approx_match(int b, int n, int m, const float* xyz1, const float* xyz2,
                                                float* match, float* cost, float* grad1, float* grad2, int reps,
                                                float* ms_match, float* ms_cost, float* ms_grad) {
  DeviceBuffers buf;
  const size_t nm = static_cast<size_t>(b) * n * m;
  const float* d1 = buf.upload(xyz1, 3 * static_cast<size_t>(b) * n);
  const float* d2 = buf.upload(xyz2, 3 * static_cast<size_t>(b) * m);
  float* dm = buf.alloc<float>(nm);
  float* temp = buf.alloc<float>(differ_approx_match_temp_floats(b, n, m));
  float* dc = buf.alloc<float>(b);
  float* ones = buf.alloc<float>(b);
  float* o1 = buf.alloc<float>(3 * static_cast<size_t>(b) * n);
  float* o2 = buf.alloc<float>(3 * static_cast<size_t>(b) * m);
  DIFFER_CHECK_PTR(d1 && d2 && dm && temp && dc && ones && o1 && o2);
  std::vector<float> h_ones(b, 1.f);
  DIFFER_CHECK(cudaMemcpy(ones, h_ones.data(), sizeof(float) * b, cudaMemcpyHostToDevice));
  DIFFER_CHECK_MSG(
      timed([&] { return differ_approx_match_launcher(b, n, m, d1, d2, dm, temp, nullptr); }, reps, ms_match));
  DIFFER_CHECK_MSG(timed([&] { return differ_match_cost_launcher(b, n, m, d1, d2, dm, dc, nullptr); }, reps, ms_cost));
  DIFFER_CHECK_MSG(timed([&] { return differ_match_cost_grad_launcher(b, n, m, d1, d2, dm, ones, o1, o2, nullptr); },
                         reps, ms_grad));
  DIFFER_CHECK(cudaMemcpy(match, dm, sizeof(float) * nm, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(cost, dc, sizeof(float) * b, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(grad1, o1, sizeof(float) * 3 * b * n, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(grad2, o2, sizeof(float) * 3 * b * m, cudaMemcpyDeviceToHost));
  return nullptr;
}

extern "C" const char* differ_host_auction_match(int b, int n, const float* xyz1, const float* xyz2, float rel_tol,
                                                 int* matchl, int* matchr, int reps, float* ms) {
  DeviceBuffers buf;
  const float* d1 = buf.upload(xyz1, 3 * static_cast<size_t>(b) * n);
  const float* d2 = buf.upload(xyz2, 3 * static_cast<size_t>(b) * n);
  int* l = buf.alloc<int>(static_cast<size_t>(b) * n);
  int* r = buf.alloc<int>(static_cast<size_t>(b) * n);
  void* temp = buf.alloc<char>(differ_auction_match_temp_bytes(b, n));
  DIFFER_CHECK_PTR(d1 && d2 && l && r && temp);
  DIFFER_CHECK_MSG(
      timed([&] { return differ_auction_match_launcher(b, n, d1, d2, rel_tol, l, r, temp, nullptr); }, reps, ms));
  DIFFER_CHECK(cudaMemcpy(matchl, l, sizeof(int) * b * n, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(matchr, r, sizeof(int) * b * n, cudaMemcpyDeviceToHost));
  return nullptr;
}

extern "C" const char* differ_host_projection(int b, int n, int c, const float* pix, const float* feat, int h, int w,
                                              float sigma_sq, int half_mask, float radius, int half_well, float beta,
                                              const float* grad_mask, const float* grad_map, float* mask,
                                              float* feat_map, float* coverage, float* grad_pix_mask,
                                              float* grad_pix_feat, float* grad_feat, int reps, float* ms_mask,
                                              float* ms_mask_grad, float* ms_feat, float* ms_feat_grad) {
  DeviceBuffers buf;
  const size_t pts = static_cast<size_t>(b) * n, pixels = static_cast<size_t>(b) * h * w;
  const float* d_pix = buf.upload(pix, 3 * pts);
  const float* d_feat = buf.upload(feat, pts * c);
  const float* d_gm = buf.upload(grad_mask, pixels);
  const float* d_gf = buf.upload(grad_map, pixels * c);
  float* d_mask = buf.alloc<float>(pixels);
  float* d_fmap = buf.alloc<float>(pixels * c);
  float* d_cov = buf.alloc<float>(pixels);
  float* d_stats = buf.alloc<float>(2 * pixels);
  float* d_gpm = buf.alloc<float>(3 * pts);
  float* d_gpf = buf.alloc<float>(3 * pts);
  float* d_gfe = buf.alloc<float>(pts * c);
  DIFFER_CHECK_PTR(d_pix && d_feat && d_gm && d_gf && d_mask && d_fmap && d_cov && d_stats && d_gpm && d_gpf && d_gfe);
  DIFFER_CHECK_MSG(timed(
      [&] { return differ_mask_projection_launcher(b, n, d_pix, h, w, sigma_sq, half_mask, d_mask, nullptr); }, reps,
      ms_mask));
  DIFFER_CHECK_MSG(timed([&] {
    return differ_mask_projection_grad_launcher(b, n, d_pix, h, w, sigma_sq, half_mask, d_mask, d_gm, d_gpm, nullptr);
  }, reps, ms_mask_grad));
  DIFFER_CHECK_MSG(timed([&] {
    return differ_feature_projection_launcher(b, n, c, d_pix, d_feat, h, w, radius, half_well, beta, d_fmap, d_cov,
                                              d_stats, nullptr);
  }, reps, ms_feat));
  DIFFER_CHECK_MSG(timed([&] {
    return differ_feature_projection_grad_launcher(b, n, c, d_pix, d_feat, h, w, radius, half_well, beta, d_fmap,
                                                   d_stats, d_gf, d_gpf, d_gfe, nullptr);
  }, reps, ms_feat_grad));
  DIFFER_CHECK(cudaMemcpy(mask, d_mask, sizeof(float) * pixels, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(feat_map, d_fmap, sizeof(float) * pixels * c, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(coverage, d_cov, sizeof(float) * pixels, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(grad_pix_mask, d_gpm, sizeof(float) * 3 * pts, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(grad_pix_feat, d_gpf, sizeof(float) * 3 * pts, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(grad_feat, d_gfe, sizeof(float) * pts * c, cudaMemcpyDeviceToHost));
  return nullptr;
}

extern "C" const char* differ_host_pixel_nearest(int b, int n, int dim, const float* pts, int h, int w,
                                                 const float* query, double max_dist_sq, const float* grad_dist,
                                                 int* idx, float* dist, float* grad_pts, int reps, float* ms,
                                                 float* ms_grad) {
  DeviceBuffers buf;
  const size_t pixels = static_cast<size_t>(b) * h * w;
  const float* d_pts = buf.upload(pts, static_cast<size_t>(b) * n * dim);
  const float* d_query = buf.upload(query, pixels);
  const float* d_gd = buf.upload(grad_dist, pixels);
  int* d_idx = buf.alloc<int>(pixels);
  float* d_dist = buf.alloc<float>(pixels);
  float* d_grad = buf.alloc<float>(static_cast<size_t>(b) * n * dim);
  void* temp = buf.alloc<char>(differ_pixel_nearest_temp_bytes(b, n, h, w));
  DIFFER_CHECK_PTR(d_pts && d_query && d_gd && d_idx && d_dist && d_grad && temp);
  DIFFER_CHECK_MSG(timed([&] {
    return differ_pixel_nearest_launcher(b, n, dim, d_pts, h, w, d_query, max_dist_sq, d_idx, d_dist, temp, nullptr);
  }, reps, ms));
  DIFFER_CHECK_MSG(timed(
      [&] { return differ_pixel_nearest_grad_launcher(b, n, dim, d_pts, h, w, d_idx, d_gd, d_grad, nullptr); }, reps,
      ms_grad));
  DIFFER_CHECK(cudaMemcpy(idx, d_idx, sizeof(int) * pixels, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(dist, d_dist, sizeof(float) * pixels, cudaMemcpyDeviceToHost));
  DIFFER_CHECK(cudaMemcpy(grad_pts, d_grad, sizeof(float) * b * n * dim, cudaMemcpyDeviceToHost));
  return nullptr;
}
