// CPU kernel of pixel_nearest: the exact nearest projected point of every
// queried pixel in O(h*w + n) plus a short search per queried pixel.
//
// 1. Bucket the points by cell (one cell per pixel, plus a margin; see
//    raster_common.h), a stable counting sort: cell k holds sorted[start[k] ..
//    start[k+1]) in point order.
// 2. Exact squared Euclidean distance transform of the occupied cells
//    (Felzenszwalb & Huttenlocher: a 1D pass down every grid column, then the
//    lower envelope of parabolas along every image row), in integer cell units.
// 3. For each queried pixel, raster::nearest_point scans only the cells that
//    can hold a point as near as the nearest occupied cell's.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels_cpu.h"
#include "raster_common.h"

namespace differ {


template <typename T>
void pixel_nearest(int n, int dim, const T* pts, int h, int w, const T* query, double max_dist_sq, int* idx) {
  const int gh = raster::grid_rows(h), gw = raster::grid_cols(w), cells = gh * gw;
  // 1. counting sort of the points by cell (stable: point order within a cell)
  std::vector<int> cell_of(n), start(cells + 1, 0), sorted(n > 0 ? n : 1);
  for (int i = 0; i < n; ++i) {
    cell_of[i] = raster::point_cell(static_cast<double>(pts[i * dim]), static_cast<double>(pts[i * dim + 1]), h, w,
                                    max_dist_sq);
    if (cell_of[i] >= 0) ++start[cell_of[i] + 1];
  }
  for (int k = 0; k < cells; ++k) start[k + 1] += start[k];
  {
    std::vector<int> fill(start.begin(), start.end() - 1);
    for (int i = 0; i < n; ++i)
      if (cell_of[i] >= 0) sorted[fill[cell_of[i]]++] = i;
  }
  // 2. squared distance transform of the occupied cells, at the image's pixels
  std::vector<long long> col(cells), d2(static_cast<std::size_t>(h) * w);
  for (int b = 0; b < gw; ++b) raster::column_pass(start.data(), gh, gw, b, col.data());
  std::vector<int> v(gw);
  std::vector<double> z(gw + 1);
  for (int pr = 0; pr < h; ++pr)
    raster::row_pass(col.data() + static_cast<std::size_t>(pr + raster::kMargin) * gw, gw, raster::kMargin, w, v.data(),
             z.data(), d2.data() + static_cast<std::size_t>(pr) * w);
  // 3. exact search per queried pixel
  for (int pr = 0; pr < h; ++pr) {
    for (int pc = 0; pc < w; ++pc) {
      const std::size_t p = static_cast<std::size_t>(pr) * w + pc;
      idx[p] = (query[p] != T(0) && d2[p] < raster::kFar)
                   ? raster::nearest_point(pr, pc, d2[p], pts, dim, start.data(), sorted.data(), h, w, max_dist_sq)
                   : -1;
    }
  }
}

template void pixel_nearest<float>(int, int, const float*, int, int, const float*, double, int*);
template void pixel_nearest<double>(int, int, const double*, int, int, const double*, double, int*);

}  // namespace differ
