// CUDA kernels of the fused projections (framework-free; C launchers in
// launchers.h; definitions in kernels_cpu.h and raster_common.h, shared with
// the CPU kernels).
//
// Forward: one thread per (point, window pixel), scattering into the image with
// atomicAdd (mask) or atomicMax / atomicAdd (features: per-pixel maximum logit,
// then the softmax sums), then one thread per pixel to finish (tanh; divide).
// Backward: one thread per point gathering over its window (no atomics).
#include <cuda_runtime.h>

#include "launchers.h"
#include "raster_common.h"

namespace {

using differ::raster::axis_window;

constexpr int kThreads = 256;

inline int grid_for(size_t total) {
  const size_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 8192 ? (blocks > 0 ? blocks : 1) : 8192);
}

inline const char* last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

#define DIFFER_GRID_STRIDE(t, total) \
  for (size_t t = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; t < (total); \
       t += static_cast<size_t>(gridDim.x) * blockDim.x)

// ------------------------------------------------------------------- mask
__global__ void mask_splat_kernel(int b, int n, const float* __restrict__ pix, int h, int w, float two_s, int half,
                                  float* sum) {
  const int k = 2 * half + 1;
  const size_t total = static_cast<size_t>(b) * n * k * k;
  DIFFER_GRID_STRIDE(t, total) {
    const size_t pt = t / (k * k);
    const int entry = static_cast<int>(t % (k * k));
    const float r = pix[3 * pt], c = pix[3 * pt + 1];
    int r_lo, r_hi, c_lo, c_hi;
    axis_window(r, false, half, h, &r_lo, &r_hi);
    axis_window(c, false, half, w, &c_lo, &c_hi);
    const int pr = r_lo + entry / k, pc = c_lo + entry % k;
    if (pr > r_hi || pc > c_hi) continue;
    const float v = differ::raster::gaussian(static_cast<float>(pr) - r, two_s) *
                    differ::raster::gaussian(static_cast<float>(pc) - c, two_s);
    atomicAdd(sum + (pt / n) * h * w + static_cast<size_t>(pr) * w + pc, v);
  }
}

__global__ void tanh_kernel(size_t total, float* x) {
  DIFFER_GRID_STRIDE(t, total) x[t] = tanhf(x[t]);
}

__global__ void mask_grad_kernel(int b, int n, const float* __restrict__ pix, int h, int w, float sigma_sq, int half,
                                 const float* __restrict__ mask, const float* __restrict__ grad_mask,
                                 float* __restrict__ grad_pix) {
  const float two_s = 2.f * sigma_sq;
  DIFFER_GRID_STRIDE(pt, static_cast<size_t>(b) * n) {
    const float r = pix[3 * pt], c = pix[3 * pt + 1];
    const float* m = mask + (pt / n) * h * w;
    const float* g = grad_mask + (pt / n) * h * w;
    int r_lo, r_hi, c_lo, c_hi;
    axis_window(r, false, half, h, &r_lo, &r_hi);
    axis_window(c, false, half, w, &c_lo, &c_hi);
    float g_r = 0.f, g_c = 0.f;
    for (int pr = r_lo; pr <= r_hi && c_lo <= c_hi; ++pr) {
      const float dr = static_cast<float>(pr) - r;
      const float gr = differ::raster::gaussian(dr, two_s);
      float s = 0.f, s_c = 0.f;
      for (int pc = c_lo; pc <= c_hi; ++pc) {
        const size_t p = static_cast<size_t>(pr) * w + pc;
        const float dc = static_cast<float>(pc) - c;
        const float a = g[p] * (1.f - m[p] * m[p]) * differ::raster::gaussian(dc, two_s);
        s += a;
        s_c += a * dc;
      }
      g_r += gr * dr * s;
      g_c += gr * s_c;
    }
    grad_pix[3 * pt] = g_r / sigma_sq;
    grad_pix[3 * pt + 1] = g_c / sigma_sq;
    grad_pix[3 * pt + 2] = 0.f;
  }
}

// --------------------------------------------------------------- features
// Order-preserving map float -> int (for atomicMax on float logits) and back.
__device__ __forceinline__ int float_to_ordered(float f) {
  const int i = __float_as_int(f);
  return i >= 0 ? i : i ^ 0x7fffffff;
}
__device__ __forceinline__ float ordered_to_float(int i) { return __int_as_float(i >= 0 ? i : i ^ 0x7fffffff); }

