"""pixel_nearest: the compiled op (CPU, and GPU where built) and the fallback switch."""

import math

import tensorflow.compat.v1 as tf

from tf_ops import _common, fallback


def pixel_nearest(points, query, max_dist_sq=math.inf):
    """The projected point nearest to each queried pixel centre (exact), and its squared distance.

    Args:
        points: float32 or float64 (B, N, D), D >= 2: row px, column px (further columns, e.g.
            depth, are ignored).
        query: (B, H, W) image batch (cast to points' dtype); pixels with ``query != 0`` are
            searched, the others get none. Pixel centres at integer coordinates.
        max_dist_sq: float, px^2: a pixel whose nearest point is farther than sqrt(max_dist_sq)
            gets none (such points cannot matter to a caller that caps the distance there).
    Returns:
        dist: (B, H, W), points' dtype: squared distance (px^2) from the pixel centre to its
            nearest point, ``+inf`` where there is none (cap it, e.g. ``tf.minimum(dist, cap)``,
            before multiplying by a mask). Differentiable w.r.t. the points' row and column:
            ``2 g (point - pixel)`` on each pixel's nearest point.
        idx: int32 (B, H, W): that point's index in ``points`` (the smallest index on exact
            ties; distances compared in double precision), -1 where there is none.
    Compiled: O(H*W + N) per image plus a search per queried pixel that grows with its distance
    to the cloud (tf_ops/README.md). Fallback: brute force through ``nn_distance``.
    """
    if not max_dist_sq >= 0:
        raise ValueError(f"pixel_nearest: max_dist_sq must be >= 0 (px^2), got {max_dist_sq!r}")
    lib = _common.library()
    if lib is None:
        return fallback.pixel_nearest(points, query, max_dist_sq)
    points = tf.convert_to_tensor(points)
    if points.dtype not in (tf.float32, tf.float64):
        points = tf.cast(points, tf.float32)
    if points.shape.rank is not None and (
        points.shape.rank != 3 or (points.shape[2] is not None and points.shape[2] < 2)
    ):
        raise ValueError(f"pixel_nearest: points must have shape (batch, points, 2 or more), got {points.shape}")
    query = tf.cast(query, points.dtype)
    if query.shape.rank is not None and query.shape.rank != 3:
        raise ValueError(f"pixel_nearest: query must be an image batch (batch, H, W), got {query.shape}")
    dist, idx = lib.differ_pixel_nearest(points, query, max_dist_sq=float(max_dist_sq))
    return dist, idx


def _grad(op, grad_dist, grad_idx):
    del grad_idx  # integer output
    points, query = op.inputs
    if grad_dist is None:
        return [tf.zeros_like(points), None]
    return [_common.library().differ_pixel_nearest_grad(points, op.outputs[1], grad_dist), None]


_common.register_gradient("DifferPixelNearest", _grad)
