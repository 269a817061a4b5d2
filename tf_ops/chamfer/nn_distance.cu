// CUDA kernels of nn_distance (framework-free; C launchers in launchers.h).
//
// Forward: one thread per query point; the reference cloud is streamed through
// shared memory in tiles, so each block reads it from global memory once.
// Backward: one thread per point, scattering into the other cloud's gradient
// with atomicAdd (several points may share a nearest neighbour).
#include <cuda_runtime.h>

#include "launchers.h"

namespace {

constexpr int kThreads = 256;
constexpr int kTile = 1024;  // reference points per shared-memory tile (12 KiB)
constexpr int kMaxGridY = 65535;

__global__ void nn_search_kernel(int b, int n, const float* __restrict__ q, int m,
                                 const float* __restrict__ r, float* __restrict__ dist,
                                 int* __restrict__ idx) {
  __shared__ float tile[kTile * 3];
  for (int bi = blockIdx.y; bi < b; bi += gridDim.y) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool valid = i < n;
    const float* qb = q + (static_cast<size_t>(bi) * n) * 3;
    const float* rb = r + (static_cast<size_t>(bi) * m) * 3;
    float x = 0.f, y = 0.f, z = 0.f;
    if (valid) {
      x = qb[3 * i];
      y = qb[3 * i + 1];
      z = qb[3 * i + 2];
    }
    float best = __int_as_float(0x7f800000);  // +inf
    int best_j = 0;
    for (int j0 = 0; j0 < m; j0 += kTile) {
      const int count = min(kTile, m - j0);
      __syncthreads();  // the previous tile is no longer read
      for (int t = threadIdx.x; t < 3 * count; t += blockDim.x) tile[t] = rb[3 * j0 + t];
      __syncthreads();
      if (valid) {
        for (int j = 0; j < count; ++j) {
          const float dx = tile[3 * j] - x, dy = tile[3 * j + 1] - y, dz = tile[3 * j + 2] - z;
          const float d = dx * dx + dy * dy + dz * dz;
          if (d < best) {  // strict: the smallest index wins exact ties
            best = d;
            best_j = j0 + j;
          }
        }
      }
    }
    if (valid) {
      dist[static_cast<size_t>(bi) * n + i] = best;
      idx[static_cast<size_t>(bi) * n + i] = best_j;
    }
  }
}

// For every point p of cloud `a` with nearest neighbour q = b[idx[p]]:
// grad_a[p] += 2 g (p - q), grad_b[idx[p]] -= 2 g (p - q).
__global__ void nn_grad_kernel(int batch, int n, const float* __restrict__ a, int m,
                               const float* __restrict__ bcloud, const float* __restrict__ grad_dist,
                               const int* __restrict__ idx, float* grad_a, float* grad_b) {
  const size_t total = static_cast<size_t>(batch) * n;
  for (size_t t = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; t < total;
       t += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t bi = t / n;
    const int j = idx[t];
    const float g = 2.f * grad_dist[t];
    const float* p = a + 3 * t;
    const float* q = bcloud + 3 * (bi * m + j);
    float* ga = grad_a + 3 * t;
    float* gb = grad_b + 3 * (bi * m + j);
    for (int c = 0; c < 3; ++c) {
      const float v = g * (p[c] - q[c]);
      atomicAdd(ga + c, v);  // ga is also a scatter target of the other direction
      atomicAdd(gb + c, -v);
    }
  }
}

inline dim3 search_grid(int b, int n) { return dim3((n + kThreads - 1) / kThreads, b < kMaxGridY ? b : kMaxGridY); }

inline int grid_1d(size_t total) {
  const size_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

inline const char* last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace

extern "C" const char* differ_nn_distance_launcher(int b, int n, const float* xyz1, int m, const float* xyz2,
                                                   float* dist1, int* idx1, float* dist2, int* idx2,
                                                   void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  nn_search_kernel<<<search_grid(b, n), kThreads, 0, s>>>(b, n, xyz1, m, xyz2, dist1, idx1);
  nn_search_kernel<<<search_grid(b, m), kThreads, 0, s>>>(b, m, xyz2, n, xyz1, dist2, idx2);
  return last_error();
}

extern "C" const char* differ_nn_distance_grad_launcher(int b, int n, const float* xyz1, int m,
                                                        const float* xyz2, const float* grad_dist1,
                                                        const int* idx1, const float* grad_dist2,
                                                        const int* idx2, float* grad_xyz1, float* grad_xyz2,
                                                        void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaMemsetAsync(grad_xyz1, 0, sizeof(float) * 3 * static_cast<size_t>(b) * n, s);
  cudaMemsetAsync(grad_xyz2, 0, sizeof(float) * 3 * static_cast<size_t>(b) * m, s);
  nn_grad_kernel<<<grid_1d(static_cast<size_t>(b) * n), kThreads, 0, s>>>(b, n, xyz1, m, xyz2, grad_dist1, idx1,
                                                                          grad_xyz1, grad_xyz2);
  nn_grad_kernel<<<grid_1d(static_cast<size_t>(b) * m), kThreads, 0, s>>>(b, m, xyz2, n, xyz1, grad_dist2, idx2,
                                                                          grad_xyz2, grad_xyz1);
  return last_error();
}
