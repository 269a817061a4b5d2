"""The paper's renderer: cameras and the differentiable mask and feature projections of point clouds.

The public API (docs/renderer.md lists it with shapes, units and an example)::

    from utils import render
    cam = render.Camera.from_az_el(az, el, 64, 64)         # or Camera(R, t, ...), Camera.from_opencv(K, R, t, ...)
    pix = cam.project(xyz)                                 # (B, N, 3) world -> row px, column px, depth
    mask = render.mask_projection(pix, 64, 64)             # (B, H, W) soft silhouette
    rgb, coverage = render.feature_projection(pix, feat, 64, 64, beta=100.0)   # (B, H, W, C), (B, H, W)

It works in TensorFlow 2's eager mode (``tf.function``, ``tf.GradientTape``) and in the
project's TF1-style graphs; importing it changes no process-wide setting (graph mode is
switched on by our entry points, :func:`utils.common.tfv1.use_graph_mode`). One name per function
whatever the backend: the fused compiled kernel when ``tf_ops``'s library loads, its
``'local'`` graph-op form otherwise (after one warning). ``tf_ops.mask_projection`` /
``tf_ops.feature_projection`` are the raw kernels underneath: same definition, but they raise
without the compiled library and take only Python-number settings; use these names instead.
"""

from utils.render.camera import (
    DEFAULT_DISTANCE,
    MIN_DEPTH,
    OFF_IMAGE,
    Camera,
    intrinsics,
    perspective_transform,
    project,
    world2cam,
)
from utils.render.projection import CHOICES, IMPLS, feature_projection, mask_projection, part_projection, resolve_impl


def auto_impl():
    """The projection implementation ``impl='auto'`` runs: 'fused' when the compiled kernels are loaded
    (tf_ops.backend() == 'compiled'), else 'local'."""
    return resolve_impl("auto")


__all__ = [
    "Camera",
    "project",
    "world2cam",
    "perspective_transform",
    "intrinsics",
    "DEFAULT_DISTANCE",
    "MIN_DEPTH",
    "OFF_IMAGE",
    "mask_projection",
    "feature_projection",
    "part_projection",
    "resolve_impl",
    "auto_impl",
    "IMPLS",
    "CHOICES",
]
