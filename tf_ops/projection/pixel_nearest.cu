// CUDA kernel of pixel_nearest (framework-free; C launcher in launchers.h).
// The algorithm of pixel_nearest_cpu.cc (raster_common.h), one step per kernel:
// count the points per cell (atomicAdd), prefix sums (one block per image),
// bucket them (atomicAdd on a cursor: the order inside a cell varies, the
// result does not, since ties are broken by index), the distance transform of
// the occupied cells (one thread per grid column, then per image row), and
// the search (one thread per queried pixel: the 3 x 3 cells around its own first,
// then the spiral from the nearest occupied cell; unlike the CPU kernel, the
// distance transform is always computed, for every row).
#include <cuda_runtime.h>

#include "launchers.h"
#include "raster_common.h"

namespace {

namespace raster = differ::raster;

constexpr int kThreads = 256;
constexpr int kScanThreads = 1024;

inline int grid_for(size_t total) {
  const size_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 8192 ? (blocks > 0 ? blocks : 1) : 8192);
}

#define DIFFER_GRID_STRIDE(t, total) \
  for (size_t t = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; t < (total); \
       t += static_cast<size_t>(gridDim.x) * blockDim.x)

// Scratch layout (8-byte arrays first).
struct Layout {
  size_t table, col, d2, z, sr, sc, start, cursor, cell_of, sorted, v, total;
  Layout(int b, int n, int h, int w) {
    const size_t cells = static_cast<size_t>(raster::grid_rows(h)) * raster::grid_cols(w);
    const size_t gw = raster::grid_cols(w);
    size_t off = 0;
    table = off;
    off += (sizeof(raster::OffsetTable) + 7) / 8 * 8;
    col = off;
    off += sizeof(long long) * b * cells;
    d2 = off;
    off += sizeof(long long) * b * static_cast<size_t>(h) * w;
    z = off;
    off += 2 * sizeof(long long) * b * static_cast<size_t>(h) * (gw + 1);
    sr = off;
    off += sizeof(double) * b * static_cast<size_t>(n > 0 ? n : 1);
    sc = off;
    off += sizeof(double) * b * static_cast<size_t>(n > 0 ? n : 1);
    start = off;
    off += sizeof(int) * b * (cells + 1);
    cursor = off;
    off += sizeof(int) * b * cells;
    cell_of = off;
    off += sizeof(int) * b * static_cast<size_t>(n);
    sorted = off;
    off += sizeof(int) * b * static_cast<size_t>(n > 0 ? n : 1);
    v = off;
    off += sizeof(int) * b * static_cast<size_t>(h) * gw;
    total = off + 16;
  }
};

__global__ void count_kernel(int b, int n, int dim, const float* __restrict__ pts, int h, int w, double cap,
                             int* cell_of, int* start) {
  const int cells = raster::grid_rows(h) * raster::grid_cols(w);
  DIFFER_GRID_STRIDE(t, static_cast<size_t>(b) * n) {
    const int cell = raster::point_cell(static_cast<double>(pts[t * dim]), static_cast<double>(pts[t * dim + 1]), h,
                                        w, cap);
    cell_of[t] = cell;
    if (cell >= 0) atomicAdd(start + (t / n) * (cells + 1) + cell + 1, 1);
  }
}

// start[0..cells] of one image (blockIdx.x): counts -> inclusive prefix sums in
// place (start[0] = 0), and cursor = start[0..cells).
__global__ void scan_kernel(int cells, int* start_all, int* cursor_all) {
  __shared__ int partial[kScanThreads];
  int* start = start_all + static_cast<size_t>(blockIdx.x) * (cells + 1) + 1;  // the counts
  int* cursor = cursor_all + static_cast<size_t>(blockIdx.x) * cells;
  const int chunk = (cells + blockDim.x - 1) / blockDim.x;
  const int lo = threadIdx.x * chunk, hi = min(cells, lo + chunk);
  int sum = 0;
  for (int k = lo; k < hi; ++k) {
    sum += start[k];
    start[k] = sum;
  }
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int step = 1; step < blockDim.x; step <<= 1) {  // Hillis-Steele inclusive scan of the chunk sums
    const int add = threadIdx.x >= step ? partial[threadIdx.x - step] : 0;
    __syncthreads();
    partial[threadIdx.x] += add;
    __syncthreads();
  }
  const int offset = threadIdx.x > 0 ? partial[threadIdx.x - 1] : 0;
  for (int k = lo; k < hi; ++k) start[k] += offset;
  __syncthreads();
  // cursor[k] = first slot of cell k = the prefix sum before it (start[-1] is the image's start[0] = 0)
  for (int k = threadIdx.x; k < cells; k += blockDim.x) cursor[k] = start[k - 1];
}

