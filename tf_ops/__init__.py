"""Point-cloud distance ops (Chamfer, EMD) and fused projections for DIFFER, compiled for CPU and CUDA.

Public API (the first four with the names and semantics of the PSGN-style ops of the
original code; the projections as in utils/render/projection.py)::

    nn_distance(xyz1 (B,N,3), xyz2 (B,M,3)) -> dist1 (B,N), idx1 (B,N), dist2 (B,M), idx2 (B,M)
    approx_match(xyz1 (B,N,3), xyz2 (B,M,3)) -> match (B,M,N)
    match_cost(xyz1, xyz2, match) -> cost (B,)
    auction_match(xyz1 (B,N,3), xyz2 (B,N,3)) -> idx1 (B,N), idx2 (B,N)
    mask_projection(pix (B,N,3), H, W, sigma_sq) -> mask (B,H,W)
    feature_projection(pix (B,N,3), feat (B,N,C), H, W, well_radius, beta) -> (B,H,W,C), (B,H,W)
    pixel_nearest(points (B,N,2+), query (B,H,W), max_dist_sq) -> dist (B,H,W), idx (B,H,W)
    backend() -> 'compiled' | 'fallback';  load_error() -> why not compiled, or None
    gaussian_half_width(sigma_sq), well_half_width(radius) -> window half-widths (px)

The compiled library (``python tf_ops/build.py``) is loaded on first use; without
it the pure-TF implementations of ``tf_ops.fallback`` are used, with one warning.
The two projections have none there: they raise, and ``utils/render/projection.py`` (the
caller) renders with its ``local`` graph instead. ``tf_ops.reference`` holds
numpy/scipy references, ``tf_ops.params`` the numbers that define the ops.
``LOADER`` keeps the outcome of the load: ``LOADER.reset()`` makes the next use try
again (``LOADER.reset(lib_path=...)``: another file, e.g. a missing one in tests).
See tf_ops/README.md.

TensorFlow. This package is self-contained: it imports nothing from the project's
``utils`` (which uses it), and gets TensorFlow as ``import tensorflow.compat.v1 as tf``
in each module. It builds the same ops in graph and in eager mode, so it does not switch
modes: switching is a process-wide decision that belongs to the application, and the
project's entry points make it (``utils.common.tfv1.use_graph_mode()``; importing ``utils.common.tfv1``
only hides TensorFlow's start-up lines). That is why the project's modules import
``utils.common.tfv1`` before ``tf_ops``: the first import of TensorFlow in a process decides what it
prints while loading. Importing ``tf_ops`` first works as well, with TensorFlow's own
start-up messages.

Names. ``tf_ops.mask_projection`` / ``tf_ops.feature_projection`` are the raw fused kernels:
Python-number settings only, RuntimeError without the compiled library. The public renderer
is ``utils.render.mask_projection`` / ``utils.render.feature_projection`` (same definitions,
the kernel when it loads and a graph-op form otherwise, tensor ``beta``); see
docs/renderer.md.
"""

from tf_ops._common import LOADER, backend, load_error
from tf_ops.chamfer.nn_distance_op import nn_distance
from tf_ops.emd.approx_match_op import approx_match, match_cost
from tf_ops.emd.auction_match_op import auction_match
from tf_ops.params import gaussian_half_width, well_half_width
from tf_ops.projection.pixel_nearest_op import pixel_nearest
from tf_ops.projection.projection_op import feature_projection, mask_projection

__all__ = [
    "nn_distance",
    "approx_match",
    "match_cost",
    "auction_match",
    "mask_projection",
    "feature_projection",
    "pixel_nearest",
    "backend",
    "load_error",
    "LOADER",
    "gaussian_half_width",
    "well_half_width",
]
