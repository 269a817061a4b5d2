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

}  // namespace differ

#endif  // DIFFER_TF_OPS_KERNELS_CPU_H_
