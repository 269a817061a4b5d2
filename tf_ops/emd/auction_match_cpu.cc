// CPU kernel of auction_match: Bertsekas' auction algorithm with epsilon scaling.
//
// Persons are the points of xyz1, objects the points of xyz2, the cost of a
// pair their Euclidean distance (the EMD ground distance). A free person i bids
// for the object j1 minimising c[i][j] + price[j]; the price rises by the gap
// to the second best plus epsilon, the previous owner becomes free. Each phase
// ends with an epsilon-optimal assignment (within n * epsilon of the optimum);
// epsilon then shrinks by kScale and the next phase starts from the prices.
//
// Stopping rule, certified instead of guessed: after each phase the dual value
// L = sum_i min_j (c_ij + p_j) - sum_j p_j is a lower bound of the optimal cost
// (u_i = min_j(c_ij + p_j), v_j = -p_j is dual feasible), so the phase's cost C
// satisfies C* <= C <= C* + (C - L). We stop once (C - L) <= rel_tol * C.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels_cpu.h"
#include "simd.h"

namespace differ {

using simd::vf;
using simd::vi;
using simd::W;

namespace {

constexpr float kScale = 6.f;          // epsilon reduction per phase
constexpr float kFirstEps = 1.f / 8;   // first epsilon, times the largest cost
constexpr float kMinEps = 1e-6f;       // last epsilon, times the largest cost

// Best and second best (smallest) of row[j] + price[j] over the padded row.
inline void best_two(const float* row, const float* price, int n_pad, int* j1, float* v1, float* v2) {
  const float inf = std::numeric_limits<float>::infinity();
  vf m1 = simd::splat(inf), m2 = simd::splat(inf);
  vi i1 = simd::splati(0), jv = simd::iota();
  const vi step = simd::splati(W);
  for (int j = 0; j < n_pad; j += W) {
    const vf v = simd::load(row + j) + simd::load(price + j);
    const vi lt = v < m1;
    m2 = lt ? m1 : simd::vmin(m2, v);
    i1 = lt ? jv : i1;
    m1 = lt ? v : m1;
    jv += step;
  }
  int bl = 0;
  for (int l = 1; l < W; ++l)
    if (m1[l] < m1[bl]) bl = l;
  float second = m2[bl];
  for (int l = 0; l < W; ++l)
    if (l != bl) second = std::min(second, m1[l]);
  *j1 = i1[bl];
  *v1 = m1[bl];
  *v2 = second;
}

}  // namespace

std::size_t auction_match_workspace(int n) {
  const std::size_t n_pad = pad_to_lanes(n);
  return static_cast<std::size_t>(n) * n_pad + n_pad;  // cost matrix, prices
}

AuctionStats auction_match(int n, const float* xyz1, const float* xyz2, float rel_tol,
                           int* matchl, int* matchr, float* ws) {
  AuctionStats stats{0.0, 0.0, 0, 0};
  const int n_pad = pad_to_lanes(n);
  float* C = ws;                                         // (n, n_pad), padding +inf
  float* price = C + static_cast<std::size_t>(n) * n_pad;  // (n_pad), padding 0
  const float inf = std::numeric_limits<float>::infinity();

  float cmax = 0.f;
  for (int i = 0; i < n; ++i) {
    float* row = C + static_cast<std::size_t>(i) * n_pad;
    const float x = xyz1[3 * i], y = xyz1[3 * i + 1], z = xyz1[3 * i + 2];
    for (int j = 0; j < n; ++j) {
      const float dx = xyz2[3 * j] - x, dy = xyz2[3 * j + 1] - y, dz = xyz2[3 * j + 2] - z;
      row[j] = std::sqrt(dx * dx + dy * dy + dz * dz);
    }
    for (int j = n; j < n_pad; ++j) row[j] = inf;
    for (int j = 0; j < n; ++j) cmax = std::max(cmax, row[j]);
  }
  std::fill(price, price + n_pad, 0.f);

  if (n == 1 || !(cmax > 0.f)) {  // one point, or all points coincide: any permutation is optimal
    for (int i = 0; i < n; ++i) matchl[i] = matchr[i] = i;
    stats.cost = stats.lower_bound = 0.0;
    if (n == 1) stats.cost = stats.lower_bound = C[0];
    return stats;
  }

  std::vector<int> free_persons;
  free_persons.reserve(n);
  float eps = cmax * kFirstEps;
  const float min_eps = cmax * kMinEps;
  for (;;) {
    // ---- one phase at this epsilon, from scratch but with the current prices
    std::fill(matchl, matchl + n, -1);
    std::fill(matchr, matchr + n, -1);
    free_persons.clear();
    for (int i = n - 1; i >= 0; --i) free_persons.push_back(i);
    while (!free_persons.empty()) {
      const int i = free_persons.back();
      free_persons.pop_back();
      int j1;
      float v1, v2;
      best_two(C + static_cast<std::size_t>(i) * n_pad, price, n_pad, &j1, &v1, &v2);
      price[j1] += (v2 - v1) + eps;
      const int prev = matchr[j1];
      if (prev >= 0) {
        matchl[prev] = -1;
        free_persons.push_back(prev);
      }
      matchr[j1] = i;
      matchl[i] = j1;
      ++stats.bids;
    }
    ++stats.phases;

    // ---- certificate: primal cost and dual lower bound
    double cost = 0.0, bound = 0.0;
    for (int j = 0; j < n; ++j) bound -= price[j];
    for (int i = 0; i < n; ++i) {
      const float* row = C + static_cast<std::size_t>(i) * n_pad;
      cost += row[matchl[i]];
      int j1;
      float v1, v2;
      best_two(row, price, n_pad, &j1, &v1, &v2);
      bound += v1;
    }
    stats.cost = cost;
    stats.lower_bound = std::min(bound, cost);
    if (cost - bound <= static_cast<double>(rel_tol) * cost || eps <= min_eps) break;
    eps = std::max(eps / kScale, min_eps);
  }
  return stats;
}

}  // namespace differ
