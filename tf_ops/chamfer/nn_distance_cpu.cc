// CPU kernel of nn_distance: brute-force nearest neighbour, blocked and vectorised.
//
// The reference cloud is stored as SoA padded with NaN to a multiple of kLanes,
// so the inner loop runs over whole SIMD vectors with no remainder. Each pass
// of that loop serves a block of up to kQ query points held in registers
// (register blocking: one load of a reference vector feeds kQ distance
// computations). Each SIMD lane keeps its own running minimum and index; the
// lanes are reduced at the end, smallest index winning exact ties.
#include <cmath>
#include <limits>

#include "kernels_cpu.h"
#include "simd.h"

namespace differ {

using simd::vf;
using simd::vi;
using simd::W;

static_assert(kLanes % W == 0, "padding must be a multiple of the SIMD width");

void to_soa_padded(const float* xyz, int n, float* soa) {
  const int n_pad = pad_to_lanes(n);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int c = 0; c < 3; ++c) {
    float* dst = soa + static_cast<std::ptrdiff_t>(c) * n_pad;
    for (int i = 0; i < n; ++i) dst[i] = xyz[3 * i + c];
    for (int i = n; i < n_pad; ++i) dst[i] = nan;
  }
}

namespace {

constexpr int kQ = 4;  // query points per register block

template <int Q>
inline void search_block(const float* qx, const float* qy, const float* qz,
                         const float* rx, const float* ry, const float* rz, int m_pad,
                         float* dist, int* idx) {
  vf px[Q], py[Q], pz[Q], best[Q];
  vi bidx[Q];
  const float inf = std::numeric_limits<float>::infinity();
  for (int q = 0; q < Q; ++q) {
    px[q] = simd::splat(qx[q]);
    py[q] = simd::splat(qy[q]);
    pz[q] = simd::splat(qz[q]);
    best[q] = simd::splat(inf);
    bidx[q] = simd::splati(0);
  }
  vi jv = simd::iota();
  const vi step = simd::splati(W);
  for (int j = 0; j < m_pad; j += W) {
    const vf x = simd::load(rx + j), y = simd::load(ry + j), z = simd::load(rz + j);
    for (int q = 0; q < Q; ++q) {
      const vf dx = x - px[q], dy = y - py[q], dz = z - pz[q];
      const vf d = dx * dx + dy * dy + dz * dz;
      const vi lt = d < best[q];
      best[q] = lt ? d : best[q];
      bidx[q] = lt ? jv : bidx[q];
    }
    jv += step;
  }
  for (int q = 0; q < Q; ++q) {
    float b = best[q][0];
    int bi = bidx[q][0];
    for (int l = 1; l < W; ++l) {
      const float v = best[q][l];
      const int vi_ = bidx[q][l];
      if (v < b || (v == b && vi_ < bi)) { b = v; bi = vi_; }
    }
    dist[q] = b;
    idx[q] = bi;
  }
}

}  // namespace

void nn_search(const float* q_soa, int q_stride, int q0, int q1,
               const float* r_soa, int m, float* dist, int* idx) {
  const int m_pad = pad_to_lanes(m);
  const float* rx = r_soa;
  const float* ry = r_soa + m_pad;
  const float* rz = r_soa + 2 * static_cast<std::ptrdiff_t>(m_pad);
  const float* qx = q_soa;
  const float* qy = q_soa + q_stride;
  const float* qz = q_soa + 2 * static_cast<std::ptrdiff_t>(q_stride);
  int i = q0;
  for (; i + kQ <= q1; i += kQ)
    search_block<kQ>(qx + i, qy + i, qz + i, rx, ry, rz, m_pad, dist + i, idx + i);
  for (; i < q1; ++i)
    search_block<1>(qx + i, qy + i, qz + i, rx, ry, rz, m_pad, dist + i, idx + i);
}

void nn_distance_grad(int n, int m, const float* xyz1, const float* xyz2,
                      const float* grad_dist1, const int* idx1,
                      const float* grad_dist2, const int* idx2,
                      float* grad_xyz1, float* grad_xyz2) {
  for (int i = 0; i < 3 * n; ++i) grad_xyz1[i] = 0.f;
  for (int j = 0; j < 3 * m; ++j) grad_xyz2[j] = 0.f;
  // d/dp |p - q|^2 = 2 (p - q), and the opposite for q.
  for (int i = 0; i < n; ++i) {
    const int j = idx1[i];
    const float g = 2.f * grad_dist1[i];
    for (int c = 0; c < 3; ++c) {
      const float v = g * (xyz1[3 * i + c] - xyz2[3 * j + c]);
      grad_xyz1[3 * i + c] += v;
      grad_xyz2[3 * j + c] -= v;
    }
  }
  for (int j = 0; j < m; ++j) {
    const int i = idx2[j];
    const float g = 2.f * grad_dist2[j];
    for (int c = 0; c < 3; ++c) {
      const float v = g * (xyz2[3 * j + c] - xyz1[3 * i + c]);
      grad_xyz2[3 * j + c] += v;
      grad_xyz1[3 * i + c] -= v;
    }
  }
}

}  // namespace differ
