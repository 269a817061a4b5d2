// CPU kernels of the fused projections (mask: Gaussian splats + tanh; features:
// depth-aware softmax in a well), forward and backward, for one batch item.
//
// Forward: each call owns a band of image rows and scatters every point's
// window into it, points in index order, so a pixel's sum is always formed in
// the same order (deterministic, independent of the number of threads).
// Backward: a gather per point over its window (no scatter, no races).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels_cpu.h"
#include "raster_common.h"

namespace differ {

using raster::axis_window;

template <typename T>
void mask_projection_rows(int n, const T* pix, int h, int w, T sigma_sq, int half, int row0, int row1, T* mask) {
  T* out = mask + static_cast<std::ptrdiff_t>(row0) * w;
  std::fill(out, out + static_cast<std::ptrdiff_t>(row1 - row0) * w, T(0));
  const T two_s = T(2) * sigma_sq;
  std::vector<T> gc(2 * half + 1);
  for (int i = 0; i < n; ++i) {
    const T r = pix[3 * i], c = pix[3 * i + 1];
    int r_lo, r_hi, c_lo, c_hi;
    axis_window(r, false, half, h, &r_lo, &r_hi);
    r_lo = std::max(r_lo, row0);
    r_hi = std::min(r_hi, row1 - 1);
    if (r_lo > r_hi) continue;
    axis_window(c, false, half, w, &c_lo, &c_hi);
    if (c_lo > c_hi) continue;
    const int nc = c_hi - c_lo + 1;
    for (int k = 0; k < nc; ++k) gc[k] = raster::gaussian(T(c_lo + k) - c, two_s);
    for (int pr = r_lo; pr <= r_hi; ++pr) {
      const T gr = raster::gaussian(T(pr) - r, two_s);
      T* row = mask + static_cast<std::ptrdiff_t>(pr) * w + c_lo;
      for (int k = 0; k < nc; ++k) row[k] += gr * gc[k];
    }
  }
  for (std::ptrdiff_t p = 0; p < static_cast<std::ptrdiff_t>(row1 - row0) * w; ++p) out[p] = std::tanh(out[p]);
}

template <typename T>
void mask_projection_grad_points(int n, const T* pix, int h, int w, T sigma_sq, int half, const T* mask,
                                 const T* grad_mask, int i0, int i1, T* grad_pix) {
  const T two_s = T(2) * sigma_sq;
  std::vector<T> gc(2 * half + 1);
  for (int i = i0; i < i1; ++i) {
    const T r = pix[3 * i], c = pix[3 * i + 1];
    T g_r = 0, g_c = 0;
    int r_lo, r_hi, c_lo, c_hi;
    axis_window(r, false, half, h, &r_lo, &r_hi);
    axis_window(c, false, half, w, &c_lo, &c_hi);
    if (r_lo <= r_hi && c_lo <= c_hi) {
      const int nc = c_hi - c_lo + 1;
      for (int k = 0; k < nc; ++k) gc[k] = raster::gaussian(T(c_lo + k) - c, two_s);
      for (int pr = r_lo; pr <= r_hi; ++pr) {
        const T dr = T(pr) - r;
        const T gr = raster::gaussian(dr, two_s);
        const std::ptrdiff_t base = static_cast<std::ptrdiff_t>(pr) * w + c_lo;
        T s = 0, s_c = 0;  // sum_pc a g_c and sum_pc a g_c (pc - c), a = dL/d(sum) at (pr, pc)
        for (int k = 0; k < nc; ++k) {
          const T m = mask[base + k];
          const T a = grad_mask[base + k] * (T(1) - m * m) * gc[k];  // tanh' = 1 - tanh^2
          s += a;
          s_c += a * (T(c_lo + k) - c);
        }
        g_r += gr * dr * s;
        g_c += gr * s_c;
      }
    }
    // d/dr exp(-(p_r - r)^2 / (2 s)) = exp(...) (p_r - r) / s
    grad_pix[3 * i] = g_r / sigma_sq;
    grad_pix[3 * i + 1] = g_c / sigma_sq;
    grad_pix[3 * i + 2] = T(0);
  }
}

namespace {

// The in-well part of a point's window along one axis: [*lo, *hi].
template <typename T>
inline void well_range(T coord, T radius, int half, int size, int* lo, int* hi) {
  axis_window(coord, true, half, size, lo, hi);
  // the same float test as utils/projection.py: |pixel - coord| <= radius
  while (*lo <= *hi && !(std::fabs(T(*lo) - coord) <= radius)) ++*lo;
  while (*hi >= *lo && !(std::fabs(T(*hi) - coord) <= radius)) --*hi;
}

}  // namespace

template <typename T>
void feature_projection_rows(int n, int nc, const T* pix, const T* feat, int h, int w, T radius, int half, T beta,
                             int row0, int row1, T* feat_map, T* coverage, T* stats) {
  const std::ptrdiff_t p0 = static_cast<std::ptrdiff_t>(row0) * w, p1 = static_cast<std::ptrdiff_t>(row1) * w;
  const T lowest = std::numeric_limits<T>::lowest();
  for (std::ptrdiff_t p = p0; p < p1; ++p) {
    stats[2 * p] = lowest;
    stats[2 * p + 1] = T(0);
  }
  std::fill(feat_map + p0 * nc, feat_map + p1 * nc, T(0));
  // pass 1: per-pixel maximum of the logits in the well; pass 2: the softmax sums
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < n; ++i) {
      const T z = raster::well_logit(pix[3 * i + 2], beta);
      if (!std::isfinite(z)) continue;
      int r_lo, r_hi, c_lo, c_hi;
      well_range(pix[3 * i], radius, half, h, &r_lo, &r_hi);
      r_lo = std::max(r_lo, row0);
      r_hi = std::min(r_hi, row1 - 1);
      if (r_lo > r_hi) continue;
      well_range(pix[3 * i + 1], radius, half, w, &c_lo, &c_hi);
      const T* f = feat + static_cast<std::ptrdiff_t>(i) * nc;
      for (int pr = r_lo; pr <= r_hi; ++pr) {
        for (int pc = c_lo; pc <= c_hi; ++pc) {
          const std::ptrdiff_t p = static_cast<std::ptrdiff_t>(pr) * w + pc;
          if (pass == 0) {
            stats[2 * p] = std::max(stats[2 * p], z);
          } else {
            const T e = std::exp(z - stats[2 * p]);  // <= 1
            stats[2 * p + 1] += e;
            T* out = feat_map + p * nc;
            for (int k = 0; k < nc; ++k) out[k] += e * f[k];
          }
        }
      }
    }
  }
  for (std::ptrdiff_t p = p0; p < p1; ++p) {
    const T den = stats[2 * p + 1];
    const bool covered = den > T(0.5);  // >= 1 wherever the well holds a point
    coverage[p] = covered ? T(1) : T(0);
    if (covered) {
      T* out = feat_map + p * nc;
      for (int k = 0; k < nc; ++k) out[k] /= den;
    }
  }
}

