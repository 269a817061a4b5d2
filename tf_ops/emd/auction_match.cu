// CUDA kernel of auction_match (framework-free; C launcher in launchers.h).
//
// The same auction with epsilon scaling and the same certified stopping rule
// as auction_match_cpu.cc, but with parallel ("Jacobi") bidding: in each round
// every free person computes its bid at once (one thread per person); each
// object keeps the highest bid, packed with the bidder into one 64-bit word
// and resolved with atomicMax; then the winners are assigned. One thread block
// handles one cloud pair, looping over the batch; costs are recomputed from
// the coordinates (no n x n matrix in memory).
#include <cuda_runtime.h>

#include <cstdint>

#include "launchers.h"

namespace {

constexpr int kThreads = 512;
constexpr float kScale = 6.f;         // as in auction_match_cpu.cc
constexpr float kFirstEps = 1.f / 8;
constexpr float kMinEps = 1e-6f;

__device__ inline float dist(const float* p, const float* q) {
  const float dx = p[0] - q[0], dy = p[1] - q[1], dz = p[2] - q[2];
  return sqrtf(dx * dx + dy * dy + dz * dz);
}

// Block-wide reductions through shared memory `buf` (blockDim.x entries).
template <typename T, typename Op>
__device__ T block_reduce(T v, T* buf, Op op) {
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (threadIdx.x < h) buf[threadIdx.x] = op(buf[threadIdx.x], buf[threadIdx.x + h]);
    __syncthreads();
  }
  const T r = buf[0];
  __syncthreads();
  return r;
}

struct MaxF { __device__ float operator()(float a, float b) const { return fmaxf(a, b); } };
struct SumD { __device__ double operator()(double a, double b) const { return a + b; } };
struct SumI { __device__ int operator()(int a, int b) const { return a + b; } };

