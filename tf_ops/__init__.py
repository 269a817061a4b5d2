"""Point-cloud distance ops (Chamfer, EMD) and fused projections for DIFFER, compiled for CPU and CUDA.

Public API (the first four with the names and semantics of the PSGN-style ops of the
original code; the projections as in utils/projection.py)::

    nn_distance(xyz1 (B,N,3), xyz2 (B,M,3)) -> dist1 (B,N), idx1 (B,N), dist2 (B,M), idx2 (B,M)
    approx_match(xyz1 (B,N,3), xyz2 (B,M,3)) -> match (B,M,N)
    match_cost(xyz1, xyz2, match) -> cost (B,)
    auction_match(xyz1 (B,N,3), xyz2 (B,N,3)) -> idx1 (B,N), idx2 (B,N)
    mask_projection(pix (B,N,3), H, W, sigma_sq) -> mask (B,H,W)
    feature_projection(pix (B,N,3), feat (B,N,C), H, W, well_radius, beta) -> (B,H,W,C), (B,H,W)
    pixel_nearest(points (B,N,2+), query (B,H,W), max_dist_sq) -> idx (B,H,W)
    backend() -> 'compiled' | 'fallback'

The compiled library (``python tf_ops/build.py``) is loaded on first use; without
it the pure-TF implementations of ``tf_ops.fallback`` are used, with one warning.
``tf_ops.reference`` holds numpy/scipy references. See tf_ops/README.md.
"""
from tf_ops._common import backend, load_error
from tf_ops.approx_match_op import approx_match, match_cost
from tf_ops.auction_match_op import auction_match
from tf_ops.nn_distance_op import nn_distance
from tf_ops.pixel_nearest_op import pixel_nearest
from tf_ops.projection_op import feature_projection, mask_projection

__all__ = ["nn_distance", "approx_match", "match_cost", "auction_match", "mask_projection", "feature_projection",
           "pixel_nearest", "backend", "load_error"]
