"""2D losses on projections: silhouette BCE, CAPNet affinity, rgb L2, part cross-entropy.

Every loss returns a float32 scalar, the mean over batch and pixels; the training script
applies the weights (``wt_bce``, ``wt_aff_fwd``, ...). Images are (B, H, W[, C]); a batch of
views is folded into B by the caller.

Affinity losses (CAPNet paper: a 2D Chamfer-like distance between silhouettes):

* forward, :func:`affinity_fwd`: every predicted-mask pixel ``p`` is weighted by ``D_gt(p)``,
  the squared distance (px^2) to the nearest ground-truth foreground pixel:
  ``mean_p M_pred(p) * D_gt(p)``. ``D_gt`` does not depend on the prediction, so it is
  computed once per image in the data pipeline with :func:`utils.data.distance_map.gt_distance_transform`
  (:mod:`utils.data.distance_map`: scipy's exact Euclidean distance transform), never as an
  (H, W, H, W) tensor.
* backward, :func:`affinity_bwd`: every ground-truth foreground pixel ``p`` is weighted by the
  squared distance (px^2) to the nearest **projected point** (not the nearest
  predicted-foreground pixel): ``mean_p M_gt(p) * min(min_i |p - (r_i, c_i)|^2, cap)``.
  Why points: (1) the distance is a smooth function of the nearest point's position, so the
  gradient pulls that point towards the uncovered ground-truth pixel, which is what the term
  is for; with "nearest predicted-foreground pixel" the location of the minimum is a discrete
  argmin over pixels with no gradient, and the only gradient left flows through the mask
  values of far pixels, which are tanh of Gaussian tails, numerically zero; (2) it is a 2D
  nearest-point query (``tf_ops.pixel_nearest``), O(B*(H*W + N)) time and memory with the
  compiled op, instead of an (H*W, H*W) pixel-pair table; (3) it does not depend on
  ``sigma_sq`` or on a threshold of the soft mask. ``cap`` (default: the squared image
  diagonal H^2 + W^2) stops points behind the camera (at -1e4 px) or far off-image from
  dominating when a batch element has no point near the image: the term then saturates and
  the BCE does the work.

Scale: the original training script multiplied both affinity means by 1e-4 *inside* the
script (``loss_fwd = 1e-4 * reduce_mean(fwd)``) before its ``wt_aff_fwd``/``wt_aff_bwd``
weights; these functions do not: the graph builder applies :data:`AFFINITY_SCALE`.

What the original code actually computed (``--affinity original``,
:func:`affinity_fwd_original`, :func:`affinity_bwd_original`): it tiled each (B, H, W)
mask to (B, H, W, H, W) along the *trailing* axes, so the "minimum over all other pixels" of
``mask_a(p) * (d(p, q) + 1) * weight_b(p)`` saw ``mask_a``/``weight_b`` at the fixed pixel
``p`` only, and the minimum over ``q`` of ``d(p, q) + 1`` is 1 (at ``q = p``). Each term
therefore collapses to a per-pixel weighting of one mask by the other:
``fwd(p) = pred(p) * (gt(p) + 1e6 (1 - gt(p)))``,
``bwd(p) = gt(p) * (pred(p) + 1e6 (1 - pred(p)))``: after the 1e-4 scale, a strong L1-like
penalty on predicted foreground outside the GT silhouette and on GT foreground the
prediction leaves empty. Its ``dist_mat += 1.`` also mutated one numpy array shared by
all views (``grid_dist_tensor``, passed to every view's call), so view k (0-based) saw
``d + k + 1`` and, the minimum being taken at ``q = p``, its two terms were scaled by k + 1.
That accumulation is a bug; ``--affinity_view_weight original`` (set by ``--preset original``)
reproduces it through the ``image_weights`` argument, ``equal`` (the default) does not.
The paper's formula, the default (``--affinity paper``), is a distance-weighted silhouette
term whose magnitudes (px^2) differ from the original's.
"""

from utils.common.tfv1 import tf  # before tf_ops: TensorFlow loads quietly, in graph mode

import tf_ops

AFFINITY_SCALE = 1e-4  # the original's training script multiplied both affinity means (px^2) by this

ORIGINAL_AFFINITY_FAR = 1e6  # the original's weight of pixels outside the other mask
BCE_CLIP = 1e-7  # probabilities clipped to [BCE_CLIP, 1 - BCE_CLIP] (1 - 1e-8 rounds to 1 in float32)
LOG_EPS = 1e-8  # part cross-entropy: log(p + eps)


