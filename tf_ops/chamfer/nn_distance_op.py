"""nn_distance: the compiled op (CPU, and GPU where built), its gradient, and the fallback switch."""

import tensorflow.compat.v1 as tf

from tf_ops import _common, fallback


def nn_distance(xyz1, xyz2):
    """Squared distance to the nearest neighbour in the other cloud, both directions (Chamfer).

    Args:
        xyz1: float32 (B, N, 3) points, any units (typically the unit cube).
        xyz2: float32 (B, M, 3) points, same units and batch size; N, M >= 1.
    Returns:
        dist1: float32 (B, N), squared Euclidean distance (units^2) from xyz1[b, i] to its
            nearest point of xyz2[b]; idx1: int32 (B, N), that point's index in xyz2
            (the smallest index on exact ties).
        dist2: float32 (B, M), idx2: int32 (B, M): the same from xyz2 to xyz1.
    Differentiable w.r.t. both clouds (through the distances; the indices have no gradient).
    Raises ValueError (static shapes) or InvalidArgumentError (at run time) for bad shapes.
    """
    lib = _common.library()
    if lib is None:
        return fallback.nn_distance(xyz1, xyz2)
    a, b = _common.pair(xyz1, xyz2, "nn_distance")
    return tuple(lib.differ_nn_distance(a, b))


def _zeros_if_none(grad, like):
    return tf.zeros_like(like) if grad is None else grad


def _grad(op, grad_dist1, grad_idx1, grad_dist2, grad_idx2):
    del grad_idx1, grad_idx2  # integer outputs
    xyz1, xyz2 = op.inputs
    _, idx1, dist2, idx2 = op.outputs
    return list(
        _common.library().differ_nn_distance_grad(
            xyz1, xyz2, _zeros_if_none(grad_dist1, op.outputs[0]), idx1, _zeros_if_none(grad_dist2, dist2), idx2
        )
    )


_common.register_gradient("DifferNnDistance", _grad)
