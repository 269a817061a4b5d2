"""Pure-TensorFlow implementations of the ops: used when the compiled library is
missing, and importable on their own so tests can compare them with the
compiled kernels.

* ``nn_distance``: nearest neighbours from the matmul form of the squared
  distance, |a|^2 + |b|^2 - 2 a.b (the fastest pure-TF graph), in blocks of
  rows when B*N*M is large; the returned distances are then recomputed exactly
  as |a - b[idx]|^2 from the gathered neighbours, which also makes the
  gradient a cheap gather/scatter. The matmul form rounds (relative error
  ~1e-7 of |a|^2), so where two neighbours are closer than that the chosen
  index may differ from the compiled op's; the distance then differs by no
  more than that rounding.
* ``approx_match`` / ``match_cost``: the same multi-level approximate matching
  as the C++/CUDA kernels (README.md), unrolled over its ten levels with dense
  (B, M, N) tensors; no gradient through the match, as in the compiled op.
* ``auction_match``: scipy's exact ``linear_sum_assignment`` on the CPU through
  ``tf.numpy_function`` -- exact, so it is never worse than the auction; it is
  slower and does not run on a GPU. Not differentiable (indices).
* ``mask_projection`` / ``feature_projection``: none here. Their pure-TF
  form is the ``local`` renderer of ``utils/render/projection.py`` (windows + scatter
  sums), which that module uses when the library is missing (tf_ops imports
  nothing from ``utils``).
* ``pixel_nearest``: brute force, the fallback ``nn_distance`` between the
  pixel centres and the points (row, col, 0); like there, near-ties may pick
  another index than the compiled op. The distance is recomputed from the
  gathered point (its gradient goes through the gather).
"""

import math

import numpy as np
import tensorflow.compat.v1 as tf

from tf_ops import _common
from tf_ops.params import APPROX_MATCH_LEVELS

NN_BLOCK_ELEMENTS = 1 << 26  # max B * rows * M per distance block (256 MiB of float32)


def _runtime_checks(a, b, op, same_points=False):
    """Assertions for dimensions unknown at graph construction (the static ones are checked already)."""
    if a.shape.is_fully_defined() and b.shape.is_fully_defined():
        return []
    sa, sb = tf.shape(a), tf.shape(b)
    checks = [
        tf.debugging.assert_equal(tf.rank(a), 3, message=f"{op}: xyz1 must be (batch, points, 3)"),
        tf.debugging.assert_equal(tf.rank(b), 3, message=f"{op}: xyz2 must be (batch, points, 3)"),
        tf.debugging.assert_equal(sa[-1], 3, message=f"{op}: xyz1 must have 3 coordinates"),
        tf.debugging.assert_equal(sb[-1], 3, message=f"{op}: xyz2 must have 3 coordinates"),
        tf.debugging.assert_positive(sa[1], message=f"{op}: xyz1 is an empty point cloud"),
        tf.debugging.assert_positive(sb[1], message=f"{op}: xyz2 is an empty point cloud"),
        tf.debugging.assert_equal(sa[0], sb[0], message=f"{op}: xyz1 and xyz2 must have the same batch size"),
    ]
    if same_points:
        checks.append(
            tf.debugging.assert_equal(sa[1], sb[1], message=f"{op}: xyz1 and xyz2 must have the same number of points")
        )
    return checks


def _sqdist_direct(p, q):
    """float (B, P, Q): |p_i - q_j|^2 summed coordinate by coordinate (no cancellation)."""
    d = 0.0
    for c in range(3):
        d = d + tf.square(p[:, :, None, c] - q[:, None, :, c])
    return d


