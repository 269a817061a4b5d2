"""The one graph builder shared by training and metrics, for every task.

A *task* (:class:`utils.task.Task`: ``rgb.task.TASK``, ``partseg.task.TASK``) supplies what
differs between colour and part reconstruction; everything else -- the placeholders, the
network's structure branch, projecting every supervision view, the mask and affinity losses,
weight decay, the optional 3D loss and the validation Chamfer -- is built here once, from the
plain values of a :class:`GraphSettings` (made from the training flags by
:meth:`GraphSettings.from_args` at the entry points).
"""

from __future__ import annotations

import argparse
import dataclasses

from utils import losses, metrics
from utils.common.tfv1 import tf  # before tf_ops: TensorFlow loads quietly, in graph mode
from utils.data import N_GT_PTS
from utils.net import layers
from utils.net.recon_net import recon_net
from utils.render import camera, projection
from utils.task import Task

import tf_ops

NONFINITE_TAG = "non-finite network output"  # in the error raised when predictions become NaN/inf


def _flatten_views(x):
    """(B, V, ...) -> (B*V, ...)."""
    shape = x.shape.as_list()
    return tf.reshape(x, [shape[0] * shape[1]] + shape[2:])


def _repeat_views(x, n_views):
    """(B, ...) -> (B*V, ...), each sample repeated V times (matching _flatten_views)."""
    shape = x.shape.as_list()
    x = tf.tile(tf.expand_dims(x, 1), [1, n_views] + [1] * (len(shape) - 1))
    return tf.reshape(x, [shape[0] * n_views] + shape[1:])


INPUT_SCALES = {"unit": 1.0, "255": 255.0}


def network_input(image: tf.Tensor, input_scale: str = "unit") -> tf.Tensor:
    """What the network sees of an input image.

    Args:
        image: float32 (B, H, W, 3), RGB in [0, 1] (every loader and the inference code
            feed this).
        input_scale: 'unit' (unchanged) or '255' (multiplied by 255: the original fed raw
            0..255 pixel values). Applied inside the graph, so a saved model expects [0, 1]
            whatever it was trained with.
    Returns:
        float32 (B, H, W, 3).
    """
    if input_scale not in INPUT_SCALES:
        raise ValueError(f"input_scale must be one of {tuple(INPUT_SCALES)}, got {input_scale!r}")
    factor = INPUT_SCALES[input_scale]
    return image if factor == 1.0 else image * factor


AFFINITY_VIEW_WEIGHTS = ("equal", "original")


def affinity_view_weights(mode: str, batch_size: int, n_views: int) -> tf.Tensor:
    """Per-image factors of the affinity terms, for images flattened from (B, V) to (B*V,).

    Args:
        mode: 'equal' (None: every view 1) or 'original' (view k, 0-based, weighted k + 1: the
            original's ``dist_mat += 1.`` on one array shared by its views, utils/losses.py).
        batch_size: int, B. n_views: int, V.
    Returns:
        None, or float32 (B*V,) constant ``[1, 2, ..., V]`` repeated B times.
    """
    if mode == "equal":
        return None
    if mode == "original":
        return tf.constant([float(k + 1) for _ in range(batch_size) for k in range(n_views)], tf.float32)
    raise ValueError(f"affinity_view_weight must be one of {AFFINITY_VIEW_WEIGHTS}, got {mode!r}")


