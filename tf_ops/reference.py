"""numpy/scipy references for the ops (float64), independent of TensorFlow.

Used by the tests, the benchmark, tf_ops/check_gpu.py and the auction_match
fallback. Every function takes one cloud pair or a batch, as noted.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

# Relative: check_gpu.py loads this file without the tf_ops package (hence without TensorFlow).
from .params import APPROX_MATCH_LEVELS


def nn_distance(xyz1, xyz2):
    """Batched (B,N,3), (B,M,3) -> dist1 (B,N), idx1, dist2 (B,M), idx2 with a k-d tree.

    Distances are squared Euclidean, recomputed in float64 from the found pairs.
    """
    xyz1 = np.asarray(xyz1, np.float64)
    xyz2 = np.asarray(xyz2, np.float64)
    out = [
        np.empty(xyz1.shape[:2]),
        np.empty(xyz1.shape[:2], np.int64),
        np.empty(xyz2.shape[:2]),
        np.empty(xyz2.shape[:2], np.int64),
    ]
    for k in range(xyz1.shape[0]):
        _, i1 = cKDTree(xyz2[k]).query(xyz1[k])
        _, i2 = cKDTree(xyz1[k]).query(xyz2[k])
        out[0][k] = np.sum((xyz1[k] - xyz2[k][i1]) ** 2, -1)
        out[1][k] = i1
        out[2][k] = np.sum((xyz2[k] - xyz1[k][i2]) ** 2, -1)
        out[3][k] = i2
    return tuple(out)


def nn_distance_brute(p, q):
    """One pair: full squared-distance matrix (N, M) and both argmins (first index on ties)."""
    d = cdist(np.asarray(p, np.float64), np.asarray(q, np.float64), "sqeuclidean")
    return d, d.argmin(1), d.argmin(0)


def exact_assignment(p, q):
    """One pair of N points: optimal one-to-one assignment for the summed Euclidean distance.

    Returns idx1 (N,) with idx1[i] = j matched to p[i], and idx2 (N,) its inverse.
    """
    c = cdist(np.asarray(p, np.float64), np.asarray(q, np.float64))
    rows, cols = linear_sum_assignment(c)
    idx1 = np.empty(len(p), np.int32)
    idx1[rows] = cols
    idx2 = np.empty(len(p), np.int32)
    idx2[idx1] = np.arange(len(p), dtype=np.int32)
    return idx1, idx2


def emd_exact(p, q):
    """One pair of N points: exact EMD as the mean Euclidean distance of the optimal assignment."""
    idx1, _ = exact_assignment(p, q)
    return float(np.mean(np.linalg.norm(np.asarray(p, np.float64) - np.asarray(q, np.float64)[idx1], axis=1)))


def assignment_cost(p, q, idx1):
    """Mean Euclidean distance of the pairs (p[i], q[idx1[i]])."""
    return float(np.mean(np.linalg.norm(np.asarray(p, np.float64) - np.asarray(q, np.float64)[idx1], axis=1)))


def approx_match(p, q):
    """One pair, p (N,3), q (M,3): the approximate matching (M, N) in float64 (see README.md)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    n, m = len(p), len(q)
    d = cdist(q, p, "sqeuclidean")  # (M, N)
    remain_l = np.full(n, max(n, m) / n)
    remain_r = np.full(m, max(n, m) / m)
    match = np.zeros((m, n))
    for level in APPROX_MATCH_LEVELS:
        e = np.exp(level * d)
        ratio_l = remain_l / (remain_r @ e + 1e-9)
        demand = (e @ ratio_l) * remain_r
        ratio_r = np.minimum(remain_r / (demand + 1e-9), 1.0) * remain_r
        remain_r = np.maximum(0.0, remain_r - demand)
        w = e * ratio_l[None, :] * ratio_r[:, None]
        match += w
        remain_l = np.maximum(0.0, remain_l - w.sum(0))
    return match


def match_cost(p, q, match):
    """One pair: sum_{j,i} match[j,i] |p_i - q_j|."""
    return float(np.sum(np.asarray(match, np.float64) * cdist(np.asarray(q, np.float64), np.asarray(p, np.float64))))


def match_cost_grad(p, q, match):
    """One pair: d match_cost / d p (N,3) and d / d q (M,3); coincident pairs contribute 0."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    diff = p[None, :, :] - q[:, None, :]  # (M, N, 3)
    d = np.linalg.norm(diff, axis=-1)
    w = np.where(d > 0, np.asarray(match, np.float64) / np.where(d > 0, d, 1.0), 0.0)
    g = w[:, :, None] * diff
    return g.sum(0), -g.sum(1)


def nn_distance_grad(p, q, grad_dist1, idx1, grad_dist2, idx2):
    """One pair: gradient of sum(grad_dist1 * dist1) + sum(grad_dist2 * dist2) w.r.t. p and q."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    g1 = np.zeros_like(p)
    g2 = np.zeros_like(q)
    v = 2.0 * np.asarray(grad_dist1, np.float64)[:, None] * (p - q[idx1])
    g1 += v
    np.add.at(g2, idx1, -v)
    v = 2.0 * np.asarray(grad_dist2, np.float64)[:, None] * (q - p[idx2])
    g2 += v
    np.add.at(g1, idx2, -v)
    return g1, g2


# ------------------------------------------------------------------------ projections
# Dense float64 references of the fused projections, written differently from the kernels:
# the mask as a product of per-axis Gaussian tables over ALL pixels (no window), the features
# pixel row by pixel row over the points whose well reaches that row. One batch item each;
# pix (N, 3) = row px, column px, depth; points with a non-finite row or column are ignored.