def _nn_indices(a, b):
    """argmin indices both ways from the matmul form; a (B,N,3), b (B,M,3), no gradient."""
    sq_b = tf.reduce_sum(tf.square(b), -1)  # (B, M)

    def block(a_blk):
        d = (
            tf.reduce_sum(tf.square(a_blk), -1)[:, :, None]
            + sq_b[:, None, :]
            - 2.0 * tf.matmul(a_blk, b, transpose_b=True)
        )
        # TF's arg/reduce-min over a non-last axis is several times slower than a transpose
        # followed by a last-axis reduction.
        d_t = tf.transpose(d, [0, 2, 1])
        return (tf.argmin(d, 2, output_type=tf.int32), tf.reduce_min(d_t, 2), tf.argmin(d_t, 2, output_type=tf.int32))

    bsz, n, m = a.shape[0], a.shape[1], b.shape[1]
    rows = None
    if bsz is not None and n is not None and m is not None and bsz * n * m > NN_BLOCK_ELEMENTS:
        rows = max(1, NN_BLOCK_ELEMENTS // (bsz * m))
    if rows is None or rows >= n:
        idx1, _, idx2 = block(a)
        return idx1, idx2
    parts, best, best_idx = [], None, None
    for r0 in range(0, n, rows):
        i1, dmin, i2 = block(a[:, r0 : r0 + rows])
        parts.append(i1)
        i2 = i2 + r0
        if best is None:
            best, best_idx = dmin, i2
        else:  # strict <: an earlier block (smaller index) keeps exact ties
            better = dmin < best
            best, best_idx = tf.where(better, dmin, best), tf.where(better, i2, best_idx)
    return tf.concat(parts, 1), best_idx


def nn_distance(xyz1, xyz2):
    """Pure-TF nn_distance; same contract as ``tf_ops.nn_distance``."""
    a, b = _common.pair(xyz1, xyz2, "nn_distance")
    with tf.name_scope("nn_distance_fallback"), tf.control_dependencies(_runtime_checks(a, b, "nn_distance")):
        # Centring on xyz2's mean shrinks |a|^2, |b|^2 and so the rounding of the matmul form.
        centre = tf.reduce_mean(b, axis=1, keepdims=True)
        idx1, idx2 = _nn_indices(tf.stop_gradient(a - centre), tf.stop_gradient(b - centre))
        dist1 = tf.reduce_sum(tf.square(a - tf.gather(b, idx1, batch_dims=1)), -1)
        dist2 = tf.reduce_sum(tf.square(b - tf.gather(a, idx2, batch_dims=1)), -1)
    return dist1, idx1, dist2, idx2


def approx_match(xyz1, xyz2):
    """Pure-TF approx_match; same contract and algorithm as ``tf_ops.approx_match``."""
    a, b = _common.pair(xyz1, xyz2, "approx_match")
    with tf.name_scope("approx_match_fallback"), tf.control_dependencies(_runtime_checks(a, b, "approx_match")):
        a, b = tf.stop_gradient(a), tf.stop_gradient(b)
        n = tf.cast(tf.shape(a)[1], tf.float32)
        m = tf.cast(tf.shape(b)[1], tf.float32)
        big = tf.maximum(n, m)
        d = _sqdist_direct(b, a)  # (B, M, N)
        remain_l = tf.ones_like(a[:, :, 0]) * (big / n)  # (B, N)
        remain_r = tf.ones_like(b[:, :, 0]) * (big / m)  # (B, M)
        match = tf.zeros_like(d)
        for level in APPROX_MATCH_LEVELS:
            e = tf.exp(level * d)
            ratio_l = remain_l / (tf.matmul(remain_r[:, None, :], e)[:, 0, :] + 1e-9)
            demand = tf.matmul(e, ratio_l[:, :, None])[:, :, 0] * remain_r
            accept = tf.minimum(remain_r / (demand + 1e-9), 1.0)
            ratio_r = accept * remain_r
            remain_r = tf.maximum(0.0, remain_r - demand)
            w = e * ratio_l[:, None, :] * ratio_r[:, :, None]
            match = match + w
            remain_l = tf.maximum(0.0, remain_l - tf.reduce_sum(w, 1))
    return tf.stop_gradient(match)


def match_cost(xyz1, xyz2, match):
    """Pure-TF match_cost (B,); differentiable w.r.t. the points, not the match."""
    a, b = _common.pair(xyz1, xyz2, "match_cost")
    match = tf.convert_to_tensor(match, dtype=tf.float32, name="match")
    if match.shape.rank is not None and match.shape.rank != 3:
        raise ValueError(f"match_cost: match must have shape (batch, M, N), got {match.shape}")
    with tf.name_scope("match_cost_fallback"), tf.control_dependencies(_runtime_checks(a, b, "match_cost")):
        d2 = _sqdist_direct(b, a)  # (B, M, N)
        pos = d2 > 0
        dist = tf.where(pos, tf.sqrt(tf.where(pos, d2, tf.ones_like(d2))), tf.zeros_like(d2))
        return tf.reduce_sum(tf.stop_gradient(match) * dist, axis=[1, 2])


def auction_match(xyz1, xyz2, rel_tol=None):
    """Exact assignment with scipy on the CPU; same contract as ``tf_ops.auction_match``.

    ``rel_tol`` is accepted for signature compatibility and ignored (the result is exact).
    """
    del rel_tol
    a, b = _common.pair(xyz1, xyz2, "auction_match", same_points=True)

    def solve(p, q):
        if p.ndim != 3 or q.ndim != 3 or p.shape[0] != q.shape[0] or p.shape[1] != q.shape[1] or p.shape[1] == 0:
            raise ValueError(
                f"auction_match: need two non-empty clouds (B, N, 3) of equal shape, got {p.shape}, {q.shape}"
            )
        if not (np.isfinite(p).all() and np.isfinite(q).all()):
            raise ValueError("auction_match: xyz1 or xyz2 contains NaN or Inf")
        from tf_ops import reference  # scipy: imported only when this fallback runs

        idx1 = np.empty(p.shape[:2], np.int32)
        idx2 = np.empty(p.shape[:2], np.int32)
        for k in range(p.shape[0]):
            idx1[k], idx2[k] = reference.exact_assignment(p[k], q[k])
        return idx1, idx2

    with tf.name_scope("auction_match_fallback"):
        idx1, idx2 = tf.numpy_function(solve, [a, b], [tf.int32, tf.int32], stateful=False)
        shape = a.shape[:2].merge_with(b.shape[:2]) if a.shape.rank == 3 and b.shape.rank == 3 else None
        for t in (idx1, idx2):
            t.set_shape(shape if shape is not None else [None, None])
    return idx1, idx2


def pixel_nearest(points, query, max_dist_sq=math.inf):
    """Pure-TF pixel_nearest (brute force); same contract as ``tf_ops.pixel_nearest``."""
    points = tf.convert_to_tensor(points)
    dtype = points.dtype if points.dtype in (tf.float32, tf.float64) else tf.float32
    rc = tf.cast(points[..., :2], dtype)  # (B, N, 2) row, col
    query = tf.convert_to_tensor(query)
    img_h, img_w = int(query.shape[1]), int(query.shape[2])
    with tf.name_scope("pixel_nearest_fallback"):
        # For the search, far points are clipped (and non-finite ones moved) to a bound beyond
        # the cap: they stay out of reach, and coordinates stay small for the matmul form.
        bound = float(max(img_h, img_w)) + (2.0 * math.sqrt(max_dist_sq) if max_dist_sq < 1e12 else 1e6)
        search = tf.cast(tf.stop_gradient(rc), tf.float32)
        search = tf.where(
            tf.math.is_finite(search), tf.clip_by_value(search, -bound, bound), tf.fill(tf.shape(search), bound)
        )
        search = tf.concat([search, tf.zeros_like(search[..., :1])], -1)  # (B, N, 3)
        rows, cols = tf.meshgrid(tf.range(img_h), tf.range(img_w), indexing="ij")
        grid = tf.stack([rows, cols], -1)  # (H, W, 2)
        grid3 = tf.cast(tf.concat([tf.reshape(grid, [-1, 2]), tf.zeros([img_h * img_w, 1], tf.int32)], -1), tf.float32)
        _, idx, _, _ = nn_distance(tf.tile(grid3[None], [tf.shape(search)[0], 1, 1]), search)
        idx = tf.reshape(idx, tf.shape(query))  # (B, H, W)
        # the distance, exactly and differentiably, from the gathered point
        near = tf.gather(rc, idx, batch_dims=1)  # (B, H, W, 2)
        dist = tf.reduce_sum(tf.square(near - tf.cast(grid, dtype)), -1)
        keep = tf.logical_and(dist <= max_dist_sq, tf.not_equal(query, 0))
        return (
            tf.where(keep, dist, tf.fill(tf.shape(dist), tf.constant(math.inf, dtype))),
            tf.where(keep, idx, -tf.ones_like(idx)),
        )
