"""Sampling a surface into a ground-truth cloud: random points on triangles, farthest point
sampling (numpy only). The sources' dense samplers (:mod:`utils.datagen.sources`) and the
one render -> sample -> write path (:mod:`utils.datagen.build`) use them."""

import numpy as np


def sample_faces(triangles, p, n, rng):
    """Uniform random points on triangles.

    Args:
        triangles: float (F, 3, 3).
        p: float (F,) probability of each face (its share of the area for
            area-weighted sampling).
        n: number of points; rng: numpy Generator.
    Returns:
        ``xyz (n, 3)``, ``face (n,)``, ``bary (n, 3)`` (weights of the three corners).
    """
    face = rng.choice(len(triangles), size=n, p=p)
    u, v = rng.random((2, n))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = triangles[face]
    xyz = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return xyz, face, np.stack([1 - u - v, u, v], 1)


def farthest_point_sampling(xyz, k, rng):
    """Indices of ``k`` points of ``xyz (N, 3)`` chosen greedily far apart (start drawn by rng)."""
    n = len(xyz)
    if n < k:
        raise ValueError(f"cannot pick {k} points out of {n}")
    x, y, z = (np.ascontiguousarray(c) for c in np.asarray(xyz, np.float64).T)
    idx = np.empty(k, np.int64)
    idx[0] = rng.integers(n)
    dist = np.full(n, np.inf)
    for i in range(k):
        if i:
            idx[i] = np.argmax(dist)
        j = idx[i]
        np.minimum(dist, (x - x[j]) ** 2 + (y - y[j]) ** 2 + (z - z[j]) ** 2, out=dist)
    return idx
