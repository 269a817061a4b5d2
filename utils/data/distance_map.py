"""Distance maps of ground-truth silhouettes (numpy + scipy only).

The data pipeline (:mod:`utils.data`) computes one per supervision view (batch key
``'dist'``); the forward affinity (:func:`utils.losses.affinity_fwd`) and the point-wise
affinity (:func:`utils.losses.affinity_points`) read it. It does not depend on the
prediction, so it is computed once per image here, never as an (H, W, H, W) tensor.
"""

import numpy as np
from scipy import ndimage


def gt_distance_transform(mask):
    """Squared distance (px^2) from every pixel to the nearest foreground pixel.

    Args:
        mask: (H, W) or (..., H, W) array; foreground where ``mask > 0.5``.
    Returns:
        float32 array of the same shape: 0 on foreground pixels, the squared Euclidean
        distance between pixel centres elsewhere (scipy's exact Euclidean distance
        transform). An image without foreground gets H^2 + W^2 everywhere (farther than
        any pixel of the image).
    """
    mask = np.asarray(mask)
    if mask.ndim < 2:
        raise ValueError(f"mask must be (H, W) or (..., H, W), got shape {mask.shape}")
    h, w = mask.shape[-2:]
    flat = mask.reshape((-1, h, w)) > 0.5
    out = np.empty(flat.shape, np.float32)
    for k, fg in enumerate(flat):
        if fg.any():
            out[k] = np.square(ndimage.distance_transform_edt(~fg))
        else:
            out[k] = float(h * h + w * w)
    return out.reshape(mask.shape)