def mask_bce(pred_mask, gt_mask):
    """Binary cross-entropy on probabilities, as the original's 'bce_prob'.

    ``-gt log(p) - (1 - gt) log(1 - p)`` with ``p = clip(pred, 1e-7, 1 - 1e-7)``
    (the original's ``log(pred + 1e-8)`` form, made safe in float32).

    Args:
        pred_mask: float32 (B, H, W) in [0, 1] (from ``mask_projection``).
        gt_mask: float32 (B, H, W) in {0, 1}.
    Returns:
        float32 scalar, mean over batch and pixels.
    """
    pred = tf.convert_to_tensor(pred_mask)
    gt = tf.cast(gt_mask, pred.dtype)
    # The original wrote log(pred + eps) and log|1 - pred + eps|. TensorFlow's
    # arithmetic optimiser may evaluate the second as (1 + eps) - pred, which is
    # exactly 0 in float32 once tanh saturates (pred == 1.0): log 0 = -inf and
    # 0 * -inf = NaN. Clipping the probability instead is equivalent up to eps
    # and cannot be reordered into a zero.
    p = tf.clip_by_value(pred, BCE_CLIP, 1.0 - BCE_CLIP)
    loss = -gt * tf.log(p) - (1.0 - gt) * tf.log(1.0 - p)
    return tf.reduce_mean(loss)


def _weighted_mean(values, image_weights):
    """Mean over (B, H, W) of ``values``, image b weighted by ``image_weights[b]`` (None: all 1).

    Args:
        values: float32 (B, H, W). image_weights: None or float32 (B,).
    Returns:
        float32 scalar ``mean_{b,p} w_b * values(b, p)`` (the weights scale, they do not renormalise).
    """
    if image_weights is None:
        return tf.reduce_mean(values)
    return tf.reduce_mean(values * tf.cast(image_weights, values.dtype)[:, None, None])


def affinity_fwd(pred_mask, gt_dist, image_weights=None):
    """Forward affinity: predicted foreground far from the ground truth is penalised.

    Args:
        pred_mask: float32 (B, H, W) in [0, 1].
        gt_dist: float32 (B, H, W), squared distance (px^2) to the nearest ground-truth
            foreground pixel, 0 on the foreground (:func:`gt_distance_transform`).
        image_weights: None or float32 (B,), a factor per image (``--affinity_view_weight``).
    Returns:
        float32 scalar, ``mean_{b,p} w_b * pred(b,p) * gt_dist(b,p)`` in px^2 (unscaled; the
        graph builder applies the original's 1e-4).
    """
    pred = tf.convert_to_tensor(pred_mask)
    return _weighted_mean(pred * tf.cast(gt_dist, pred.dtype), image_weights)


def affinity_fwd_original(pred_mask, gt_mask, image_weights=None):
    """The original code's forward affinity as it behaves (see the module docstring).

    Args:
        pred_mask: float32 (B, H, W) in [0, 1]. gt_mask: float32 (B, H, W) in {0, 1}.
        image_weights: None or float32 (B,), a factor per image: ``k + 1`` for view k reproduces
            the original's ``dist_mat += 1.`` accumulation (``--affinity_view_weight original``).
    Returns:
        float32 scalar, ``mean_{b,p} w_b * pred * (gt + 1e6 * (1 - gt))`` (unscaled, like
        :func:`affinity_fwd`).
    """
    pred = tf.convert_to_tensor(pred_mask)
    gt = tf.cast(gt_mask, pred.dtype)
    return _weighted_mean(pred * (gt + ORIGINAL_AFFINITY_FAR * (1.0 - gt)), image_weights)


def affinity_bwd_original(pred_mask, gt_mask, image_weights=None):
    """The original code's backward affinity as it behaves (see the module docstring).

    Args:
        pred_mask: float32 (B, H, W) in [0, 1]. gt_mask: float32 (B, H, W) in {0, 1}.
        image_weights: None or float32 (B,), as :func:`affinity_fwd_original`.
    Returns:
        float32 scalar, ``mean_{b,p} w_b * gt * (pred + 1e6 * (1 - pred))`` (unscaled).
    """
    pred = tf.convert_to_tensor(pred_mask)
    gt = tf.cast(gt_mask, pred.dtype)
    return _weighted_mean(gt * (pred + ORIGINAL_AFFINITY_FAR * (1.0 - pred)), image_weights)


def affinity_bwd(pix, gt_mask, max_dist_sq=None, image_weights=None):
    """Backward affinity: ground-truth foreground far from every projected point is penalised.

    For every ground-truth foreground pixel, the squared distance (px^2) to the nearest
    projected point (see the module docstring for why points rather than predicted pixels),
    capped at ``max_dist_sq``; the mean over all pixels (background pixels count as 0).

    The nearest point is found exactly by ``tf_ops.pixel_nearest`` (only for the pixels where
    ``gt_mask != 0``: a distance transform of the rasterised points, then a search over the
    few cells that can hold the nearest one; O(H*W + N) per image instead of the H*W*N of a
    brute-force query); the gradient is ``2 (point - pixel)`` on each pixel's nearest point.

    Args:
        pix: float32 (B, N, 3) from ``camera.perspective_transform`` (row px, col px, depth;
            depth unused).
        gt_mask: float32 (B, H, W) in {0, 1}; H, W must be static.
        max_dist_sq: float, cap in px^2 on each pixel's distance; default H^2 + W^2. Beyond
            it the term is constant (zero gradient), so points behind the camera or far off
            the image never dominate.
        image_weights: None or float32 (B,), a factor per image (``--affinity_view_weight``).
    Returns:
        float32 scalar in px^2 (unscaled; the graph builder applies the original's 1e-4).
        Gradient flows to the row/column of each pixel's nearest point.
    """
    pix = tf.convert_to_tensor(pix)
    gt = tf.cast(gt_mask, pix.dtype)
    img_h, img_w = int(gt.shape[1]), int(gt.shape[2])
    if max_dist_sq is None:
        max_dist_sq = float(img_h * img_h + img_w * img_w)
    dist, _ = tf_ops.pixel_nearest(pix, gt, max_dist_sq)  # (B,H,W) px^2, +inf: background or beyond the cap
    dist = tf.minimum(dist, max_dist_sq)
    return _weighted_mean(gt * dist, image_weights)


