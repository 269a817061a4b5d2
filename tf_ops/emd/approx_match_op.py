"""approx_match and match_cost: the compiled ops, match_cost's gradient, and the fallback switch."""

import tensorflow.compat.v1 as tf

from tf_ops import _common, fallback


def approx_match(xyz1, xyz2):
    """Approximate EMD matching (the multi-level soft assignment of PSGN; README.md).

    Args:
        xyz1: float32 (B, N, 3); xyz2: float32 (B, M, 3); N and M may differ.
    Returns:
        match: float32 (B, M, N); match[b, j, i] is the mass moved from xyz1[b, i] to
        xyz2[b, j]. Each point of the larger cloud carries mass 1, each point of the
        smaller one max(N, M) / its size. No gradient (treat as a constant).
    """
    lib = _common.library()
    if lib is None:
        return fallback.approx_match(xyz1, xyz2)
    a, b = _common.pair(xyz1, xyz2, "approx_match")
    return lib.differ_approx_match(a, b)


def match_cost(xyz1, xyz2, match):
    """Cost of a matching: cost[b] = sum_{j,i} match[b, j, i] * |xyz1[b, i] - xyz2[b, j]|.

    Args:
        xyz1: float32 (B, N, 3); xyz2: float32 (B, M, 3); match: float32 (B, M, N).
    Returns:
        float32 (B,), in the units of the points (Euclidean, not squared); divide by
        max(N, M) for the approximate EMD per point. Differentiable w.r.t. xyz1 and
        xyz2 (coincident pairs contribute 0), not w.r.t. match.
    """
    lib = _common.library()
    if lib is None:
        return fallback.match_cost(xyz1, xyz2, match)
    a, b = _common.pair(xyz1, xyz2, "match_cost")
    match = tf.convert_to_tensor(match, dtype=tf.float32, name="match")
    return lib.differ_match_cost(a, b, match)


def _grad(op, grad_cost):
    xyz1, xyz2, match = op.inputs
    g1, g2 = _common.library().differ_match_cost_grad(xyz1, xyz2, match, grad_cost)
    return [g1, g2, None]


_common.register_gradient("DifferApproxMatch", None)
_common.register_gradient("DifferMatchCost", _grad)
