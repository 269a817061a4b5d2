// CUDA kernels of approx_match, match_cost and its gradient (framework-free;
// C launchers in launchers.h). Same algorithm and equations as
// approx_match_cpu.cc; each level is three kernels (xyz1-side ratios,
// xyz2-side ratios and capacities, mass transfer), one thread per point, the
// other cloud streamed through shared memory in tiles.
#include <cuda_runtime.h>

#include "launchers.h"

namespace {

constexpr int kThreads = 256;
constexpr int kTile = 1024;  // points per shared-memory tile
constexpr int kLevels = 10;
constexpr int kMaxGridY = 65535;

struct Temp {  // device scratch, per batch item: remainL, ratioL (n); remainR, ratioR (m)
  float *remainL, *ratioL, *remainR, *ratioR;
};

inline Temp split_temp(float* temp, int b, int n, int m) {
  Temp t;
  t.remainL = temp;
  t.ratioL = t.remainL + static_cast<size_t>(b) * n;
  t.remainR = t.ratioL + static_cast<size_t>(b) * n;
  t.ratioR = t.remainR + static_cast<size_t>(b) * m;
  return t;
}

__device__ inline float sqdist(float ax, float ay, float az, const float* p) {
  const float dx = p[0] - ax, dy = p[1] - ay, dz = p[2] - az;
  return dx * dx + dy * dy + dz * dz;
}

__global__ void init_kernel(int b, int n, int m, float multL, float multR, Temp t) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  const size_t start = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x;
  for (size_t i = start; i < static_cast<size_t>(b) * n; i += stride) t.remainL[i] = multL;
  for (size_t j = start; j < static_cast<size_t>(b) * m; j += stride) t.remainR[j] = multR;
}

// Loads tile [j0, j0+count) of cloud `c` (count x 3) plus one weight per point into shared memory.
__device__ inline void load_tile(float* tile, const float* c, const float* w, int j0, int count) {
  for (int t = threadIdx.x; t < count; t += blockDim.x) {
    tile[4 * t] = c[3 * (j0 + t)];
    tile[4 * t + 1] = c[3 * (j0 + t) + 1];
    tile[4 * t + 2] = c[3 * (j0 + t) + 2];
    tile[4 * t + 3] = w ? w[j0 + t] : 0.f;
  }
}

// Pass 1: ratioL[k] = remainL[k] / (1e-9 + sum_j exp(level d_kj) remainR[j]).
__global__ void ratio_l_kernel(int b, int n, int m, float level, const float* xyz1, const float* xyz2, Temp t) {
  __shared__ float tile[kTile * 4];
  for (int bi = blockIdx.y; bi < b; bi += gridDim.y) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    const bool valid = k < n;
    const float* p = xyz1 + 3 * (static_cast<size_t>(bi) * n + (valid ? k : 0));
    const float x = p[0], y = p[1], z = p[2];
    float s = 0.f;
    for (int j0 = 0; j0 < m; j0 += kTile) {
      const int count = min(kTile, m - j0);
      __syncthreads();
      load_tile(tile, xyz2 + 3 * static_cast<size_t>(bi) * m, t.remainR + static_cast<size_t>(bi) * m, j0, count);
      __syncthreads();
      for (int j = 0; j < count; ++j) s += expf(level * sqdist(x, y, z, tile + 4 * j)) * tile[4 * j + 3];
    }
    if (valid) {
      const size_t o = static_cast<size_t>(bi) * n + k;
      t.ratioL[o] = t.remainL[o] / (s + 1e-9f);
    }
  }
}

// Pass 2: demand on xyz2 point j, capped by its remaining capacity.
__global__ void ratio_r_kernel(int b, int n, int m, float level, const float* xyz1, const float* xyz2, Temp t) {
  __shared__ float tile[kTile * 4];
  for (int bi = blockIdx.y; bi < b; bi += gridDim.y) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const bool valid = j < m;
    const float* p = xyz2 + 3 * (static_cast<size_t>(bi) * m + (valid ? j : 0));
    const float x = p[0], y = p[1], z = p[2];
    float s = 0.f;
    for (int k0 = 0; k0 < n; k0 += kTile) {
      const int count = min(kTile, n - k0);
      __syncthreads();
      load_tile(tile, xyz1 + 3 * static_cast<size_t>(bi) * n, t.ratioL + static_cast<size_t>(bi) * n, k0, count);
      __syncthreads();
      for (int k = 0; k < count; ++k) s += expf(level * sqdist(x, y, z, tile + 4 * k)) * tile[4 * k + 3];
    }
    if (valid) {
      const size_t o = static_cast<size_t>(bi) * m + j;
      const float remain = t.remainR[o];
      const float demand = s * remain;
      const float accept = fminf(remain / (demand + 1e-9f), 1.f);
      t.ratioR[o] = accept * remain;
      t.remainR[o] = fmaxf(0.f, remain - demand);
    }
  }
}