// Pixel (pr, pc) of window entry `entry` of point pt when it lies in the point's
// well and the image; false otherwise.
__device__ __forceinline__ bool well_pixel(float r, float c, float radius, int half, int h, int w, int entry,
                                           int* pr, int* pc) {
  const int k = 2 * half + 1;
  int r_lo, r_hi, c_lo, c_hi;
  axis_window(r, true, half, h, &r_lo, &r_hi);
  axis_window(c, true, half, w, &c_lo, &c_hi);
  *pr = r_lo + entry / k;
  *pc = c_lo + entry % k;
  if (*pr > r_hi || *pc > c_hi) return false;
  return fabsf(static_cast<float>(*pr) - r) <= radius && fabsf(static_cast<float>(*pc) - c) <= radius;
}

__global__ void feat_init_kernel(size_t pixels, float* stats) {
  int* enc = reinterpret_cast<int*>(stats);
  DIFFER_GRID_STRIDE(p, pixels) {
    enc[2 * p] = float_to_ordered(-3.402823466e38f);  // lowest float: no point yet
    stats[2 * p + 1] = 0.f;
  }
}

__global__ void feat_max_kernel(int b, int n, const float* __restrict__ pix, int h, int w, float radius, int half,
                                float beta, float* stats) {
  int* enc = reinterpret_cast<int*>(stats);
  const int k = 2 * half + 1;
  DIFFER_GRID_STRIDE(t, static_cast<size_t>(b) * n * k * k) {
    const size_t pt = t / (k * k);
    const float z = differ::raster::well_logit(pix[3 * pt + 2], beta);
    int pr, pc;
    if (!isfinite(z) || !well_pixel(pix[3 * pt], pix[3 * pt + 1], radius, half, h, w, static_cast<int>(t % (k * k)),
                                    &pr, &pc))
      continue;
    atomicMax(enc + 2 * ((pt / n) * h * w + static_cast<size_t>(pr) * w + pc), float_to_ordered(z));
  }
}

__global__ void feat_sum_kernel(int b, int n, int nc, const float* __restrict__ pix, const float* __restrict__ feat,
                                int h, int w, float radius, int half, float beta, float* stats, float* feat_map) {
  const int* enc = reinterpret_cast<const int*>(stats);
  const int k = 2 * half + 1;
  DIFFER_GRID_STRIDE(t, static_cast<size_t>(b) * n * k * k) {
    const size_t pt = t / (k * k);
    const float z = differ::raster::well_logit(pix[3 * pt + 2], beta);
    int pr, pc;
    if (!isfinite(z) || !well_pixel(pix[3 * pt], pix[3 * pt + 1], radius, half, h, w, static_cast<int>(t % (k * k)),
                                    &pr, &pc))
      continue;
    const size_t p = (pt / n) * h * w + static_cast<size_t>(pr) * w + pc;
    const float e = expf(z - ordered_to_float(enc[2 * p]));
    atomicAdd(stats + 2 * p + 1, e);
    for (int ch = 0; ch < nc; ++ch) atomicAdd(feat_map + p * nc + ch, e * feat[pt * nc + ch]);
  }
}

__global__ void feat_finish_kernel(size_t pixels, int nc, float* stats, float* feat_map, float* coverage) {
  DIFFER_GRID_STRIDE(p, pixels) {
    const float m = ordered_to_float(reinterpret_cast<const int*>(stats)[2 * p]);
    stats[2 * p] = m;
    const float den = stats[2 * p + 1];
    const bool covered = den > 0.5f;
    coverage[p] = covered ? 1.f : 0.f;
    if (covered) {
      const float inv = 1.f / den;
      stats[2 * p + 1] = inv;  // kept for the gradient: softmax weight = e * inv
      for (int ch = 0; ch < nc; ++ch) feat_map[p * nc + ch] *= inv;
    }
  }
}

