// Definitions shared by the CPU (*_cpu.cc) and CUDA (*.cu) kernels of the
// projection and pixel_nearest ops, so both compute the same windows, cells
// and distances. Framework-free; every function is usable on host and device.
//
// Conventions: a projected point is (row px, column px, depth); pixel centres
// sit at integer coordinates 0..h-1 (rows) and 0..w-1 (columns).
#ifndef DIFFER_TF_OPS_RASTER_COMMON_H_
#define DIFFER_TF_OPS_RASTER_COMMON_H_

#include <cmath>

#ifdef __CUDACC__
#define DIFFER_HD __host__ __device__ __forceinline__
#else
#define DIFFER_HD inline
#endif

namespace differ {
namespace raster {

using std::exp;  // float overloads for float T, on host and device
using std::floor;
using std::rint;
using std::ceil;
using std::sqrt;

// ------------------------------------------------------------------ windows
// The window of a point along one axis: pixels centre-half .. centre+half,
// where `centre` is round-half-to-even(coord) for the Gaussian (mask) window
// and floor(coord) for the well, clamped to [-half-1, size+half] as in
// utils/render/projection.py's _axis_window (so far-off points keep small window
// coordinates, all outside the image). [*lo, *hi] is the part of the window
// inside the image (empty when *lo > *hi); *pos0 = centre - half (the first
// window pixel, possibly outside the image). Non-finite coordinates give an
// empty window.
template <typename T>
DIFFER_HD void axis_window(T coord, bool use_floor, int half, int size, int* lo, int* hi) {
  if (!(coord == coord) || coord - coord != coord - coord) {  // NaN or +-inf
    *lo = 1;
    *hi = 0;
    return;
  }
  T centre = use_floor ? floor(coord) : rint(coord);  // rint: round half to even, like tf.round
  const T c_lo = T(-half - 1), c_hi = T(size + half);
  centre = centre < c_lo ? c_lo : (centre > c_hi ? c_hi : centre);
  const int c = static_cast<int>(centre);
  *lo = c - half < 0 ? 0 : c - half;
  *hi = c + half > size - 1 ? size - 1 : c + half;
}

// exp(-d^2 / (2 sigma_sq)) written as utils/render/projection.py's graph computes it.
template <typename T>
DIFFER_HD T gaussian(T d, T two_sigma_sq) {
  return exp(-(d * d) / two_sigma_sq);
}

// Softmax logit of a point: beta / (depth + 1) (the original's depth shift).
template <typename T>
DIFFER_HD T well_logit(T depth, T beta) {
  return beta / (depth + T(1));
}

// d logit / d depth = -beta / (depth + 1)^2.
template <typename T>
DIFFER_HD T well_logit_grad(T depth, T beta) {
  const T s = depth + T(1);
  return -beta / (s * s);
}

// ------------------------------------------------------------ pixel_nearest
// Cells of the nearest-point search: one cell per pixel, over the image plus a
// margin of kMargin cells on each side; points farther out are clamped into the
// outermost ring of cells. Cell (a, b) holds the points whose
// (floor(row + 0.5), floor(col + 0.5)) is (a - kMargin, b - kMargin) after that
// clamp. A point in cell (a, b) is at least (|a - a_p| - 1/2)+ rows and
// (|b - b_p| - 1/2)+ columns away from the centre of a pixel in cell (a_p, b_p)
// (clamping only moves points outward, never closer to an image pixel).
constexpr int kMargin = 2;

DIFFER_HD int grid_rows(int h) { return h + 2 * kMargin; }
DIFFER_HD int grid_cols(int w) { return w + 2 * kMargin; }

DIFFER_HD int clamp_cell(double coord, int size) {
  const double lo = -kMargin, hi = size - 1 + kMargin;
  const double c = floor(coord + 0.5);
  return static_cast<int>((c < lo ? lo : (c > hi ? hi : c)) + kMargin);
}

// Squared distance (px^2, double) from pixel centre (pr, pc) to point (r, c):
// the products and sum of the search, the same on CPU and GPU.
DIFFER_HD double sq_dist(int pr, int pc, double r, double c) {
  const double dr = r - pr, dc = c - pc;
  return dr * dr + dc * dc;
}

// The squared distance reported to the caller (and differentiated), in the
// points' precision: (row - p_r)^2 + (col - p_c)^2.
template <typename T>
DIFFER_HD T out_dist(int pr, int pc, T r, T c) {
  const T dr = r - static_cast<T>(pr), dc = c - static_cast<T>(pc);
  return dr * dr + dc * dc;
}

// Cell of point (r, c), or -1 when it cannot be within max_dist_sq of any pixel
// of an h x w image (its distance to the image rectangle is larger) or is not
// finite.
DIFFER_HD int point_cell(double r, double c, int h, int w, double max_dist_sq) {
  if (!(r - r == 0.0) || !(c - c == 0.0)) return -1;  // NaN or inf
  const double out_r = r < 0.0 ? -r : (r > h - 1 ? r - (h - 1) : 0.0);
  const double out_c = c < 0.0 ? -c : (c > w - 1 ? c - (w - 1) : 0.0);
  if (out_r * out_r + out_c * out_c > max_dist_sq) return -1;
  return clamp_cell(r, h) * grid_cols(w) + clamp_cell(c, w);
}

// ---- exact squared distance transform of the occupied cells (Felzenszwalb &
// Huttenlocher), in integer cell units. start: the per-cell offsets of the
// bucketed points (cell k is occupied when start[k + 1] > start[k]).
constexpr long long kFar = 1LL << 40;  // "no occupied cell"

// Column `col` of the grid: squared distance from each cell to the nearest
// occupied cell of the same column -> out[a * gw + col].
DIFFER_HD void column_pass(const int* start, int gh, int gw, int col, long long* out) {
  long long last = -kFar;
  for (int a = 0; a < gh; ++a) {
    const int k = a * gw + col;
    if (start[k + 1] > start[k]) last = a;
    out[k] = a - last;  // >= kFar when there is none above
  }
  last = kFar + gh;
  for (int a = gh - 1; a >= 0; --a) {
    const int k = a * gw + col;
    if (start[k + 1] > start[k]) last = a;
    long long d = out[k] < last - a ? out[k] : last - a;
    out[k] = d >= kFar ? kFar : d * d;
  }
}

// One grid row f[0..len) of column distances: the lower envelope of the
// parabolas (x - q)^2 + f[q] (sites with f[q] < kFar), evaluated at
// x = x0 .. x0 + nx - 1 into out. The envelope's breakpoints are kept as exact
// fractions zn[k] / zd[k] (zd > 0), compared by cross-multiplication (no rounding).
// v (len ints), zn, zd (len + 1 each): scratch.
DIFFER_HD void row_pass(const long long* f, int len, int x0, int nx, int* v, long long* zn, long long* zd,
                        long long* out) {
  int k = -1;
  for (int q = 0; q < len; ++q) {
    if (f[q] >= kFar) continue;
    const long long fq = f[q] + static_cast<long long>(q) * q;
    long long sn = 0, sd = 1;
    while (k >= 0) {
      // breakpoint of parabolas v[k] < q: s = (fq - fp) / (2 (q - p))
      const int p = v[k];
      sn = fq - (f[p] + static_cast<long long>(p) * p);
      sd = 2LL * (q - p);
      if (k == 0 || sn * zd[k] > zn[k] * sd) break;  // s > z[k] (z[0] = -inf)
      --k;
    }
    ++k;
    v[k] = q;
    zn[k] = sn;
    zd[k] = sd;
  }
  if (k < 0) {  // no occupied cell at all
    for (int x = 0; x < nx; ++x) out[x] = kFar;
    return;
  }
  int j = 0;
  for (int x = 0; x < nx; ++x) {
    const long long xx = x0 + x;
    while (j < k && zn[j + 1] < xx * zd[j + 1]) ++j;  // z[j + 1] < x
    const long long d = xx - v[j];
    out[x] = d * d + f[v[j]];
  }
}

// ---- the search
// (x)+^2 with x = |k| - 1/2: the squared lower bound of one axis for cells k apart.
DIFFER_HD double cell_gap_sq(int k) {
  const double g = (k < 0 ? -k : k) - 0.5;
  return g > 0.0 ? g * g : 0.0;
}

// Lexicographic (distance, index) update: the smallest index wins exact ties.
DIFFER_HD void consider(double d, int j, double* best, int* best_j) {
  if (d < *best || (d == *best && j < *best_j)) {
    *best = d;
    *best_j = j;
  }
}

// Cell offsets (da, db) with q = da^2 + db^2 <= kTableQ, sorted by q (then da, db):
// a spiral of growing distance. first[q] = the first entry with that q or more
// (q = 0 .. kTableQ + 1). Built once on the host (build_offset_table); the GPU
// launcher copies it to device memory.
constexpr int kTableQ = 576;     // 24 cells
constexpr int kTableSize = 1793;  // entries with q <= 576 (checked by build_offset_table)

struct OffsetTable {
  int da[kTableSize];
  int db[kTableSize];
  int q[kTableSize];
  double gap[kTableSize];  // squared distance from a pixel centre to the nearest point of the cell (da, db)
  int first[kTableQ + 2];
};

// Fills *t; returns false if kTableSize does not match (a programming error).
inline bool build_offset_table(OffsetTable* t) {
  int count = 0;
  for (int q = 0; q <= kTableQ; ++q) {
    t->first[q] = count;
    for (int da = -24; da <= 24; ++da)
      for (int db = -24; db <= 24; ++db)
        if (da * da + db * db == q) {
          if (count >= kTableSize) return false;
          t->da[count] = da;
          t->db[count] = db;
          t->q[count] = q;
          t->gap[count] = cell_gap_sq(da) + cell_gap_sq(db);
          ++count;
        }
  }
  t->first[kTableQ + 1] = count;
  return count == kTableSize;
}

// Points of one cell against the current best: the bucketed points' coordinates
// sr, sc (double, in bucket order) and indices sorted, slots [s0, s1).
DIFFER_HD void scan_cell(int s0, int s1, int pr, int pc, const double* sr, const double* sc, const int* sorted,
                         double* best, int* best_j) {
  for (int s = s0; s < s1; ++s) consider(sq_dist(pr, pc, sr[s], sc[s]), sorted[s], best, best_j);
}

// Cells whose centre is at squared distance q from the query's cell need scanning while
// q <= (sqrt(best) + sqrt(2)/2)^2: a point of a cell at q is at least sqrt(q) - sqrt(2)/2
// away. (+1e-6: slack for rounding; +inf while nothing was found.)
DIFFER_HD double q_needed(double best) {
  const double need = sqrt(best) + 0.70710678118654757;
  return need * need + 1e-6;
}

// Fast path of the search: the nearest point among the 3 x 3 cells around the pixel's own
// (three runs of consecutive slots, no branches but the loop bounds). Any point outside them
// is at least 1.5 px away, so the answer is exact when the best squared distance is < 2.25;
// returns false otherwise (then the caller runs nearest_point). The cells are never the
// clamped outer ring (kMargin = 2).
DIFFER_HD bool nearest_in_block(int pr, int pc, const double* sr, const double* sc, const int* start,
                                const int* sorted, int gw, int* best_j, double* best_d) {
  double best = INFINITY;
  int bj = -1;
  const int ap = pr + kMargin, bp = pc + kMargin;
  for (int a = ap - 1; a <= ap + 1; ++a) {
    const int s1 = start[a * gw + bp + 2];
    for (int s = start[a * gw + bp - 1]; s < s1; ++s) {
      const double d = sq_dist(pr, pc, sr[s], sc[s]);
      const int j = sorted[s];
      const bool better = d < best || (d == best && j < bj);
      best = better ? d : best;
      bj = better ? j : bj;
    }
  }
  *best_j = bj;
  *best_d = best;
  return best < 2.25;
}

// Exact nearest point for the pixel (pr, pc), given:
//   * d2: the squared distance (in cells, an integer) from the pixel's cell to
//     the nearest occupied cell (exact distance transform of the occupancy);
//     every cell whose centre is closer is empty;
//   * the points bucketed by cell: cell k holds the slots start[k] .. start[k+1]
//     of sorted (point indices) and sr, sc (their row and column, double);
//     n_valid = start[cells] points in all;
//   * the offset table.
// Cells are visited in order of growing centre distance q, from q = d2 on, until
// q exceeds q_needed(best) (then no unvisited point can be as near as the best);
// a cell whose square is already farther than `best` is skipped. Beyond the table
// (pixels more than 24 cells from every point) the cells are enumerated row by row
// in bands of q. Whenever the cells to visit would outnumber the points, the search
// becomes a plain scan of all points.
// Returns the index of the nearest point (smallest index on exact ties) if its
// squared distance is <= max_dist_sq, else -1; or kUnresolved if the search would
// have to visit cells beyond centre distance^2 q_limit (a caller that starts
// without the distance transform, d2 = 0, retries with it).
constexpr int kUnresolved = -2;
DIFFER_HD int nearest_point(int pr, int pc, long long d2, const double* sr, const double* sc, const int* start,
                            const int* sorted, const OffsetTable* table, int h, int w, double max_dist_sq,
                            int q_limit = kTableQ + 1) {
  const int gh = grid_rows(h), gw = grid_cols(w);
  const int n_valid = start[gh * gw];
  if (n_valid == 0) return -1;
  const int ap = pr + kMargin, bp = pc + kMargin;
  double best = INFINITY;
  int best_j = -1;
  long long visited = 0;
  bool brute = false;
  double q_stop = INFINITY;
  // 1. the spiral of the table
  for (int t = d2 <= kTableQ ? table->first[d2] : kTableSize; t < kTableSize; ++t) {
    const int q = table->q[t];
    if (q > q_stop) return (best <= max_dist_sq) ? best_j : -1;
    if (q > q_limit) return kUnresolved;
    const int da = table->da[t], db = table->db[t];
    const int a = ap + da, b = bp + db;
    if (a < 0 || a >= gh || b < 0 || b >= gw) continue;
    if (++visited > n_valid + 64) {
      brute = true;
      break;
    }
    if (table->gap[t] > best) continue;  // the whole cell is farther
    const int cell = a * gw + b;
    if (start[cell] == start[cell + 1]) continue;
    scan_cell(start[cell], start[cell + 1], pr, pc, sr, sc, sorted, &best, &best_j);
    q_stop = q_needed(best);
  }
  // 2. beyond the table: bands of q, rows enumerated directly
  const long long q_max = static_cast<long long>(gh) * gh + static_cast<long long>(gw) * gw;
  long long q_lo = d2 > kTableQ ? d2 : kTableQ + 1;
  while (!brute && q_lo <= q_max && static_cast<double>(q_lo) <= q_stop) {
    long long q_hi = q_stop >= static_cast<double>(q_max) ? q_max : static_cast<long long>(floor(q_stop));
    if (!(best < INFINITY)) {  // nothing found yet: the band up to the nearest occupied cell and sqrt(2) beyond
      const double first = sqrt(static_cast<double>(q_lo)) + 1.4142135623730951;
      q_hi = static_cast<long long>(floor(first * first + 1e-6));
      if (q_hi > q_max) q_hi = q_max;
    }
    // about pi * (q_hi - q_lo + 1) cells in the band
    if (static_cast<double>(visited) + 3.1416 * static_cast<double>(q_hi - q_lo + 1) + 8.0 > n_valid + 64.0) {
      brute = true;
      break;
    }
    const int rad = static_cast<int>(floor(sqrt(static_cast<double>(q_hi))));
    for (int da = -rad; da <= rad; ++da) {
      const int a = ap + da;
      if (a < 0 || a >= gh) continue;
      const long long rest_hi = q_hi - static_cast<long long>(da) * da;
      if (rest_hi < 0) continue;
      const long long rest_lo = q_lo - static_cast<long long>(da) * da;
      int db_max = static_cast<int>(floor(sqrt(static_cast<double>(rest_hi))));
      while (static_cast<long long>(db_max) * db_max > rest_hi) --db_max;
      while (static_cast<long long>(db_max + 1) * (db_max + 1) <= rest_hi) ++db_max;
      int db_min = 0;
      if (rest_lo > 0) {
        db_min = static_cast<int>(ceil(sqrt(static_cast<double>(rest_lo))));
        while (db_min > 0 && static_cast<long long>(db_min - 1) * (db_min - 1) >= rest_lo) --db_min;
        while (static_cast<long long>(db_min) * db_min < rest_lo) ++db_min;
      }
      for (int db = db_min; db <= db_max; ++db) {
        for (int sign = 0; sign < (db == 0 ? 1 : 2); ++sign) {
          const int dbs = sign ? -db : db;
          const int b = bp + dbs;
          if (b < 0 || b >= gw) continue;
          ++visited;
          if (cell_gap_sq(da) + cell_gap_sq(dbs) > best) continue;
          const int cell = a * gw + b;
          scan_cell(start[cell], start[cell + 1], pr, pc, sr, sc, sorted, &best, &best_j);
        }
      }
    }
    q_stop = q_needed(best);
    q_lo = q_hi + 1;
  }
  if (brute) scan_cell(0, n_valid, pr, pc, sr, sc, sorted, &best, &best_j);
  return (best_j >= 0 && best <= max_dist_sq) ? best_j : -1;
}

}  // namespace raster
}  // namespace differ

#endif  // DIFFER_TF_OPS_RASTER_COMMON_H_
