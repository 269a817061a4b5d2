"""Fused mask and feature projections: the compiled ops (CPU, and GPU where built) and their
gradients.

They have no fallback in tf_ops: without the compiled library they raise RuntimeError. Their
pure-TF form is the ``local`` renderer of ``utils/render/projection.py``, which that module uses
instead (``impl='fused'`` or ``'auto'`` resolve to it, after tf_ops's one warning).
"""

import tensorflow.compat.v1 as tf

from tf_ops import _common
from tf_ops.params import gaussian_half_width, well_half_width


def _pix(pix, op):
    """``pix`` as a float32/float64 tensor, checked to be (B, N, 3) as far as the static shape tells."""
    pix = tf.convert_to_tensor(pix)
    if pix.dtype not in (tf.float32, tf.float64):
        pix = tf.cast(pix, tf.float32)
    shape = pix.shape
    if shape.rank is not None and (shape.rank != 3 or (shape[2] is not None and shape[2] != 3)):
        raise ValueError(f"{op}: pix must have shape (batch, points, 3) = (row px, column px, depth), got {shape}")
    return pix


def _compiled(op):
    """The compiled library; RuntimeError naming the reason and the alternative when there is none."""
    lib = _common.library()
    if lib is None:
        raise RuntimeError(
            f"tf_ops.{op} needs the compiled library ({_common.load_error()}); "
            f"{_common.BUILD_HINT}. Without it, use utils.render.projection.{op}, which falls back "
            f"to its 'local' graph implementation"
        )
    return lib


def _image_size(img_h, img_w, op):
    if int(img_h) != img_h or int(img_w) != img_w or img_h < 1 or img_w < 1:
        raise ValueError(f"{op}: img_h and img_w must be positive integers, got {img_h!r}, {img_w!r}")
    return int(img_h), int(img_w)


def mask_projection(pix, img_h, img_w, sigma_sq=0.4, window_half=None):
    """CAPNet soft silhouette, the raw fused kernel: same definition as ``utils.render.mask_projection``
    (the public name, which falls back to graph ops without the library).

    Args:
        pix: float32 or float64 (B, N, 3): row px, column px, depth (unused).
        img_h, img_w: int, output size in px; pixel centres at integer coordinates.
        sigma_sq: float, variance of the Gaussian splat in px^2 (> 0).
        window_half: int, half-width K (px) of each point's window of (2K+1)^2 pixels around
            (round(row), round(col)); default ``tf_ops.params.gaussian_half_width(sigma_sq)``.
    Returns:
        (B, H, W), pix's dtype: ``tanh`` of the summed Gaussians. Differentiable w.r.t. row and
        column (depth gets 0).
    Raises RuntimeError without the compiled library (see the module docstring).
    """
    img_h, img_w = _image_size(img_h, img_w, "mask_projection")
    if not sigma_sq > 0:
        raise ValueError(f"mask_projection: sigma_sq must be > 0 (px^2), got {sigma_sq!r}")
    lib = _compiled("mask_projection")
    if window_half is None:
        window_half = gaussian_half_width(sigma_sq)
    return lib.differ_mask_projection(
        _pix(pix, "mask_projection"), img_h=img_h, img_w=img_w, sigma_sq=float(sigma_sq), window_half=int(window_half)
    )


def feature_projection(pix, feat, img_h, img_w, well_radius=1.0, beta=100.0):
    """DIFFER depth-aware feature projection, the raw fused kernel: same as
    ``utils.render.feature_projection`` (the public name: graph-op fallback, tensor beta).

    Args:
        pix: float32 or float64 (B, N, 3): row px, column px, depth (world units).
        feat: (B, N, C) per-point features (cast to pix's dtype).
        img_h, img_w: int, output size in px.
        well_radius: float, px; point i is in the well of pixel p when |p_r - r_i| <= radius and
            |p_c - c_i| <= radius.
        beta: float (a Python number: a kernel attribute), softmax sharpness over beta / (depth + 1).
    Returns:
        feat_map (B, H, W, C): the softmax-weighted mean of the features in each pixel's well, 0
            where it is empty; differentiable w.r.t. depth and feat (row/column get 0: the well
            is a hard indicator).
        coverage (B, H, W): 1 where the well holds a point, else 0 (no gradient).
    Raises RuntimeError without the compiled library (see the module docstring).
    """
    img_h, img_w = _image_size(img_h, img_w, "feature_projection")
    if not well_radius >= 0:
        raise ValueError(f"feature_projection: well_radius must be >= 0 (px), got {well_radius!r}")
    lib = _compiled("feature_projection")
    pix = _pix(pix, "feature_projection")
    feat = tf.cast(feat, pix.dtype)
    if feat.shape.rank is not None and feat.shape.rank != 3:
        raise ValueError(f"feature_projection: feat must have shape (batch, points, channels), got {feat.shape}")
    feat_map, coverage, _ = lib.differ_feature_projection(
        pix,
        feat,
        img_h=img_h,
        img_w=img_w,
        well_radius=float(well_radius),
        window_half=well_half_width(well_radius),
        beta=float(beta),
    )
    return feat_map, coverage


def _attrs(op, names):
    return {k: op.get_attr(k) for k in names}


def _mask_grad(op, grad_mask):
    (pix,) = op.inputs
    return [
        _common.library().differ_mask_projection_grad(
            pix, op.outputs[0], grad_mask, **_attrs(op, ("img_h", "img_w", "sigma_sq", "window_half"))
        )
    ]


def _feature_grad(op, grad_map, grad_coverage, grad_stats):
    del grad_coverage, grad_stats  # coverage is a step function; stats are internal
    pix, feat = op.inputs
    if grad_map is None:
        grad_map = tf.zeros_like(op.outputs[0])
    g_pix, g_feat = _common.library().differ_feature_projection_grad(
        pix,
        feat,
        op.outputs[0],
        op.outputs[2],
        grad_map,
        **_attrs(op, ("img_h", "img_w", "well_radius", "window_half", "beta")),
    )
    return [g_pix, g_feat]


_common.register_gradient("DifferMaskProjection", _mask_grad)
_common.register_gradient("DifferFeatureProjection", _feature_grad)