def _finite_points(pix):
    pix = np.asarray(pix, np.float64)
    return pix, np.isfinite(pix[:, 0]) & np.isfinite(pix[:, 1])


def _gauss_tables(pix, h, w, sigma_sq):
    pix, ok = _finite_points(pix)
    r = np.where(ok, pix[:, 0], 1e9)[:, None]
    c = np.where(ok, pix[:, 1], 1e9)[:, None]
    d_r = np.arange(h)[None, :] - r  # (N, H) pixel minus point
    d_c = np.arange(w)[None, :] - c  # (N, W)
    return d_r, d_c, np.exp(-(d_r**2) / (2 * sigma_sq)), np.exp(-(d_c**2) / (2 * sigma_sq))


def mask_projection(pix, h, w, sigma_sq):
    """(H, W): tanh(sum_i exp(-(p_r - r_i)^2 / 2s) exp(-(p_c - c_i)^2 / 2s)) over every pixel (no window)."""
    _, _, g_r, g_c = _gauss_tables(pix, h, w, sigma_sq)
    return np.tanh(g_r.T @ g_c)


def mask_projection_grad(pix, h, w, sigma_sq, grad_mask):
    """(N, 3): gradient of sum(grad_mask * mask_projection) w.r.t. pix (depth column 0)."""
    d_r, d_c, g_r, g_c = _gauss_tables(pix, h, w, sigma_sq)
    m = np.tanh(g_r.T @ g_c)
    a = np.asarray(grad_mask, np.float64) * (1 - m**2)  # (H, W) d loss / d sum
    out = np.zeros((len(d_r), 3))
    out[:, 0] = np.sum(g_r * d_r / sigma_sq * (g_c @ a.T), 1)  # sum_h g_r (h - r)/s sum_w a g_c
    out[:, 1] = np.sum(g_c * d_c / sigma_sq * (g_r @ a), 1)
    return out


def _feature_rows(pix, feat, h, w, radius, beta):
    """Yields (row, point indices, softmax weights (n_c, W), covered (W,)) for every pixel row."""
    pix, ok = _finite_points(pix)
    z = beta / (pix[:, 2] + 1.0)
    ok &= np.isfinite(z)
    cols = np.arange(w)
    for row in range(h):
        cand = np.nonzero(ok & (np.abs(row - pix[:, 0]) <= radius))[0]
        if cand.size == 0:
            continue
        inside = np.abs(cols[None, :] - pix[cand, 1][:, None]) <= radius  # (n_c, W)
        zz = np.where(inside, z[cand][:, None], -np.inf)
        top = zz.max(0)
        covered = np.isfinite(top)
        e = np.where(inside, np.exp(zz - np.where(covered, top, 0.0)[None, :]), 0.0)
        weights = e / np.where(covered, e.sum(0), 1.0)[None, :]
        yield row, cand, weights, covered


def feature_projection(pix, feat, h, w, radius, beta):
    """(H, W, C) softmax-weighted mean of the features in each pixel's well (0 if empty), (H, W) coverage."""
    feat = np.asarray(feat, np.float64)
    out = np.zeros((h, w, feat.shape[1]))
    cov = np.zeros((h, w))
    for row, cand, weights, covered in _feature_rows(pix, feat, h, w, radius, beta):
        out[row] = weights.T @ feat[cand]
        cov[row] = covered
    return out, cov


def feature_projection_grad(pix, feat, h, w, radius, beta, grad_map):
    """Gradients of sum(grad_map * feat_map) w.r.t. pix (N, 3) (depth only) and feat (N, C)."""
    pix = np.asarray(pix, np.float64)
    feat = np.asarray(feat, np.float64)
    grad_map = np.asarray(grad_map, np.float64)
    fmap, _ = feature_projection(pix, feat, h, w, radius, beta)
    g_pix = np.zeros((len(pix), 3))
    g_feat = np.zeros_like(feat)
    g_z = np.zeros(len(pix))
    for row, cand, weights, _ in _feature_rows(pix, feat, h, w, radius, beta):
        g = grad_map[row]  # (W, C)
        g_feat[cand] += weights @ g
        # d feat_map[p] / d z_i = weight_ip (f_i - feat_map[p])
        g_z[cand] += np.sum(weights * (feat[cand] @ g.T - np.sum(g * fmap[row], 1)[None, :]), 1)
    g_pix[:, 2] = np.where(g_z != 0, g_z * -beta / (pix[:, 2] + 1.0) ** 2, 0.0)
    return g_pix, g_feat


def pixel_nearest(points, query, max_dist_sq=np.inf):
    """(H, W) int: brute-force nearest point (first index on ties, float64 distances) to every
    pixel centre with query != 0 and a point within sqrt(max_dist_sq); else -1. Also returns the
    squared distances (H, W) (inf where -1)."""
    points = np.asarray(points, np.float64)
    query = np.asarray(query)
    h, w = query.shape
    ok = np.isfinite(points[:, 0]) & np.isfinite(points[:, 1])
    r = np.where(ok, points[:, 0], np.inf)[None, :]
    c = np.where(ok, points[:, 1], np.inf)[None, :]
    idx = np.full((h, w), -1, np.int64)
    dist = np.full((h, w), np.inf)
    if not ok.any():
        return idx, dist
    cols = np.arange(w, dtype=np.float64)[:, None]
    for row in range(h):
        d = (row - r) ** 2 + (cols - c) ** 2  # (W, N)
        j = d.argmin(1)
        dj = d[np.arange(w), j]
        keep = (query[row] != 0) & (dj <= max_dist_sq)
        idx[row] = np.where(keep, j, -1)
        dist[row] = np.where(keep, dj, np.inf)
    return idx, dist