// Pass 3: match[j,k] += exp(level d_kj) ratioL[k] ratioR[j]; remainL[k] -= what k gave.
__global__ void transfer_kernel(int b, int n, int m, float level, const float* xyz1, const float* xyz2, float* match,
                                Temp t) {
  __shared__ float tile[kTile * 4];
  for (int bi = blockIdx.y; bi < b; bi += gridDim.y) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    const bool valid = k < n;
    const size_t o = static_cast<size_t>(bi) * n + (valid ? k : 0);
    const float* p = xyz1 + 3 * o;
    const float x = p[0], y = p[1], z = p[2];
    const float rl = t.ratioL[o];
    float* mb = match + static_cast<size_t>(bi) * m * n;
    float given = 0.f;
    for (int j0 = 0; j0 < m; j0 += kTile) {
      const int count = min(kTile, m - j0);
      __syncthreads();
      load_tile(tile, xyz2 + 3 * static_cast<size_t>(bi) * m, t.ratioR + static_cast<size_t>(bi) * m, j0, count);
      __syncthreads();
      if (valid) {
        for (int j = 0; j < count; ++j) {
          const float w = expf(level * sqdist(x, y, z, tile + 4 * j)) * rl * tile[4 * j + 3];
          mb[static_cast<size_t>(j0 + j) * n + k] += w;  // coalesced over k
          given += w;
        }
      }
    }
    if (valid) t.remainL[o] = fmaxf(0.f, t.remainL[o] - given);
  }
}

// cost[bi] += sum over this block's k of sum_j match[j,k] |p_k - q_j|.
__global__ void cost_kernel(int b, int n, int m, const float* xyz1, const float* xyz2, const float* match,
                            float* cost) {
  __shared__ float tile[kTile * 4];
  __shared__ float partial[kThreads];
  for (int bi = blockIdx.y; bi < b; bi += gridDim.y) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    const bool valid = k < n;
    const float* p = xyz1 + 3 * (static_cast<size_t>(bi) * n + (valid ? k : 0));
    const float x = p[0], y = p[1], z = p[2];
    const float* mb = match + static_cast<size_t>(bi) * m * n;
    float s = 0.f;
    for (int j0 = 0; j0 < m; j0 += kTile) {
      const int count = min(kTile, m - j0);
      __syncthreads();
      load_tile(tile, xyz2 + 3 * static_cast<size_t>(bi) * m, nullptr, j0, count);
      __syncthreads();
      if (valid)
        for (int j = 0; j < count; ++j) s += mb[static_cast<size_t>(j0 + j) * n + k] * sqrtf(sqdist(x, y, z, tile + 4 * j));
    }
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h >>= 1) {
      if (threadIdx.x < h) partial[threadIdx.x] += partial[threadIdx.x + h];
      __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(cost + bi, partial[0]);
  }
}

// grad_xyz1[k] = g[bi] sum_j match[j,k] (p_k - q_j) / |p_k - q_j|.
__global__ void grad1_kernel(int b, int n, int m, const float* xyz1, const float* xyz2, const float* match,
                             const float* grad_cost, float* grad1) {
  __shared__ float tile[kTile * 4];
  for (int bi = blockIdx.y; bi < b; bi += gridDim.y) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    const bool valid = k < n;
    const size_t o = static_cast<size_t>(bi) * n + (valid ? k : 0);
    const float x = xyz1[3 * o], y = xyz1[3 * o + 1], z = xyz1[3 * o + 2];
    const float* mb = match + static_cast<size_t>(bi) * m * n;
    float gx = 0.f, gy = 0.f, gz = 0.f;
    for (int j0 = 0; j0 < m; j0 += kTile) {
      const int count = min(kTile, m - j0);
      __syncthreads();
      load_tile(tile, xyz2 + 3 * static_cast<size_t>(bi) * m, nullptr, j0, count);
      __syncthreads();
      if (valid) {
        for (int j = 0; j < count; ++j) {
          const float dx = x - tile[4 * j], dy = y - tile[4 * j + 1], dz = z - tile[4 * j + 2];
          const float d2 = dx * dx + dy * dy + dz * dz;
          const float w = d2 > 0.f ? mb[static_cast<size_t>(j0 + j) * n + k] * rsqrtf(d2) : 0.f;
          gx += w * dx;
          gy += w * dy;
          gz += w * dz;
        }
      }
    }
    if (valid) {
      const float g = grad_cost[bi];
      grad1[3 * o] = g * gx;
      grad1[3 * o + 1] = g * gy;
      grad1[3 * o + 2] = g * gz;
    }
  }
}

