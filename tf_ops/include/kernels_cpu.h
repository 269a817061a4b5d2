// Framework-free CPU kernels of the DIFFER point-cloud ops.
//
// Every function works on ONE batch item (or a range of its query points), on
// plain float arrays; the TensorFlow wrappers (*_op.cc) shard batch items and
// query blocks over TensorFlow's CPU thread pool. Point clouds are given as
// (n, 3) row-major arrays (x0 y0 z0 x1 y1 z1 ...), as in the op inputs, unless
// a name says "soa" (structure of arrays: all x, then all y, then all z).
#ifndef DIFFER_TF_OPS_KERNELS_CPU_H_
#define DIFFER_TF_OPS_KERNELS_CPU_H_

#include <cstddef>
#include <cstdint>

namespace differ {

// ---------------------------------------------------------------- nn_distance
// Lane width of the vectorised inner loops; clouds are padded to a multiple.
constexpr int kLanes = 16;

inline int pad_to_lanes(int n) { return (n + kLanes - 1) / kLanes * kLanes; }

// (n, 3) -> SoA with stride n_pad = pad_to_lanes(n); padding points are NaN, so
// their distance compares false with everything and they are never chosen.
void to_soa_padded(const float* xyz, int n, float* soa);

// For the query points q0 <= i < q1 of cloud `q` (SoA, stride q_stride) find the
// nearest of the m points of cloud `r` (SoA, stride pad_to_lanes(m)):
// dist[i] = squared Euclidean distance, idx[i] = its index (the smallest index
// among exact ties, like numpy.argmin). m >= 1.
void nn_search(const float* q_soa, int q_stride, int q0, int q1,
               const float* r_soa, int m, float* dist, int* idx);

// Gradient of the two distance outputs w.r.t. both clouds, one batch item.
// grad_xyz1 (n,3) and grad_xyz2 (m,3) are overwritten.
void nn_distance_grad(int n, int m, const float* xyz1, const float* xyz2,
                      const float* grad_dist1, const int* idx1,
                      const float* grad_dist2, const int* idx2,
                      float* grad_xyz1, float* grad_xyz2);

// --------------------------------------------------------------- approx_match
// Floats of scratch memory approx_match needs for one batch item.
std::size_t approx_match_workspace(int n, int m);

// The multi-level soft assignment of PSGN's approxmatch (see README.md):
// match (m, n): match[j*n + i] = mass moved from xyz1[i] to xyz2[j].
void approx_match(int n, int m, const float* xyz1, const float* xyz2,
                  float* match, float* workspace);

// sum_{j,i} match[j*n+i] * |xyz1[i] - xyz2[j]|  (Euclidean, not squared).
double match_cost(int n, int m, const float* xyz1, const float* xyz2, const float* match);

// d cost / d xyz1 and d cost / d xyz2 times `scale` (the incoming gradient);
// grad_xyz1 (n,3) and grad_xyz2 (m,3) are overwritten. Coincident points
// contribute zero (the subgradient at the kink of |.|).
void match_cost_grad(int n, int m, const float* xyz1, const float* xyz2, const float* match,
                     float scale, float* grad_xyz1, float* grad_xyz2);

// -------------------------------------------------------------- auction_match
struct AuctionStats {
  double cost;         // sum of matched Euclidean distances
  double lower_bound;  // dual bound: the optimum lies in [lower_bound, cost]
  int phases;          // epsilon-scaling phases run
  std::int64_t bids;   // bids made in all phases
};

// Floats of scratch memory auction_match needs for one batch item.
std::size_t auction_match_workspace(int n);

// Minimum-cost one-to-one assignment between two clouds of n points (cost =
// Euclidean distance), by Bertsekas' auction with epsilon scaling. Stops when
// (cost - lower_bound) <= rel_tol * cost (a certified bound), or when epsilon
// reaches the float resolution of the prices. matchl[i] = j, matchr[j] = i.
AuctionStats auction_match(int n, const float* xyz1, const float* xyz2, float rel_tol,
                           int* matchl, int* matchr, float* workspace);

// ---------------------------------------------------------------- projections
// Fused versions of utils/render/projection.py's renderers (see tf_ops/README.md), for
// ONE batch item; T is float or double. pix (n, 3): row px, column px, depth;
// pixel centres at integer coordinates. Points with a non-finite row or column
// touch no pixel. The forward kernels fill the image rows [row0, row1) only:
// every pixel is summed over the points in index order whatever the split, so
// results do not depend on how rows are shared out between threads.

// mask (h, w) rows [row0, row1): tanh(sum_i g(r_i - p_r) g(c_i - p_c)) with
// g(d) = exp(-d^2 / (2 sigma_sq)), over the (2*half+1)^2 window of each point
// around (round(r_i), round(c_i)) (round half to even).
template <typename T>
void mask_projection_rows(int n, const T* pix, int h, int w, T sigma_sq, int half, int row0, int row1, T* mask);

// Gradient w.r.t. pix of sum(grad_mask * mask), in two steps: per pixel,
// a = grad_mask * (1 - mask^2) (the gradient w.r.t. the sum under the tanh),
// written for `rows` image rows into rows of mask_grad_row_stride(w) values (the
// padding zeroed); then for the points [i0, i1) of one batch item (its (h, w)
// image of a) the window sums of a times the Gaussians' derivatives; grad_pix
// rows i0..i1-1 are overwritten (depth: 0).
int mask_grad_row_stride(int w);
template <typename T>
void mask_projection_grad_pixels(int rows, int w, const T* mask, const T* grad_mask, T* a);
template <typename T>
void mask_projection_grad_points(int n, const T* pix, int h, int w, T sigma_sq, int half, const T* a, int i0,
                                 int i1, T* grad_pix);

// Depth-aware feature projection, rows [row0, row1). Point i is in the well of
// pixel p when |p_r - r_i| <= radius and |p_c - c_i| <= radius (inside the
// (2*half+1)^2 window around (floor(r_i), floor(c_i)), half = ceil(radius)).
// With z_i = beta / (depth_i + 1) and m_p = max of z over the well:
//   e_ip = exp(z_i - m_p), den_p = sum_i e_ip,
//   feat_map (h, w, nc) = sum_i e_ip feat_i / den_p (0 where the well is empty),
//   coverage (h, w) = 1 where the well holds a point, else 0,
//   stats (h, w, 2) = (m_p, 1 / den_p) (den_p = 0 where the well is empty), kept for
//   the gradient.
template <typename T>
void feature_projection_rows(int n, int nc, const T* pix, const T* feat, int h, int w, T radius, int half, T beta,
                             int row0, int row1, T* feat_map, T* coverage, T* stats);

// Gradient of sum(grad_map * feat_map) w.r.t. pix (depth only: the well is a
// hard indicator) and feat, for the points [i0, i1); their rows of grad_pix
// (n, 3) and grad_feat (n, nc) are overwritten.
template <typename T>
void feature_projection_grad_points(int n, int nc, const T* pix, const T* feat, int h, int w, T radius, int half,
                                    T beta, const T* feat_map, const T* stats, const T* grad_map, int i0, int i1,
                                    T* grad_pix, T* grad_feat);

// -------------------------------------------------------------- pixel_nearest
// For every pixel p of an (h, w) image with query[p] != 0: the index of the
// point (pts (n, dim), dim >= 2: row px, column px, ...) nearest to p's centre,
// the smallest index on exact ties, or -1 when no point is within
// sqrt(max_dist_sq) px; idx[p] = -1 where query[p] == 0. dist[p] = the squared
// distance (px^2, (row - p_r)^2 + (col - p_c)^2 in T) to that point, +inf where
// idx[p] = -1. Exact (the search compares squared distances in double
// precision), O(h*w + n) plus a small search per queried pixel
// (raster_common.h, tf_ops/README.md). One batch item.
template <typename T>
void pixel_nearest(int n, int dim, const T* pts, int h, int w, const T* query, double max_dist_sq, int* idx,
                   T* dist);

// Gradient of sum(grad_dist * dist) w.r.t. pts: 2 g (point - pixel) added to the
// row and column of each pixel's nearest point (pixels with idx -1 or g = 0
// contribute nothing); grad_pts (n, dim) is overwritten. One batch item.
template <typename T>
void pixel_nearest_grad(int n, int dim, const T* pts, int h, int w, const int* idx, const T* grad_dist,
                        T* grad_pts);

}  // namespace differ

#endif  // DIFFER_TF_OPS_KERNELS_CPU_H_