__global__ void feat_grad_kernel(int b, int n, int nc, const float* __restrict__ pix, const float* __restrict__ feat,
                                 int h, int w, float radius, int half, float beta, const float* __restrict__ feat_map,
                                 const float* __restrict__ stats, const float* __restrict__ grad_map,
                                 float* __restrict__ grad_pix, float* __restrict__ grad_feat) {
  const int k = 2 * half + 1;
  DIFFER_GRID_STRIDE(pt, static_cast<size_t>(b) * n) {
    const float depth = pix[3 * pt + 2];
    const float z = differ::raster::well_logit(depth, beta);
    const float* f = feat + pt * nc;
    float* gf = grad_feat + pt * nc;
    for (int ch = 0; ch < nc; ++ch) gf[ch] = 0.f;
    float g_z = 0.f;
    for (int entry = 0; entry < k * k && isfinite(z); ++entry) {
      int pr, pc;
      if (!well_pixel(pix[3 * pt], pix[3 * pt + 1], radius, half, h, w, entry, &pr, &pc)) continue;
      const size_t p = (pt / n) * h * w + static_cast<size_t>(pr) * w + pc;
      const float weight = expf(z - stats[2 * p]) * stats[2 * p + 1];
      float dot = 0.f;
      for (int ch = 0; ch < nc; ++ch) {
        const float g = grad_map[p * nc + ch];
        gf[ch] += weight * g;
        dot += g * (f[ch] - feat_map[p * nc + ch]);
      }
      g_z += weight * dot;
    }
    grad_pix[3 * pt] = 0.f;
    grad_pix[3 * pt + 1] = 0.f;
    grad_pix[3 * pt + 2] = g_z == 0.f ? 0.f : g_z * differ::raster::well_logit_grad(depth, beta);
  }
}

}  // namespace

extern "C" const char* differ_mask_projection_launcher(int b, int n, const float* pix, int h, int w, float sigma_sq,
                                                       int half, float* mask, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const size_t pixels = static_cast<size_t>(b) * h * w;
  cudaMemsetAsync(mask, 0, sizeof(float) * pixels, s);
  const size_t entries = static_cast<size_t>(b) * n * (2 * half + 1) * (2 * half + 1);
  if (entries > 0) mask_splat_kernel<<<grid_for(entries), kThreads, 0, s>>>(b, n, pix, h, w, 2.f * sigma_sq, half, mask);
  tanh_kernel<<<grid_for(pixels), kThreads, 0, s>>>(pixels, mask);
  return last_error();
}

extern "C" const char* differ_mask_projection_grad_launcher(int b, int n, const float* pix, int h, int w,
                                                            float sigma_sq, int half, const float* mask,
                                                            const float* grad_mask, float* grad_pix, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const size_t points = static_cast<size_t>(b) * n;
  if (points > 0)
    mask_grad_kernel<<<grid_for(points), kThreads, 0, s>>>(b, n, pix, h, w, sigma_sq, half, mask, grad_mask, grad_pix);
  return last_error();
}

extern "C" const char* differ_feature_projection_launcher(int b, int n, int c, const float* pix, const float* feat,
                                                          int h, int w, float radius, int half, float beta,
                                                          float* feat_map, float* coverage, float* stats,
                                                          void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const size_t pixels = static_cast<size_t>(b) * h * w;
  const size_t entries = static_cast<size_t>(b) * n * (2 * half + 1) * (2 * half + 1);
  cudaMemsetAsync(feat_map, 0, sizeof(float) * pixels * c, s);
  feat_init_kernel<<<grid_for(pixels), kThreads, 0, s>>>(pixels, stats);
  if (entries > 0) {
    feat_max_kernel<<<grid_for(entries), kThreads, 0, s>>>(b, n, pix, h, w, radius, half, beta, stats);
    feat_sum_kernel<<<grid_for(entries), kThreads, 0, s>>>(b, n, c, pix, feat, h, w, radius, half, beta, stats,
                                                           feat_map);
  }
  feat_finish_kernel<<<grid_for(pixels), kThreads, 0, s>>>(pixels, c, stats, feat_map, coverage);
  return last_error();
}

extern "C" const char* differ_feature_projection_grad_launcher(int b, int n, int c, const float* pix,
                                                               const float* feat, int h, int w, float radius,
                                                               int half, float beta, const float* feat_map,
                                                               const float* stats, const float* grad_map,
                                                               float* grad_pix, float* grad_feat, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const size_t points = static_cast<size_t>(b) * n;
  if (points > 0)
    feat_grad_kernel<<<grid_for(points), kThreads, 0, s>>>(b, n, c, pix, feat, h, w, radius, half, beta, feat_map,
                                                           stats, grad_map, grad_pix, grad_feat);
  return last_error();
}
