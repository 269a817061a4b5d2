// CPU kernel of pixel_nearest: the exact nearest projected point of every
// queried pixel in O(h*w + n) plus a short search per queried pixel.
//
// 1. Bucket the points by cell (one cell per pixel, plus a margin; see
//    raster_common.h), a stable counting sort: cell k holds the slots
//    start[k] .. start[k+1] (point indices in point order, and their coordinates).
// 2. Per queried pixel, the 3 x 3 cells around its own (raster::nearest_in_block):
//    exact when a point is nearer than 1.5 px, the common case.
// 3. Otherwise raster::nearest_point: a spiral of cells by distance, first from the
//    pixel's own cell up to a few cells; if that does not settle it, from the nearest
//    occupied cell on, found by the exact squared Euclidean distance transform of the
//    occupied cells (Felzenszwalb & Huttenlocher: a 1D pass down every grid column,
//    once per image, then the lower envelope of parabolas along the pixel's row),
//    computed only when needed.
// The gradient scatters 2 g (point - pixel) into each pixel's nearest point, one
// image after the other in pixel order (deterministic).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels_cpu.h"
#include "raster_common.h"

namespace differ {

namespace {

// The search's spiral of cell offsets, built once (thread-safe static initialisation).
const raster::OffsetTable& offset_table() {
  static const raster::OffsetTable* table = [] {
    auto* t = new raster::OffsetTable;
    if (!raster::build_offset_table(t)) {
      std::fprintf(stderr, "differ: raster::kTableSize does not match kTableQ\n");
      std::abort();
    }
    return t;
  }();
  return *table;
}

}  // namespace


namespace {

// Scratch arrays of one thread, reused from call to call (grown, never shrunk).
struct Scratch {
  std::vector<int> cell_of, start, fill, sorted, v;
  std::vector<double> sr, sc;
  std::vector<long long> col, d2, zn, zd;
};

template <typename V>
typename V::value_type* sized(V* vec, std::size_t n) {
  if (vec->size() < n) vec->resize(n);
  return vec->data();
}

}  // namespace

template <typename T>
void pixel_nearest(int n, int dim, const T* pts, int h, int w, const T* query, double max_dist_sq, int* idx,
                   T* dist) {
  thread_local Scratch scratch;
  const int gh = raster::grid_rows(h), gw = raster::grid_cols(w), cells = gh * gw;
  const std::size_t n1 = n > 0 ? n : 1;
  int* cell_of = sized(&scratch.cell_of, n1);
  int* start = sized(&scratch.start, cells + 1);
  int* fill = sized(&scratch.fill, cells);
  int* sorted = sized(&scratch.sorted, n1);
  double* sr = sized(&scratch.sr, n1);  // the bucketed points' row and column
  double* sc = sized(&scratch.sc, n1);
  long long* col = sized(&scratch.col, cells);
  long long* d2 = sized(&scratch.d2, w);
  int* v = sized(&scratch.v, gw);
  long long* zn = sized(&scratch.zn, gw + 1);
  long long* zd = sized(&scratch.zd, gw + 1);
  // 1. counting sort of the points by cell (stable: point order within a cell)
  std::fill(start, start + cells + 1, 0);
  for (int i = 0; i < n; ++i) {
    cell_of[i] = raster::point_cell(static_cast<double>(pts[i * dim]), static_cast<double>(pts[i * dim + 1]), h, w,
                                    max_dist_sq);
    if (cell_of[i] >= 0) ++start[cell_of[i] + 1];
  }
  for (int k = 0; k < cells; ++k) start[k + 1] += start[k];
  std::copy(start, start + cells, fill);
  for (int i = 0; i < n; ++i)
    if (cell_of[i] >= 0) {
      const int s = fill[cell_of[i]]++;
      sorted[s] = i;
      sr[s] = static_cast<double>(pts[i * dim]);
      sc[s] = static_cast<double>(pts[i * dim + 1]);
    }
  // 2./3. Most queried pixels have a point within a few cells: first the 3 x 3 cells around
  // the pixel's own (exact when a point is nearer than 1.5 px), then a search from the own
  // cell (d2 = 0 is a valid lower bound) up to centre distance^2 kLazyQ; only when that does
  // not settle it, compute the squared distance transform of the occupied cells (down the
  // grid columns once per image, then along the pixel's row, kept for the rest of the row)
  // and search from the nearest occupied cell on.
  constexpr int kLazyQ = 32;
  const raster::OffsetTable* table = &offset_table();
  bool columns_done = false;
  for (int pr = 0; pr < h; ++pr) {
    const T* q = query + static_cast<std::size_t>(pr) * w;
    int* out_idx = idx + static_cast<std::size_t>(pr) * w;
    T* out_dist = dist + static_cast<std::size_t>(pr) * w;
    bool row_done = false;
    for (int pc = 0; pc < w; ++pc) {
      out_idx[pc] = -1;
      out_dist[pc] = INFINITY;
      if (q[pc] == T(0)) continue;
      int j;
      double d;
      if (raster::nearest_in_block(pr, pc, sr, sc, start, sorted, gw, &j, &d)) {
        j = d <= max_dist_sq ? j : -1;
      } else {
        // without this row's distance transform: a search limited to q <= kLazyQ first
        j = row_done ? raster::kUnresolved
                     : raster::nearest_point(pr, pc, 0, sr, sc, start, sorted, table, h, w, max_dist_sq, kLazyQ);
      }
      if (j == raster::kUnresolved) {
        if (!columns_done) {
          for (int b = 0; b < gw; ++b) raster::column_pass(start, gh, gw, b, col);
          columns_done = true;
        }
        if (!row_done) {
          raster::row_pass(col + static_cast<std::size_t>(pr + raster::kMargin) * gw, gw, raster::kMargin, w, v, zn,
                           zd, d2);
          row_done = true;
        }
        j = d2[pc] < raster::kFar
                ? raster::nearest_point(pr, pc, d2[pc], sr, sc, start, sorted, table, h, w, max_dist_sq)
                : -1;
      }
      out_idx[pc] = j;
      if (j >= 0) out_dist[pc] = raster::out_dist(pr, pc, pts[j * dim], pts[j * dim + 1]);
    }
  }
}

template <typename T>
void pixel_nearest_grad(int n, int dim, const T* pts, int h, int w, const int* idx, const T* grad_dist,
                        T* grad_pts) {
  std::fill(grad_pts, grad_pts + static_cast<std::size_t>(n) * dim, T(0));
  for (int pr = 0; pr < h; ++pr) {
    for (int pc = 0; pc < w; ++pc) {
      const std::size_t p = static_cast<std::size_t>(pr) * w + pc;
      const int j = idx[p];
      if (j < 0 || grad_dist[p] == T(0)) continue;
      const T g = T(2) * grad_dist[p];  // d/dr (r - p_r)^2 = 2 (r - p_r)
      grad_pts[j * dim] += g * (pts[j * dim] - static_cast<T>(pr));
      grad_pts[j * dim + 1] += g * (pts[j * dim + 1] - static_cast<T>(pc));
    }
  }
}

template void pixel_nearest<float>(int, int, const float*, int, int, const float*, double, int*, float*);
template void pixel_nearest<double>(int, int, const double*, int, int, const double*, double, int*, double*);
template void pixel_nearest_grad<float>(int, int, const float*, int, int, const int*, const float*, float*);
template void pixel_nearest_grad<double>(int, int, const double*, int, int, const int*, const double*, double*);

}  // namespace differ
