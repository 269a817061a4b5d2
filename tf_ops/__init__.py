"""Point-cloud distance ops (Chamfer, EMD) for DIFFER.

Public API (names as in the PSGN-style ops of the original code):

    nn_distance(xyz1 (B,N,3), xyz2 (B,M,3)) -> dist1 (B,N), idx1 (B,N), dist2 (B,M), idx2 (B,M)

Until the compiled kernels land, this module provides the pure-TF reference.
"""
from utils.tfv1 import tf


def nn_distance(xyz1, xyz2):
    """Squared distance to the nearest neighbour in the other cloud, both directions.

    Args:
        xyz1: float32 (B, N, 3). xyz2: float32 (B, M, 3).
    Returns:
        dist1 float32 (B, N), idx1 int32 (B, N), dist2 float32 (B, M), idx2 int32 (B, M);
        distances in squared world units.
    """
    diff = xyz1[:, :, None, :] - xyz2[:, None, :, :]  # (B,N,M,3)
    d = tf.reduce_sum(tf.square(diff), -1)
    return (tf.reduce_min(d, 2), tf.argmin(d, 2, output_type=tf.int32),
            tf.reduce_min(d, 1), tf.argmin(d, 1, output_type=tf.int32))
