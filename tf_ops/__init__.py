"""Point-cloud distance ops (Chamfer, EMD) for DIFFER, compiled for CPU and CUDA.

Public API (names and semantics of the PSGN-style ops of the original code)::

    nn_distance(xyz1 (B,N,3), xyz2 (B,M,3)) -> dist1 (B,N), idx1 (B,N), dist2 (B,M), idx2 (B,M)
    approx_match(xyz1 (B,N,3), xyz2 (B,M,3)) -> match (B,M,N)
    match_cost(xyz1, xyz2, match) -> cost (B,)
    auction_match(xyz1 (B,N,3), xyz2 (B,N,3)) -> idx1 (B,N), idx2 (B,N)
    backend() -> 'compiled' | 'fallback'

The compiled library (``python tf_ops/build.py``) is loaded on first use; without
it the pure-TF implementations of ``tf_ops.fallback`` are used, with one warning.
``tf_ops.reference`` holds numpy/scipy references. See tf_ops/README.md.
"""
from tf_ops._common import backend, load_error
from tf_ops.approx_match_op import approx_match, match_cost
from tf_ops.auction_match_op import auction_match
from tf_ops.nn_distance_op import nn_distance

__all__ = ["nn_distance", "approx_match", "match_cost", "auction_match", "backend", "load_error"]