@dataclasses.dataclass(frozen=True)
class GraphSettings:
    """The values the graph builder uses (flag names of utils.train.config in brackets).

    Sizes: n_views V [N_VIEWS], img_h, img_w px [IMG_H, IMG_W], n_pts N [N_PTS], n_feat C (the
    task's feature width, Task.n_feat). Network: bottleneck, skipconn, init, input_scale.
    Renderer: projection (implementation: 'fused', 'local', 'dense' or 'auto'), sigma_sq_mask
    px^2 [SIGMA_SQ_MASK], well_radius px [WELL_RADIUS], beta [BETA]. Loss: affinity ('paper' or
    'original'), the weights wt_bce, wt_aff_fwd, wt_aff_bwd, wt_aff_pts, wt_feat (the task's
    2D feature loss, Task.weight), wt_decay, use_3d_loss [USE_3D_LOSS], wt_3d, affinity_view_weight
    ('equal' or 'original': :func:`affinity_view_weights`). Validation: val_clip_box (0 = no
    clipping), val_chamfer ('distance' or 'squared': :func:`validation_chamfer`).
    """

    n_views: int
    img_h: int
    img_w: int
    n_pts: int
    n_feat: int
    bottleneck: int = 128
    skipconn: bool = False
    init: str = "he"
    input_scale: str = "unit"
    projection: str = "auto"
    sigma_sq_mask: float = 0.4
    well_radius: float = 1.0
    beta: float = 100.0
    affinity: str = "paper"
    affinity_view_weight: str = "equal"
    wt_bce: float = 1.0
    wt_aff_fwd: float = 1.0
    wt_aff_bwd: float = 1.0
    wt_aff_pts: float = 1.0
    wt_feat: float = 1.0
    wt_decay: float = 0.0
    use_3d_loss: bool = False
    wt_3d: float = 1.0
    val_clip_box: float = 0.0
    val_chamfer: str = "distance"

    @classmethod
    def from_args(cls, args: argparse.Namespace, task: Task) -> GraphSettings:
        """The settings the training flags (parsed, then Task.resolve_args; or args.json read back)
        give ``task``'s graph."""
        return cls(
            n_views=args.N_VIEWS,
            img_h=args.IMG_H,
            img_w=args.IMG_W,
            n_pts=args.N_PTS,
            n_feat=task.n_feat(args),
            bottleneck=args.bottleneck,
            skipconn=getattr(args, "skipconn", False),
            init=args.init,
            input_scale=args.input_scale,
            projection=args.projection,
            sigma_sq_mask=args.SIGMA_SQ_MASK,
            well_radius=args.WELL_RADIUS,
            beta=args.BETA,
            affinity=args.affinity,
            affinity_view_weight=getattr(args, "affinity_view_weight", None) or "equal",
            wt_bce=args.wt_bce,
            wt_aff_fwd=args.wt_aff_fwd,
            wt_aff_bwd=args.wt_aff_bwd,
            wt_aff_pts=args.wt_aff_pts,
            wt_feat=task.weight(args),
            wt_decay=args.wt_decay,
            use_3d_loss=args.USE_3D_LOSS,
            wt_3d=args.wt_3d,
            val_clip_box=args.val_clip_box,
            val_chamfer=getattr(args, "val_chamfer", None) or "distance",
        )

    def projection_kwargs(self) -> dict:
        """Keyword arguments of :meth:`utils.task.Task.project`."""
        return dict(
            img_h=self.img_h, img_w=self.img_w, well_radius=self.well_radius, beta=self.beta, impl=self.projection
        )


def _settings(settings):
    """``settings`` itself; a TypeError naming what is expected for anything else (parsed flags are
    turned into settings with :meth:`GraphSettings.from_args` by the caller)."""
    if not isinstance(settings, GraphSettings):
        raise TypeError(
            f"expected GraphSettings (GraphSettings.from_args(flags, task) makes them from parsed "
            f"training flags), got {type(settings).__name__}"
        )
    return settings


class Graph:
    """What :func:`build_graph` returns: its placeholders and tensors as attributes."""