// grad_xyz2[j] = g[bi] sum_k match[j,k] (q_j - p_k) / |q_j - p_k|; one block per (j, bi).
__global__ void grad2_kernel(int b, int n, int m, const float* xyz1, const float* xyz2, const float* match,
                             const float* grad_cost, float* grad2) {
  __shared__ float partial[kThreads * 3];
  for (int bi = blockIdx.y; bi < b; bi += gridDim.y) {
    for (int j = blockIdx.x; j < m; j += gridDim.x) {
      const size_t o = static_cast<size_t>(bi) * m + j;
      const float x = xyz2[3 * o], y = xyz2[3 * o + 1], z = xyz2[3 * o + 2];
      const float* row = match + (static_cast<size_t>(bi) * m + j) * n;
      const float* p1 = xyz1 + 3 * static_cast<size_t>(bi) * n;
      float gx = 0.f, gy = 0.f, gz = 0.f;
      for (int k = threadIdx.x; k < n; k += blockDim.x) {
        const float dx = x - p1[3 * k], dy = y - p1[3 * k + 1], dz = z - p1[3 * k + 2];
        const float d2 = dx * dx + dy * dy + dz * dz;
        const float w = d2 > 0.f ? row[k] * rsqrtf(d2) : 0.f;
        gx += w * dx;
        gy += w * dy;
        gz += w * dz;
      }
      partial[3 * threadIdx.x] = gx;
      partial[3 * threadIdx.x + 1] = gy;
      partial[3 * threadIdx.x + 2] = gz;
      __syncthreads();
      for (int h = blockDim.x / 2; h > 0; h >>= 1) {
        if (threadIdx.x < h)
          for (int c = 0; c < 3; ++c) partial[3 * threadIdx.x + c] += partial[3 * (threadIdx.x + h) + c];
        __syncthreads();
      }
      if (threadIdx.x == 0) {
        const float g = grad_cost[bi];
        grad2[3 * o] = g * partial[0];
        grad2[3 * o + 1] = g * partial[1];
        grad2[3 * o + 2] = g * partial[2];
      }
      __syncthreads();
    }
  }
}

inline dim3 grid(int b, int count) {
  return dim3((count + kThreads - 1) / kThreads, b < kMaxGridY ? b : kMaxGridY);
}

inline const char* last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace

extern "C" size_t differ_approx_match_temp_floats(int b, int n, int m) {
  return 2 * static_cast<size_t>(b) * (static_cast<size_t>(n) + m);
}

extern "C" const char* differ_approx_match_launcher(int b, int n, int m, const float* xyz1, const float* xyz2,
                                                    float* match, float* temp, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const Temp t = split_temp(temp, b, n, m);
  const int big = n > m ? n : m;
  const float multL = static_cast<float>(big) / n, multR = static_cast<float>(big) / m;
  cudaMemsetAsync(match, 0, sizeof(float) * static_cast<size_t>(b) * n * m, s);
  init_kernel<<<256, kThreads, 0, s>>>(b, n, m, multL, multR, t);
  for (int level_i = 0; level_i < kLevels; ++level_i) {
    // Sharpness -4^7, ..., -4^-1, then 0, as in approx_match_cpu.cc.
    const float level = level_i == kLevels - 1 ? 0.f : -ldexpf(1.f, 2 * (7 - level_i));
    ratio_l_kernel<<<grid(b, n), kThreads, 0, s>>>(b, n, m, level, xyz1, xyz2, t);
    ratio_r_kernel<<<grid(b, m), kThreads, 0, s>>>(b, n, m, level, xyz1, xyz2, t);
    transfer_kernel<<<grid(b, n), kThreads, 0, s>>>(b, n, m, level, xyz1, xyz2, match, t);
  }
  return last_error();
}

extern "C" const char* differ_match_cost_launcher(int b, int n, int m, const float* xyz1, const float* xyz2,
                                                  const float* match, float* cost, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaMemsetAsync(cost, 0, sizeof(float) * b, s);
  cost_kernel<<<grid(b, n), kThreads, 0, s>>>(b, n, m, xyz1, xyz2, match, cost);
  return last_error();
}

extern "C" const char* differ_match_cost_grad_launcher(int b, int n, int m, const float* xyz1, const float* xyz2,
                                                       const float* match, const float* grad_cost,
                                                       float* grad_xyz1, float* grad_xyz2, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  grad1_kernel<<<grid(b, n), kThreads, 0, s>>>(b, n, m, xyz1, xyz2, match, grad_cost, grad_xyz1);
  const dim3 g2(m < 65535 ? m : 65535, b < kMaxGridY ? b : kMaxGridY);
  grad2_kernel<<<g2, kThreads, 0, s>>>(b, n, m, xyz1, xyz2, match, grad_cost, grad_xyz2);
  return last_error();
}