__global__ void auction_kernel(int b, int n, const float* __restrict__ xyz1, const float* __restrict__ xyz2,
                               float rel_tol, int* matchl_all, int* matchr_all,
                               unsigned long long* bids_all, float* price_all) {
  __shared__ double red_d[kThreads];
  __shared__ float red_f[kThreads];
  __shared__ int red_i[kThreads];
  const float inf = __int_as_float(0x7f800000);
  for (int bi = blockIdx.x; bi < b; bi += gridDim.x) {
    const float* p1 = xyz1 + 3 * static_cast<size_t>(bi) * n;
    const float* p2 = xyz2 + 3 * static_cast<size_t>(bi) * n;
    int* ml = matchl_all + static_cast<size_t>(bi) * n;
    int* mr = matchr_all + static_cast<size_t>(bi) * n;
    unsigned long long* bids = bids_all + static_cast<size_t>(bi) * n;
    float* price = price_all + static_cast<size_t>(bi) * n;

    // Largest cost (sets the epsilon scale) and a check for non-finite input.
    float cmax = 0.f;
    int bad = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      for (int c = 0; c < 3; ++c) bad |= !isfinite(p1[3 * i + c]) || !isfinite(p2[3 * i + c]);
      for (int j = 0; j < n; ++j) cmax = fmaxf(cmax, dist(p1 + 3 * i, p2 + 3 * j));
    }
    cmax = block_reduce(cmax, red_f, MaxF());
    bad = block_reduce(bad, red_i, SumI());
    if (bad || n == 1 || !(cmax > 0.f)) {  // nothing to optimise (or no meaningful answer)
      for (int i = threadIdx.x; i < n; i += blockDim.x) ml[i] = mr[i] = i;
      __syncthreads();
      continue;
    }
    for (int j = threadIdx.x; j < n; j += blockDim.x) price[j] = 0.f;
    float eps = cmax * kFirstEps;
    const float min_eps = cmax * kMinEps;
    const long long max_rounds = 200LL * n + 10000;  // safety net, far above what convergence needs
    for (;;) {
      for (int i = threadIdx.x; i < n; i += blockDim.x) ml[i] = mr[i] = -1;
      __syncthreads();
      for (long long round = 0;; ++round) {
        for (int j = threadIdx.x; j < n; j += blockDim.x) bids[j] = 0ULL;
        __syncthreads();
        int free_count = 0;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
          if (ml[i] >= 0) continue;
          ++free_count;
          float v1 = inf, v2 = inf;
          int j1 = 0;
          for (int j = 0; j < n; ++j) {
            const float v = dist(p1 + 3 * i, p2 + 3 * j) + price[j];
            if (v < v1) {
              v2 = v1;
              v1 = v;
              j1 = j;
            } else if (v < v2) {
              v2 = v;
            }
          }
          const float bid = price[j1] + (v2 - v1) + eps;  // > 0: prices start at 0 and only rise
          const unsigned long long key =
              (static_cast<unsigned long long>(__float_as_uint(bid)) << 32) | static_cast<unsigned int>(i);
          atomicMax(bids + j1, key);  // positive floats order like their bit patterns
        }
        free_count = block_reduce(free_count, red_i, SumI());  // also a barrier after the bids
        if (free_count == 0 || round >= max_rounds) break;
        for (int j = threadIdx.x; j < n; j += blockDim.x) {
          const unsigned long long key = bids[j];
          if (key == 0ULL) continue;
          const int i = static_cast<int>(key & 0xffffffffULL);
          const int prev = mr[j];
          if (prev >= 0) ml[prev] = -1;  // prev did not bid this round: no other writer
          mr[j] = i;
          ml[i] = j;
          price[j] = __uint_as_float(static_cast<unsigned int>(key >> 32));
        }
        __syncthreads();
      }
      // Safety net only (round limit hit): pair the remaining free persons and objects.
      if (threadIdx.x == 0) {
        int j = 0;
        for (int i = 0; i < n; ++i) {
          if (ml[i] >= 0) continue;
          while (mr[j] >= 0) ++j;
          ml[i] = j;
          mr[j] = i;
        }
      }
      __syncthreads();
      // Certificate: primal cost and dual lower bound, as in the CPU kernel.
      double cost = 0.0, bound = 0.0;
      for (int i = threadIdx.x; i < n; i += blockDim.x) {
        cost += dist(p1 + 3 * i, p2 + 3 * ml[i]);
        float best = inf;
        for (int j = 0; j < n; ++j) best = fminf(best, dist(p1 + 3 * i, p2 + 3 * j) + price[j]);
        bound += best - price[i];  // sum_i min_j(c_ij + p_j) - sum_j p_j, the second sum folded in
      }
      cost = block_reduce(cost, red_d, SumD());
      bound = block_reduce(bound, red_d, SumD());
      if (cost - bound <= static_cast<double>(rel_tol) * cost || eps <= min_eps) break;
      eps = fmaxf(eps / kScale, min_eps);
    }
    __syncthreads();
  }
}

inline size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

}  // namespace

extern "C" size_t differ_auction_match_temp_bytes(int b, int n) {
  const size_t count = static_cast<size_t>(b) * n;
  return align_up(count * sizeof(unsigned long long), 256) + count * sizeof(float);
}

extern "C" const char* differ_auction_match_launcher(int b, int n, const float* xyz1, const float* xyz2,
                                                     float rel_tol, int* matchl, int* matchr, void* temp,
                                                     void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const size_t count = static_cast<size_t>(b) * n;
  unsigned long long* bids = static_cast<unsigned long long*>(temp);
  float* price = reinterpret_cast<float*>(static_cast<char*>(temp) +
                                          align_up(count * sizeof(unsigned long long), 256));
  const int blocks = b < 1024 ? b : 1024;
  auction_kernel<<<blocks, kThreads, 0, s>>>(b, n, xyz1, xyz2, rel_tol, matchl, matchr, bids, price);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}
