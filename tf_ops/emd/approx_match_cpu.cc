// CPU kernels of approx_match, match_cost and match_cost's gradient.
//
// approx_match is the multi-level greedy soft assignment of PSGN's approxmatch
// (Fan, Su, Guibas 2017), re-derived here; README.md states it as equations:
// every point of xyz1 starts with mass multL, every point of xyz2 with capacity
// multR; at each of ten levels (sharpness 4^7, 4^6, ..., 4^-1, 0) mass flows
// from the remaining xyz1 mass to the remaining xyz2 capacity with weights
// exp(-sharpness * d^2), normalised so that no point gives more than it has
// and no point receives more than its remaining capacity.
//
// Layout: the kernel matrix E and the output match are (m, n): row j is a point
// of xyz2, the vectorised inner loops run over the n points of xyz1 (stored SoA).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels_cpu.h"
#include "simd.h"

namespace differ {

using simd::vf;
using simd::vi;
using simd::W;

namespace {

// Runs f(k, count) over [0, n) in SIMD-sized chunks (count == W except the last).
template <typename F>
inline void for_chunks(int n, F f) {
  int k = 0;
  for (; k + W <= n; k += W) f(k, W);
  if (k < n) f(k, n - k);
}

inline vf ld(const float* p, int count) { return count == W ? simd::load(p) : simd::load_partial(p, count); }
inline void st(float* p, vf v, int count) {
  if (count == W) simd::store(p, v); else simd::store_partial(p, v, count);
}

// Level sharpness of the original: -4^7 ... -4^-1, then 0 (uniform weights).
constexpr int kLevels = 10;
inline float level_value(int t) { return t == kLevels - 1 ? 0.f : -std::ldexp(1.f, 2 * (7 - t)); }

// (n,3) -> SoA of stride n_pad (padding 0).
void to_soa(const float* xyz, int n, int n_pad, float* soa) {
  for (int c = 0; c < 3; ++c) {
    float* dst = soa + static_cast<std::ptrdiff_t>(c) * n_pad;
    for (int i = 0; i < n; ++i) dst[i] = xyz[3 * i + c];
    for (int i = n; i < n_pad; ++i) dst[i] = 0.f;
  }
}

}  // namespace

std::size_t approx_match_workspace(int n, int m) {
  const std::size_t n_pad = pad_to_lanes(n);
  // E (m x n), SoA of xyz1, remainL, ratioL, column sums, remainR, ratioR
  return static_cast<std::size_t>(m) * n + 3 * n_pad + 3 * n_pad + 2 * static_cast<std::size_t>(m);
}

void approx_match(int n, int m, const float* xyz1, const float* xyz2, float* match, float* ws) {
  const int n_pad = pad_to_lanes(n);
  float* E = ws;
  float* soa = E + static_cast<std::size_t>(m) * n;
  float* remainL = soa + 3 * n_pad;
  float* ratioL = remainL + n_pad;
  float* colsum = ratioL + n_pad;
  float* remainR = colsum + n_pad;
  float* ratioR = remainR + m;
  const float* x1 = soa;
  const float* y1 = soa + n_pad;
  const float* z1 = soa + 2 * n_pad;
  to_soa(xyz1, n, n_pad, soa);

  // Masses: the larger cloud's points carry 1, the smaller's max(n,m)/size, so
  // both sides hold max(n, m) in total (the original used integer division,
  // which equals this when one size is a multiple of the other).
  const float multL = static_cast<float>(std::max(n, m)) / n;
  const float multR = static_cast<float>(std::max(n, m)) / m;
  for (int k = 0; k < n_pad; ++k) remainL[k] = k < n ? multL : 0.f;
  for (int j = 0; j < m; ++j) remainR[j] = multR;
  std::fill(match, match + static_cast<std::size_t>(m) * n, 0.f);

  for (int t = 0; t < kLevels; ++t) {
    const vf level = simd::splat(level_value(t));
    // Pass 1: E[j,k] = exp(level d^2); colsum[k] = sum_j E[j,k] remainR[j].
    std::fill(colsum, colsum + n_pad, 0.f);
    for (int j = 0; j < m; ++j) {
      const vf x2 = simd::splat(xyz2[3 * j]), y2 = simd::splat(xyz2[3 * j + 1]),
               z2 = simd::splat(xyz2[3 * j + 2]), rr = simd::splat(remainR[j]);
      float* Ej = E + static_cast<std::size_t>(j) * n;
      for_chunks(n, [&](int k, int c) {
        const vf dx = simd::load(x1 + k) - x2, dy = simd::load(y1 + k) - y2,
                 dz = simd::load(z1 + k) - z2;
        const vf e = simd::vexp(level * (dx * dx + dy * dy + dz * dz));
        st(Ej + k, e, c);
        simd::store(colsum + k, simd::load(colsum + k) + e * rr);
      });
    }
    // ratioL[k]: the share of its remaining mass point k offers per unit weight.
    for (int k = 0; k < n_pad; ++k) ratioL[k] = remainL[k] / (colsum[k] + 1e-9f);
    // Pass 2: demand on each xyz2 point, capped by its remaining capacity.
    for (int j = 0; j < m; ++j) {
      const float* Ej = E + static_cast<std::size_t>(j) * n;
      vf acc = {};
      for_chunks(n, [&](int k, int c) { acc += ld(Ej + k, c) * simd::load(ratioL + k); });
      const float demand = simd::hsum(acc) * remainR[j];
      const float accept = std::min(remainR[j] / (demand + 1e-9f), 1.f);
      ratioR[j] = accept * remainR[j];
      remainR[j] = std::max(0.f, remainR[j] - demand);
    }
    // Pass 3: move the mass, E[j,k] ratioL[k] ratioR[j], and book it.
    std::fill(colsum, colsum + n_pad, 0.f);
    for (int j = 0; j < m; ++j) {
      const float* Ej = E + static_cast<std::size_t>(j) * n;
      float* Mj = match + static_cast<std::size_t>(j) * n;
      const vf rr = simd::splat(ratioR[j]);
      for_chunks(n, [&](int k, int c) {
        const vf w = ld(Ej + k, c) * simd::load(ratioL + k) * rr;
        st(Mj + k, ld(Mj + k, c) + w, c);
        simd::store(colsum + k, simd::load(colsum + k) + w);
      });
    }
    for (int k = 0; k < n; ++k) remainL[k] = std::max(0.f, remainL[k] - colsum[k]);
  }
}

double match_cost(int n, int m, const float* xyz1, const float* xyz2, const float* match) {
  const int n_pad = pad_to_lanes(n);
  std::vector<float> soa(3 * static_cast<std::size_t>(n_pad));
  to_soa(xyz1, n, n_pad, soa.data());
  const float* x1 = soa.data();
  const float* y1 = x1 + n_pad;
  const float* z1 = y1 + n_pad;
  double total = 0.0;
  for (int j = 0; j < m; ++j) {
    const vf x2 = simd::splat(xyz2[3 * j]), y2 = simd::splat(xyz2[3 * j + 1]),
             z2 = simd::splat(xyz2[3 * j + 2]);
    const float* Mj = match + static_cast<std::size_t>(j) * n;
    vf acc = {};
    for_chunks(n, [&](int k, int c) {
      const vf dx = simd::load(x1 + k) - x2, dy = simd::load(y1 + k) - y2,
               dz = simd::load(z1 + k) - z2;
      acc += ld(Mj + k, c) * simd::vsqrt(dx * dx + dy * dy + dz * dz);
    });
    total += simd::hsum_d(acc);
  }
  return total;
}

void match_cost_grad(int n, int m, const float* xyz1, const float* xyz2, const float* match,
                     float scale, float* grad_xyz1, float* grad_xyz2) {
  const int n_pad = pad_to_lanes(n);
  std::vector<float> buf(6 * static_cast<std::size_t>(n_pad), 0.f);
  float* soa = buf.data();
  float* g1 = soa + 3 * n_pad;  // SoA accumulators of d cost / d xyz1
  to_soa(xyz1, n, n_pad, soa);
  const float* x1 = soa;
  const float* y1 = soa + n_pad;
  const float* z1 = soa + 2 * n_pad;
  for (int j = 0; j < m; ++j) {
    const vf x2 = simd::splat(xyz2[3 * j]), y2 = simd::splat(xyz2[3 * j + 1]),
             z2 = simd::splat(xyz2[3 * j + 2]);
    const float* Mj = match + static_cast<std::size_t>(j) * n;
    vf sx = {}, sy = {}, sz = {};
    for_chunks(n, [&](int k, int c) {
      const vf dx = simd::load(x1 + k) - x2, dy = simd::load(y1 + k) - y2,
               dz = simd::load(z1 + k) - z2;
      const vf d2 = dx * dx + dy * dy + dz * dz;
      const vi pos = d2 > simd::splat(0.f);
      const vf safe = pos ? d2 : simd::splat(1.f);
      const vf w = pos ? ld(Mj + k, c) / simd::vsqrt(safe) : simd::splat(0.f);
      const vf gx = w * dx, gy = w * dy, gz = w * dz;
      simd::store(g1 + k, simd::load(g1 + k) + gx);
      simd::store(g1 + n_pad + k, simd::load(g1 + n_pad + k) + gy);
      simd::store(g1 + 2 * n_pad + k, simd::load(g1 + 2 * n_pad + k) + gz);
      sx += gx;
      sy += gy;
      sz += gz;
    });
    grad_xyz2[3 * j] = -scale * simd::hsum(sx);
    grad_xyz2[3 * j + 1] = -scale * simd::hsum(sy);
    grad_xyz2[3 * j + 2] = -scale * simd::hsum(sz);
  }
  for (int k = 0; k < n; ++k)
    for (int c = 0; c < 3; ++c) grad_xyz1[3 * k + c] = scale * g1[c * n_pad + k];
}

}  // namespace differ