template <typename T>
void feature_projection_grad_points(int n, int nc, const T* pix, const T* feat, int h, int w, T radius, int half,
                                    T beta, const T* feat_map, const T* stats, const T* grad_map, int i0, int i1,
                                    T* grad_pix, T* grad_feat) {
  for (int i = i0; i < i1; ++i) {
    const T depth = pix[3 * i + 2];
    const T z = raster::well_logit(depth, beta);
    const T* f = feat + static_cast<std::ptrdiff_t>(i) * nc;
    T* gf = grad_feat + static_cast<std::ptrdiff_t>(i) * nc;
    for (int k = 0; k < nc; ++k) gf[k] = T(0);
    T g_z = 0;
    int r_lo = 1, r_hi = 0, c_lo = 1, c_hi = 0;
    if (std::isfinite(z)) {
      well_range(pix[3 * i], radius, half, h, &r_lo, &r_hi);
      well_range(pix[3 * i + 1], radius, half, w, &c_lo, &c_hi);
    }
    for (int pr = r_lo; pr <= r_hi; ++pr) {
      for (int pc = c_lo; pc <= c_hi; ++pc) {
        const std::ptrdiff_t p = static_cast<std::ptrdiff_t>(pr) * w + pc;
        const T weight = std::exp(z - stats[2 * p]) / stats[2 * p + 1];  // softmax weight of i at p
        const T* g = grad_map + p * nc;
        const T* fm = feat_map + p * nc;
        T dot = 0;  // g . (f_i - feat_map_p): d feat_map_p / d z_i = weight (f_i - feat_map_p)
        for (int k = 0; k < nc; ++k) {
          gf[k] += weight * g[k];
          dot += g[k] * (f[k] - fm[k]);
        }
        g_z += weight * dot;
      }
    }
    grad_pix[3 * i] = T(0);
    grad_pix[3 * i + 1] = T(0);
    grad_pix[3 * i + 2] = g_z == T(0) ? T(0) : g_z * raster::well_logit_grad(depth, beta);
  }
}

#define DIFFER_INSTANTIATE(T)                                                                                     \
  template void mask_projection_rows<T>(int, const T*, int, int, T, int, int, int, T*);                          \
  template void mask_projection_grad_points<T>(int, const T*, int, int, T, int, const T*, const T*, int, int, T*); \
  template void feature_projection_rows<T>(int, int, const T*, const T*, int, int, T, int, T, int, int, T*, T*,  \
                                           T*);                                                                  \
  template void feature_projection_grad_points<T>(int, int, const T*, const T*, int, int, T, int, T, const T*,  \
                                                  const T*, const T*, int, int, T*, T*);
DIFFER_INSTANTIATE(float)
DIFFER_INSTANTIATE(double)
#undef DIFFER_INSTANTIATE

}  // namespace differ