__global__ void fill_kernel(int b, int n, int dim, const float* __restrict__ pts, int cells,
                            const int* __restrict__ cell_of, int* cursor, int* sorted, double* sr, double* sc) {
  DIFFER_GRID_STRIDE(t, static_cast<size_t>(b) * n) {
    const int cell = cell_of[t];
    if (cell < 0) continue;
    const size_t bi = t / n;
    const size_t slot = bi * n + atomicAdd(cursor + bi * cells + cell, 1);
    sorted[slot] = static_cast<int>(t - bi * n);
    sr[slot] = static_cast<double>(pts[t * dim]);
    sc[slot] = static_cast<double>(pts[t * dim + 1]);
  }
}

__global__ void column_kernel(int b, int h, int w, const int* __restrict__ start_all, long long* col_all) {
  const int gh = raster::grid_rows(h), gw = raster::grid_cols(w), cells = gh * gw;
  DIFFER_GRID_STRIDE(t, static_cast<size_t>(b) * gw) {
    const size_t bi = t / gw;
    raster::column_pass(start_all + bi * (cells + 1), gh, gw, static_cast<int>(t % gw), col_all + bi * cells);
  }
}

__global__ void row_kernel(int b, int h, int w, const long long* __restrict__ col_all, int* v_all, long long* z_all,
                           long long* d2_all) {
  const int gh = raster::grid_rows(h), gw = raster::grid_cols(w), cells = gh * gw;
  DIFFER_GRID_STRIDE(t, static_cast<size_t>(b) * h) {
    const size_t bi = t / h;
    const int pr = static_cast<int>(t % h);
    raster::row_pass(col_all + bi * cells + static_cast<size_t>(pr + raster::kMargin) * gw, gw, raster::kMargin, w,
                     v_all + t * gw, z_all + 2 * t * (gw + 1), z_all + (2 * t + 1) * (gw + 1), d2_all + t * w);
  }
}

__global__ void query_kernel(int b, int n, int dim, const float* __restrict__ pts, int h, int w,
                             const float* __restrict__ query, double cap, const long long* __restrict__ d2_all,
                             const int* __restrict__ start_all, const int* __restrict__ sorted_all,
                             const double* __restrict__ sr_all, const double* __restrict__ sc_all,
                             const raster::OffsetTable* __restrict__ table, int* idx, float* dist) {
  const int cells = raster::grid_rows(h) * raster::grid_cols(w);
  const size_t hw = static_cast<size_t>(h) * w;
  DIFFER_GRID_STRIDE(t, static_cast<size_t>(b) * hw) {
    const size_t bi = t / hw;
    const int pr = static_cast<int>((t % hw) / w), pc = static_cast<int>(t % w);
    const float* p = pts + bi * n * dim;
    int j = -1;
    double d;
    if (query[t] != 0.f && d2_all[t] < raster::kFar) {
      const int gw = raster::grid_cols(w);
      if (raster::nearest_in_block(pr, pc, sr_all + bi * n, sc_all + bi * n, start_all + bi * (cells + 1),
                                   sorted_all + bi * n, gw, &j, &d))
        j = d <= cap ? j : -1;
      else
        j = raster::nearest_point(pr, pc, d2_all[t], sr_all + bi * n, sc_all + bi * n, start_all + bi * (cells + 1),
                                  sorted_all + bi * n, table, h, w, cap);
    }
    idx[t] = j;
    dist[t] = j >= 0 ? raster::out_dist(pr, pc, p[j * dim], p[j * dim + 1]) : INFINITY;
  }
}

