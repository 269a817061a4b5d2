"""numpy/scipy references for the ops (float64), independent of TensorFlow.

Used by the tests, the benchmark, tf_ops/check_gpu.py and the auction_match
fallback. Every function takes one cloud pair or a batch, as noted.
"""
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

APPROX_MATCH_LEVELS = [-4.0 ** p for p in range(7, -2, -1)] + [0.0]


def nn_distance(xyz1, xyz2):
    """Batched (B,N,3), (B,M,3) -> dist1 (B,N), idx1, dist2 (B,M), idx2 with a k-d tree.

    Distances are squared Euclidean, recomputed in float64 from the found pairs.
    """
    xyz1 = np.asarray(xyz1, np.float64)
    xyz2 = np.asarray(xyz2, np.float64)
    out = [np.empty(xyz1.shape[:2]), np.empty(xyz1.shape[:2], np.int64),
           np.empty(xyz2.shape[:2]), np.empty(xyz2.shape[:2], np.int64)]
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