def rgb_l2(pred_rgb, gt_rgb):
    """Mean squared error of rendered colours.

    Args:
        pred_rgb: float32 (B, H, W, 3), e.g. ``feature_projection`` of rgb in [0, 1].
        gt_rgb: float32 (B, H, W, 3), same range.
    Returns:
        float32 scalar, the mean over batch, pixels and channels of (pred - gt)^2.
    """
    pred = tf.convert_to_tensor(pred_rgb)
    return tf.reduce_mean(tf.square(pred - tf.cast(gt_rgb, pred.dtype)))


def part_cross_entropy(pred_probs, gt_labels, eps=LOG_EPS):
    """Cross-entropy of rendered part probabilities against a label image.

    Args:
        pred_probs: float32 (B, H, W, K+1) probabilities, channel 0 = background
            (``part_projection``).
        gt_labels: int32 (B, H, W) in 0..K, 0 = background.
        eps: float, added inside the log so log(0) never happens.
    Returns:
        float32 scalar, ``mean_{b,p} -log(pred[b, p, label(b, p)] + eps)``.
    """
    pred = tf.convert_to_tensor(pred_probs)
    n_cls = int(pred.shape[-1])
    onehot = tf.one_hot(tf.cast(gt_labels, tf.int32), n_cls, dtype=pred.dtype)
    return tf.reduce_mean(-tf.reduce_sum(onehot * tf.log(pred + eps), axis=-1))


def affinity_points(pix, gt_dist, min_depth=2e-3):
    """Point-wise forward affinity: how far each projected point lies from the GT silhouette.

    Not in the original. The pixel-wise forward affinity (:func:`affinity_fwd`) only
    sees points through the mask they paint inside the image, so a point that has
    left the image (in some view) receives no gradient from any 2D loss and stays a
    stray point forever. This term samples the GT distance map bilinearly at every
    projected point (clamped into the image) and adds the point's distance to the
    image rectangle, so every point is pulled towards the silhouette.

    Args:
        pix: float32 (B, N, 3) from ``camera.perspective_transform`` (row px, col px, depth).
        gt_dist: float32 (B, H, W), squared px distance to the nearest GT foreground pixel.
        min_depth: points with depth below this (behind the camera: depth 1e-3) are ignored.
    Returns:
        float32 scalar: mean over valid points of the distance in px (not squared,
        so far points pull with a bounded force).
    """
    pix = tf.convert_to_tensor(pix)
    dist = tf.sqrt(tf.maximum(tf.cast(gt_dist, pix.dtype), 0.0))  # (B,H,W) px
    img_h, img_w = int(dist.shape[1]), int(dist.shape[2])
    row, col, depth = tf.unstack(pix, axis=-1)
    r = tf.clip_by_value(row, 0.0, img_h - 1.0)
    c = tf.clip_by_value(col, 0.0, img_w - 1.0)
    outside = tf.sqrt(tf.square(row - r) + tf.square(col - c) + 1e-12) - 1e-6
    r0 = tf.minimum(tf.floor(r), img_h - 2.0)
    c0 = tf.minimum(tf.floor(c), img_w - 2.0)
    fr, fc = r - r0, c - c0
    r0i, c0i = tf.cast(r0, tf.int32), tf.cast(c0, tf.int32)
    # Flat indices into dist, (B, N): one plain gather per corner (the values of a batched
    # gather_nd, without building its (B, N, 3) index tensors every step; dist takes no gradient).
    flat = tf.reshape(dist, [-1])
    base = (tf.range(tf.shape(dist)[0])[:, None] * img_h + r0i) * img_w + c0i

    def at(dr, dc):
        return tf.gather(flat, base + (dr * img_w + dc))

    inside = (1 - fr) * (1 - fc) * at(0, 0) + (1 - fr) * fc * at(0, 1) + fr * (1 - fc) * at(1, 0) + fr * fc * at(1, 1)
    valid = tf.cast(depth > min_depth, pix.dtype)
    return tf.reduce_sum(valid * (inside + outside)) / tf.maximum(tf.reduce_sum(valid), 1.0)