__global__ void grad_kernel(int b, int n, int dim, const float* __restrict__ pts, int h, int w,
                            const int* __restrict__ idx, const float* __restrict__ grad_dist, float* grad_pts) {
  const size_t hw = static_cast<size_t>(h) * w;
  DIFFER_GRID_STRIDE(t, static_cast<size_t>(b) * hw) {
    const int j = idx[t];
    if (j < 0 || grad_dist[t] == 0.f) continue;
    const size_t bi = t / hw;
    const int pr = static_cast<int>((t % hw) / w), pc = static_cast<int>(t % w);
    const float* p = pts + (bi * n + j) * dim;
    float* g = grad_pts + (bi * n + j) * dim;
    const float two_g = 2.f * grad_dist[t];
    atomicAdd(g, two_g * (p[0] - static_cast<float>(pr)));
    atomicAdd(g + 1, two_g * (p[1] - static_cast<float>(pc)));
  }
}

}  // namespace

extern "C" size_t differ_pixel_nearest_temp_bytes(int b, int n, int h, int w) { return Layout(b, n, h, w).total; }

extern "C" const char* differ_pixel_nearest_launcher(int b, int n, int dim, const float* pts, int h, int w,
                                                     const float* query, double max_dist_sq, int* idx, float* dist,
                                                     void* temp, void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const Layout lay(b, n, h, w);
  char* base = static_cast<char*>(temp);
  long long* col = reinterpret_cast<long long*>(base + lay.col);
  long long* d2 = reinterpret_cast<long long*>(base + lay.d2);
  long long* z = reinterpret_cast<long long*>(base + lay.z);
  int* start = reinterpret_cast<int*>(base + lay.start);
  int* cursor = reinterpret_cast<int*>(base + lay.cursor);
  int* cell_of = reinterpret_cast<int*>(base + lay.cell_of);
  int* sorted = reinterpret_cast<int*>(base + lay.sorted);
  int* v = reinterpret_cast<int*>(base + lay.v);
  double* sr = reinterpret_cast<double*>(base + lay.sr);
  double* sc = reinterpret_cast<double*>(base + lay.sc);
  const int cells = raster::grid_rows(h) * raster::grid_cols(w);
  // the search's spiral of cell offsets: built once on the host, copied next to the scratch arrays
  static const raster::OffsetTable* host_table = [] {
    auto* t = new raster::OffsetTable;
    return raster::build_offset_table(t) ? t : nullptr;
  }();
  if (host_table == nullptr) return "pixel_nearest: offset table size mismatch (raster_common.h)";
  raster::OffsetTable* table = reinterpret_cast<raster::OffsetTable*>(base + lay.table);
  cudaMemcpyAsync(table, host_table, sizeof(raster::OffsetTable), cudaMemcpyHostToDevice, s);
  cudaMemsetAsync(start, 0, sizeof(int) * static_cast<size_t>(b) * (cells + 1), s);
  if (n > 0) count_kernel<<<grid_for(static_cast<size_t>(b) * n), kThreads, 0, s>>>(b, n, dim, pts, h, w, max_dist_sq,
                                                                                     cell_of, start);
  scan_kernel<<<b, kScanThreads, 0, s>>>(cells, start, cursor);
  if (n > 0) fill_kernel<<<grid_for(static_cast<size_t>(b) * n), kThreads, 0, s>>>(b, n, dim, pts, cells, cell_of, cursor,
                                                                                    sorted, sr, sc);
  column_kernel<<<grid_for(static_cast<size_t>(b) * raster::grid_cols(w)), kThreads, 0, s>>>(b, h, w, start, col);
  row_kernel<<<grid_for(static_cast<size_t>(b) * h), kThreads, 0, s>>>(b, h, w, col, v, z, d2);
  query_kernel<<<grid_for(static_cast<size_t>(b) * h * w), kThreads, 0, s>>>(b, n, dim, pts, h, w, query,
                                                                              max_dist_sq, d2, start, sorted, sr, sc,
                                                                              table, idx, dist);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

extern "C" const char* differ_pixel_nearest_grad_launcher(int b, int n, int dim, const float* pts, int h, int w,
                                                          const int* idx, const float* grad_dist, float* grad_pts,
                                                          void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaMemsetAsync(grad_pts, 0, sizeof(float) * static_cast<size_t>(b) * n * dim, s);
  grad_kernel<<<grid_for(static_cast<size_t>(b) * h * w), kThreads, 0, s>>>(b, n, dim, pts, h, w, idx, grad_dist,
                                                                             grad_pts);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}