def _affinity_terms(s, pred_mask, pix, gt_mask, gt_dist):
    """Forward and backward affinity (unscaled scalars) of ``s.affinity``: 'paper' or 'original'.

    pred_mask, gt_mask, gt_dist: float32 (B*V, H, W); pix: float32 (B*V, N, 3). Views weighted by
    ``s.affinity_view_weight`` (:func:`affinity_view_weights`).
    """
    n_views = s.n_views
    weights = affinity_view_weights(s.affinity_view_weight, int(gt_mask.shape[0]) // n_views, n_views)
    kw = {} if weights is None else dict(image_weights=weights)  # (the plain call when views weigh alike)
    if s.affinity == "original":
        return (
            losses.affinity_fwd_original(pred_mask, gt_mask, **kw),
            losses.affinity_bwd_original(pred_mask, gt_mask, **kw),
        )
    if s.affinity == "paper":
        return losses.affinity_fwd(pred_mask, gt_dist, **kw), losses.affinity_bwd(pix, gt_mask, **kw)
    raise ValueError(f"affinity must be 'paper' or 'original', got {s.affinity!r}")


def render_views(s, task, xyz, feat, az, el):
    """Project a cloud into its V supervision views: the paper's renderer as the loss sees it.

    Args:
        s: GraphSettings (n_views, img_h, img_w, sigma_sq_mask, projection, the task's well/beta).
        task: a Task (its depth-aware feature projection).
        xyz: float32 (B, N, 3) points (canonical frame); feat: float32 (B, N, C) features.
        az, el: float32 (B, V) view angles, radians.
    Returns:
        (pix (B*V, N, 3): row, col px and depth; pred_mask float32 (B*V, H, W) in [0, 1];
        proj float32 (B*V, H, W, C'), the task's projected map).
    """
    V, H, W = s.n_views, s.img_h, s.img_w
    pix = camera.project(_repeat_views(xyz, V), _flatten_views(az), _flatten_views(el), H, W)  # (B*V, N, 3)
    pred_mask = projection.mask_projection(pix, H, W, s.sigma_sq_mask, impl=s.projection)
    proj = task.project(pix, _repeat_views(feat, V), **s.projection_kwargs())
    return pix, pred_mask, proj


def loss_terms_2d(s, task, pix, pred_mask, proj, gt_mask, gt_dist, gt_view):
    """The 2D loss terms (unweighted scalars): bce, aff_fwd, aff_bwd, aff_pts, feat.

    Args:
        s: GraphSettings (affinity); task: a Task (its view loss).
        pix, pred_mask, proj: :func:`render_views`'s outputs, (B*V, ...).
        gt_mask: float32 (B*V, H, W) in {0, 1}; gt_dist: float32 (B*V, H, W) squared px distance
            to the nearest foreground pixel; gt_view: (B*V, H, W) + task.feature_dims.
    Returns:
        dict name -> float32 scalar.
    """
    aff_fwd, aff_bwd = _affinity_terms(s, pred_mask, pix, gt_mask, gt_dist)
    return dict(
        bce=losses.mask_bce(pred_mask, gt_mask),
        aff_fwd=aff_fwd,
        aff_bwd=aff_bwd,
        aff_pts=losses.affinity_points(pix, gt_dist),
        feat=task.view_loss(proj, gt_view),
    )


def loss_weights_2d(s):
    """[(weight, term name)] of the 2D terms in the loss, in the order they are summed (the
    affinities scaled by :data:`utils.losses.AFFINITY_SCALE`, as in the original)."""
    return [
        (s.wt_bce, "bce"),
        (losses.AFFINITY_SCALE * s.wt_aff_fwd, "aff_fwd"),
        (losses.AFFINITY_SCALE * s.wt_aff_bwd, "aff_bwd"),
        (s.wt_aff_pts, "aff_pts"),
        (s.wt_feat, "feat"),
    ]


def build_graph(
    settings: GraphSettings,
    task: Task,
    batch_size: int | None,
    n_gt_pts: int = N_GT_PTS,
    training: bool = True,
    image: tf.Tensor | None = None,
) -> Graph:
    """Build placeholders, network, projections, losses and validation metrics.

    Args:
        settings: a :class:`GraphSettings` (:meth:`GraphSettings.from_args` makes them from the flags).
        task: a :class:`utils.task.Task`.
        batch_size: int, B (static: the projection's scatter ids need it).
        n_gt_pts: int, points in the ground-truth clouds.
        training: also build the 2D/3D losses (metrics only need the network).
        image: the network's input to use instead of a new ``image`` placeholder, float32
            (B, H, W, 3) (the SavedModel export feeds a checked copy of its input).
    Returns:
        :class:`Graph` with ``ph`` (dict batch key -> placeholder), ``xyz``
        (B, N, 3), ``feat`` (B, N, C), and with ``training``: ``pred_mask``
        (B*V, H, W), ``proj`` (B*V, H, W, C'), ``loss`` (scalar), ``terms``
        (dict name -> scalar), ``val`` (dict of (B,) Chamfer metrics), ``feed``
        (function batch dict -> feed_dict).
    """
    s = _settings(settings)
    B, V, H, W = batch_size, s.n_views, s.img_h, s.img_w
    ph = dict(image=tf.placeholder(tf.float32, [B, H, W, 3], "image") if image is None else image)
    g = Graph()
    g.ph, g.settings = ph, s
    g.xyz, g.feat = recon_net(
        network_input(ph["image"], s.input_scale),
        s.n_pts,
        s.n_feat,
        task.feat_activation(),
        s.bottleneck,
        s.skipconn,
        init=s.init,
    )
    if not training:
        g.feed = lambda batch: {ph[k]: batch[k] for k in ph}
        return g

    ph.update(
        mask=tf.placeholder(tf.float32, [B, V, H, W], "mask"),
        dist=tf.placeholder(tf.float32, [B, V, H, W], "dist"),
        az=tf.placeholder(tf.float32, [B, V], "az"),
        el=tf.placeholder(tf.float32, [B, V], "el"),
        pcl=tf.placeholder(tf.float32, [B, n_gt_pts, 3], "pcl"),
    )
    ph[task.view_key] = tf.placeholder(task.view_dtype, [B, V, H, W] + list(task.feature_dims), task.view_key)
    ph[task.point_key] = tf.placeholder(task.point_dtype, [B, n_gt_pts] + list(task.feature_dims), task.point_key)

    with tf.name_scope("projection"):
        # A diverged network (NaN/inf weights) stops here with NONFINITE_TAG in the error, before
        # the projection turns NaN pixel coordinates into meaningless scatter indices.
        xyz = tf.debugging.check_numerics(g.xyz, NONFINITE_TAG + " (predicted points)")
        feat = tf.debugging.check_numerics(g.feat, NONFINITE_TAG + " (predicted features)")
        pix, g.pred_mask, g.proj = render_views(s, task, xyz, feat, ph["az"], ph["el"])

    with tf.name_scope("loss"):
        t = loss_terms_2d(
            s,
            task,
            pix,
            g.pred_mask,
            g.proj,
            _flatten_views(ph["mask"]),
            _flatten_views(ph["dist"]),
            _flatten_views(ph[task.view_key]),
        )
        t["decay"] = layers.weight_decay_loss("recon_net")
        weighted = loss_weights_2d(s) + [(s.wt_decay, "decay")]
        d_fwd, idx_fwd, d_bwd, idx_bwd = tf_ops.nn_distance(ph["pcl"], g.xyz)
        if s.use_3d_loss:
            t["chamfer_3d"] = tf.reduce_mean(d_fwd) + tf.reduce_mean(d_bwd)
            t["feat_3d"] = task.feature_loss_3d(g.feat, ph[task.point_key], idx_fwd, idx_bwd)
            weighted += [(s.wt_3d, "chamfer_3d"), (s.wt_3d, "feat_3d")]
        # A term whose weight is 0 stays in ``terms`` (logged) but not in the loss, so it adds no
        # gradient ops at all (e.g. the 3D-only ablation has no path from the loss to the projections).
        active = [w * t[name] for w, name in weighted if w]
        if not active:
            raise ValueError("every loss weight is 0: nothing to train (check --wt_* and --USE_3D_LOSS)")
        loss = tf.add_n(active)
        t["total"] = loss
        g.loss, g.terms = loss, t

    with tf.name_scope("val_metrics"):
        g.val = validation_chamfer(s, ph["pcl"], g.xyz)
    g.feed = lambda batch: {ph[k]: batch[k] for k in ph}
    return g


def validation_chamfer(s: GraphSettings, gt: tf.Tensor, xyz: tf.Tensor) -> dict[str, tf.Tensor]:
    """The validation Chamfer of the settings ``s`` (GraphSettings: val_chamfer, val_clip_box).

    Args:
        gt: float32 (B, N_gt, 3), xyz: float32 (B, N, 3), world units.
    Returns:
        dict of float32 (B,) tensors chamfer_fwd, chamfer_bwd, chamfer (fwd + bwd) on clouds scaled to
        the unit cube (utils.metrics.cloud_metrics): mean distances, or mean squared distances with
        ``--val_chamfer squared``.
    """
    res = metrics.cloud_metrics(gt, xyz, emd=False, box_clip=s.val_clip_box or None, squared=s.val_chamfer == "squared")
    return {k: res[k] for k in ("chamfer_fwd", "chamfer_bwd", "chamfer")}


def build_validation_graph(settings: GraphSettings, task: Task, batch_size: int, n_gt_pts: int = N_GT_PTS) -> Graph:
    """The network on a batch of validation images and its validation Chamfer.

    Reuses the variables of a network already built in this graph (``recon_net``, e.g. by
    :func:`build_graph`), or creates them. Its batch size is its own, so the validation set is
    evaluated in the same batches whatever ``--batch_size`` is.

    Args:
        settings: a :class:`GraphSettings`. task: a :class:`Task`.
        batch_size: int, B.
        n_gt_pts: int, points in the ground-truth clouds.
    Returns:
        :class:`Graph`: ``ph`` (image (B, H, W, 3) in [0, 1], pcl (B, n_gt_pts, 3)), ``xyz``
        (B, N, 3), ``val`` (:func:`validation_chamfer`, (B,) each), ``feed`` (batch dict -> feed_dict).
    """
    with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE), tf.name_scope("validation"):
        g = build_graph(settings, task, batch_size, training=False)
        g.ph["pcl"] = tf.placeholder(tf.float32, [batch_size, n_gt_pts, 3], "pcl")
        g.val = validation_chamfer(g.settings, g.ph["pcl"], g.xyz)
    ph = g.ph
    g.feed = lambda batch: {ph[k]: batch[k] for k in ph}
    return g
