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
#include <type_traits>
#include <vector>

#include "kernels_cpu.h"
#include "raster_common.h"
#include "simd.h"

namespace differ {

using raster::axis_window;

namespace {

// x[0..count) <- exp(x[0..count)), x <= 0: vectorised for float (simd::vexp, relative
// error ~2e-7, the same value whatever the vector width), std::exp for double. The
// buffer must hold count rounded up to a multiple of simd::W (exp_capacity).
inline int exp_capacity(int count) { return (count + simd::W - 1) / simd::W * simd::W; }
inline void exp_inplace(float* x, int count) {
  for (int i = 0; i < count; i += simd::W) simd::store(x + i, simd::vexp(simd::load(x + i)));
}
inline void exp_inplace(double* x, int count) {
  for (int i = 0; i < count; ++i) x[i] = std::exp(x[i]);
}

// The Gaussian factors of a window, rows then columns:
// g[k] = exp(-(r_lo + k - r)^2 / two_s), k < nr; g[nr + k] = exp(-(c_lo + k - c)^2 / two_s), k < nc.
// float: the arguments too are computed a vector at a time (times -1/two_s, not divided).
inline void window_gaussians(int r_lo, int nr, float r, int c_lo, int nc, float c, float two_s, float* g) {
  const simd::vf lane = __builtin_convertvector(simd::iota(), simd::vf);
  const float neg_inv = -1.f / two_s;
  for (int i = 0; i < nr + nc; i += simd::W) {
    const simd::vf k = lane + float(i);
    // pixel coordinate (an exact integer) minus the point's: one rounding, as in the scalar code,
    // so a factor does not depend on where the window was clipped
    const simd::vi rows = k < float(nr);
    const simd::vf d = (rows ? k + float(r_lo) : k + float(c_lo - nr)) - (rows ? simd::splat(r) : simd::splat(c));
    simd::store(g + i, simd::vexp(d * d * neg_inv));
  }
}
inline void window_gaussians(int r_lo, int nr, double r, int c_lo, int nc, double c, double two_s, double* g) {
  for (int k = 0; k < nr; ++k) {
    const double d = (r_lo + k) - r;
    g[k] = std::exp(-(d * d) / two_s);
  }
  for (int k = 0; k < nc; ++k) {
    const double d = (c_lo + k) - c;
    g[nr + k] = std::exp(-(d * d) / two_s);
  }
}

// out[0..count) = tanh(in[0..count)) for in >= 0 (sums of Gaussians). float: a vector at a
// time as (1 - t) / (1 + t), t = exp(-2x) (absolute error ~1e-7; exactly 0 at 0); in must be
// readable and writable up to count rounded up to simd::W.
inline void tanh_nonneg(float* in, int count, float* out) {
  for (int i = 0; i < count; i += simd::W) {
    const simd::vf t = simd::vexp(simd::load(in + i) * -2.f);
    simd::store(in + i, (1.f - t) / (1.f + t));
  }
  std::copy(in, in + count, out);
}
inline void tanh_nonneg(double* in, int count, double* out) {
  for (int i = 0; i < count; ++i) out[i] = std::tanh(in[i]);
}

}  // namespace

template <typename T>
void mask_projection_rows(int n, const T* pix, int h, int w, T sigma_sq, int half, int row0, int row1, T* mask) {
  const int k = 2 * half + 1;
  // The sums are formed in a scratch copy of the band whose rows are padded by kLanes
  // columns, so that with float and k <= simd::W a window row is one vector
  // multiply-add (lanes past the window add exactly 0), and tanh runs on whole vectors.
  constexpr bool kVector = std::is_same<T, float>::value;
  const bool vec = kVector && k <= simd::W;
  const int stride = w + kLanes;
  std::vector<T> acc(static_cast<std::size_t>(row1 - row0) * stride, T(0));
  const T two_s = T(2) * sigma_sq;
  std::vector<T> g(exp_capacity(2 * k), T(0));  // the window's row factors, then its column factors
  for (int i = 0; i < n; ++i) {
    const T r = pix[3 * i], c = pix[3 * i + 1];
    int r_lo, r_hi, c_lo, c_hi;
    axis_window(r, false, half, h, &r_lo, &r_hi);
    r_lo = std::max(r_lo, row0);
    r_hi = std::min(r_hi, row1 - 1);
    if (r_lo > r_hi) continue;
    axis_window(c, false, half, w, &c_lo, &c_hi);
    if (c_lo > c_hi) continue;
    const int nr = r_hi - r_lo + 1, nc = c_hi - c_lo + 1;
    T* gr = g.data();
    T* gc = gr + nr;
    window_gaussians(r_lo, nr, r, c_lo, nc, c, two_s, gr);
    T* row = acc.data() + static_cast<std::ptrdiff_t>(r_lo - row0) * stride + c_lo;
    if constexpr (kVector) {
      if (vec) {
        simd::vf gcv = simd::load_partial(gc, nc);  // zero past the window
        for (int kr = 0; kr < nr; ++kr, row += stride) simd::store(row, simd::load(row) + gr[kr] * gcv);
        continue;
      }
    }
    for (int kr = 0; kr < nr; ++kr, row += stride)
      for (int j = 0; j < nc; ++j) row[j] += gr[kr] * gc[j];
  }
  for (int pr = row0; pr < row1; ++pr)
    tanh_nonneg(acc.data() + static_cast<std::ptrdiff_t>(pr - row0) * stride, w,
                mask + static_cast<std::ptrdiff_t>(pr) * w);
}

int mask_grad_row_stride(int w) { return w + kLanes; }

template <typename T>
void mask_projection_grad_pixels(int rows, int w, const T* mask, const T* grad_mask, T* a) {
  const int stride = mask_grad_row_stride(w);
  for (int pr = 0; pr < rows; ++pr) {
    const T* m = mask + static_cast<std::ptrdiff_t>(pr) * w;
    const T* g = grad_mask + static_cast<std::ptrdiff_t>(pr) * w;
    T* out = a + static_cast<std::ptrdiff_t>(pr) * stride;
    for (int pc = 0; pc < w; ++pc) out[pc] = g[pc] * (T(1) - m[pc] * m[pc]);  // tanh' = 1 - tanh^2
    for (int pc = w; pc < stride; ++pc) out[pc] = T(0);
  }
}

template <typename T>
void mask_projection_grad_points(int n, const T* pix, int h, int w, T sigma_sq, int half, const T* a, int i0,
                                 int i1, T* grad_pix) {
  const int k = 2 * half + 1, stride = mask_grad_row_stride(w);
  constexpr bool kVector = std::is_same<T, float>::value;
  const bool vec = kVector && k <= simd::W;
  const T two_s = T(2) * sigma_sq;
  std::vector<T> g(exp_capacity(2 * k), T(0));
  std::vector<T> dc(std::max(k, static_cast<int>(simd::W)), T(0));
  for (int i = i0; i < i1; ++i) {
    const T r = pix[3 * i], c = pix[3 * i + 1];
    T g_r = 0, g_c = 0;  // sum over the window of a * d(g_r g_c)/d(r, c) * sigma_sq
    int r_lo, r_hi, c_lo, c_hi;
    axis_window(r, false, half, h, &r_lo, &r_hi);
    axis_window(c, false, half, w, &c_lo, &c_hi);
    if (r_lo <= r_hi && c_lo <= c_hi) {
      const int nr = r_hi - r_lo + 1, nc = c_hi - c_lo + 1;
      T* gr = g.data();
      T* gc = gr + nr;
      window_gaussians(r_lo, nr, r, c_lo, nc, c, two_s, gr);
      for (int j = 0; j < nc; ++j) dc[j] = T(c_lo + j) - c;
      const T* ak = a + static_cast<std::ptrdiff_t>(r_lo) * stride + c_lo;
      bool done = false;
      if constexpr (kVector) {
        if (vec) {  // lanes past the window: g_c = 0
          const simd::vf gcv = simd::load_partial(gc, nc);
          const simd::vf gdv = gcv * simd::load_partial(dc.data(), nc);
          simd::vf acc_r = {}, acc_c = {};
          for (int kr = 0; kr < nr; ++kr, ak += stride) {
            const simd::vf av = simd::load(ak);
            acc_r += (gr[kr] * (T(r_lo + kr) - r)) * av;
            acc_c += gr[kr] * av;
          }
          g_r = simd::hsum_tree(acc_r * gcv);
          g_c = simd::hsum_tree(acc_c * gdv);
          done = true;
        }
      }
      if (!done) {
        for (int kr = 0; kr < nr; ++kr, ak += stride) {
          T s = 0, s_c = 0;  // sum_pc a g_c and sum_pc a g_c (pc - c)
          for (int j = 0; j < nc; ++j) {
            const T v = ak[j] * gc[j];
            s += v;
            s_c += v * dc[j];
          }
          g_r += gr[kr] * (T(r_lo + kr) - r) * s;
          g_c += gr[kr] * s_c;
        }
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
  // the same float test as utils/render/projection.py: |pixel - coord| <= radius
  while (*lo <= *hi && !(std::fabs(T(*lo) - coord) <= radius)) ++*lo;
  while (*hi >= *lo && !(std::fabs(T(*hi) - coord) <= radius)) --*hi;
}

}  // namespace

// NC > 0: the number of channels known at compile time (unrolled loops); 0: nc at run time.
template <typename T, int NC>
void feature_rows_impl(int n, int nc_run, const T* pix, const T* feat, int h, int w, T radius, int half, T beta,
                             int row0, int row1, T* feat_map, T* coverage, T* stats) {
  const int nc = NC > 0 ? NC : nc_run;
  const std::ptrdiff_t p0 = static_cast<std::ptrdiff_t>(row0) * w, p1 = static_cast<std::ptrdiff_t>(row1) * w;
  const T lowest = std::numeric_limits<T>::lowest();
  for (std::ptrdiff_t p = p0; p < p1; ++p) {
    stats[2 * p] = lowest;
    stats[2 * p + 1] = T(0);
  }
  std::fill(feat_map + p0 * nc, feat_map + p1 * nc, T(0));
  std::vector<T> e(exp_capacity((2 * half + 1) * (2 * half + 1)), T(0));
  // the points whose well reaches the band, with their logit and well (rows clipped to the band)
  struct Active {
    int i, r_lo, r_hi, c_lo, c_hi;
    T z;
  };
  std::vector<Active> active;
  active.reserve(n);
  for (int i = 0; i < n; ++i) {
    const T z = raster::well_logit(pix[3 * i + 2], beta);
    if (!std::isfinite(z)) continue;
    Active a{i, 0, 0, 0, 0, z};
    well_range(pix[3 * i], radius, half, h, &a.r_lo, &a.r_hi);
    a.r_lo = std::max(a.r_lo, row0);
    a.r_hi = std::min(a.r_hi, row1 - 1);
    if (a.r_lo > a.r_hi) continue;
    well_range(pix[3 * i + 1], radius, half, w, &a.c_lo, &a.c_hi);
    if (a.c_lo <= a.c_hi) active.push_back(a);
  }
  // pass 1: per-pixel maximum of the logits in the well
  for (const Active& a : active)
    for (int pr = a.r_lo; pr <= a.r_hi; ++pr)
      for (int pc = a.c_lo; pc <= a.c_hi; ++pc) {
        const std::ptrdiff_t p = static_cast<std::ptrdiff_t>(pr) * w + pc;
        stats[2 * p] = std::max(stats[2 * p], a.z);
      }
  // pass 2: the softmax sums, points in index order
  for (const Active& a : active) {
    int k = 0;
    for (int pr = a.r_lo; pr <= a.r_hi; ++pr)
      for (int pc = a.c_lo; pc <= a.c_hi; ++pc) e[k++] = a.z - stats[2 * (static_cast<std::ptrdiff_t>(pr) * w + pc)];
    exp_inplace(e.data(), k);  // <= 1
    const T* f = feat + static_cast<std::ptrdiff_t>(a.i) * nc;
    k = 0;
    for (int pr = a.r_lo; pr <= a.r_hi; ++pr) {
      for (int pc = a.c_lo; pc <= a.c_hi; ++pc, ++k) {
        const std::ptrdiff_t p = static_cast<std::ptrdiff_t>(pr) * w + pc;
        stats[2 * p + 1] += e[k];
        T* out = feat_map + p * nc;
        for (int ch = 0; ch < nc; ++ch) out[ch] += e[k] * f[ch];
      }
    }
  }
  for (std::ptrdiff_t p = p0; p < p1; ++p) {
    const T den = stats[2 * p + 1];
    const bool covered = den > T(0.5);  // >= 1 wherever the well holds a point
    coverage[p] = covered ? T(1) : T(0);
    if (covered) {
      const T inv = T(1) / den;
      stats[2 * p + 1] = inv;  // kept for the gradient: softmax weight = e * inv
      T* out = feat_map + p * nc;
      for (int k = 0; k < nc; ++k) out[k] *= inv;
    }
  }
}

template <typename T, int NC>
void feature_grad_impl(int n, int nc_run, const T* pix, const T* feat, int h, int w, T radius, int half,
                                    T beta, const T* feat_map, const T* stats, const T* grad_map, int i0, int i1,
                                    T* grad_pix, T* grad_feat) {
  const int nc = NC > 0 ? NC : nc_run;
  std::vector<T> weight(exp_capacity((2 * half + 1) * (2 * half + 1)), T(0));
  for (int i = i0; i < i1; ++i) {
    const T depth = pix[3 * i + 2];
    const T z = raster::well_logit(depth, beta);
    const T* f = feat + static_cast<std::ptrdiff_t>(i) * nc;
    T* gf = grad_feat + static_cast<std::ptrdiff_t>(i) * nc;
    for (int ch = 0; ch < nc; ++ch) gf[ch] = T(0);
    T g_z = 0;
    int r_lo = 1, r_hi = 0, c_lo = 1, c_hi = 0;
    if (std::isfinite(z)) {
      well_range(pix[3 * i], radius, half, h, &r_lo, &r_hi);
      well_range(pix[3 * i + 1], radius, half, w, &c_lo, &c_hi);
    }
    if (r_lo <= r_hi && c_lo <= c_hi) {
      int k = 0;
      for (int pr = r_lo; pr <= r_hi; ++pr)
        for (int pc = c_lo; pc <= c_hi; ++pc) weight[k++] = z - stats[2 * (static_cast<std::ptrdiff_t>(pr) * w + pc)];
      exp_inplace(weight.data(), k);
      k = 0;
      for (int pr = r_lo; pr <= r_hi; ++pr) {
        for (int pc = c_lo; pc <= c_hi; ++pc, ++k) {
          const std::ptrdiff_t p = static_cast<std::ptrdiff_t>(pr) * w + pc;
          const T wgt = weight[k] * stats[2 * p + 1];  // softmax weight of i at p (e / denominator)
          const T* g = grad_map + p * nc;
          const T* fm = feat_map + p * nc;
          T dot = 0;  // g . (f_i - feat_map_p): d feat_map_p / d z_i = wgt (f_i - feat_map_p)
          for (int ch = 0; ch < nc; ++ch) {
            gf[ch] += wgt * g[ch];
            dot += g[ch] * (f[ch] - fm[ch]);
          }
          g_z += wgt * dot;
        }
      }
    }
    grad_pix[3 * i] = T(0);
    grad_pix[3 * i + 1] = T(0);
    grad_pix[3 * i + 2] = g_z == T(0) ? T(0) : g_z * raster::well_logit_grad(depth, beta);
  }
}

namespace {

// Calls f(std::integral_constant<int, NC>) with NC = nc for 1..4 channels (unrolled), else NC = 0.
template <typename F>
inline void with_channels(int nc, F f) {
  switch (nc) {
    case 1: f(std::integral_constant<int, 1>()); break;
    case 2: f(std::integral_constant<int, 2>()); break;
    case 3: f(std::integral_constant<int, 3>()); break;
    case 4: f(std::integral_constant<int, 4>()); break;
    default: f(std::integral_constant<int, 0>());
  }
}

}  // namespace

template <typename T>
void feature_projection_rows(int n, int nc, const T* pix, const T* feat, int h, int w, T radius, int half, T beta,
                             int row0, int row1, T* feat_map, T* coverage, T* stats) {
  with_channels(nc, [&](auto k) {
    feature_rows_impl<T, decltype(k)::value>(n, nc, pix, feat, h, w, radius, half, beta, row0, row1, feat_map,
                                             coverage, stats);
  });
}

template <typename T>
void feature_projection_grad_points(int n, int nc, const T* pix, const T* feat, int h, int w, T radius, int half,
                                    T beta, const T* feat_map, const T* stats, const T* grad_map, int i0, int i1,
                                    T* grad_pix, T* grad_feat) {
  with_channels(nc, [&](auto k) {
    feature_grad_impl<T, decltype(k)::value>(n, nc, pix, feat, h, w, radius, half, beta, feat_map, stats, grad_map,
                                             i0, i1, grad_pix, grad_feat);
  });
}

#define DIFFER_INSTANTIATE(T)                                                                                     \
  template void mask_projection_rows<T>(int, const T*, int, int, T, int, int, int, T*);                          \
  template void mask_projection_grad_pixels<T>(int, int, const T*, const T*, T*);                               \
  template void mask_projection_grad_points<T>(int, const T*, int, int, T, int, const T*, int, int, T*);        \
  template void feature_projection_rows<T>(int, int, const T*, const T*, int, int, T, int, T, int, int, T*, T*,  \
                                           T*);                                                                  \
  template void feature_projection_grad_points<T>(int, int, const T*, const T*, int, int, T, int, T, const T*,  \
                                                  const T*, const T*, int, int, T*, T*);
DIFFER_INSTANTIATE(float)
DIFFER_INSTANTIATE(double)
#undef DIFFER_INSTANTIATE

}  // namespace differ
