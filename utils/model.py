"""The one graph builder shared by training and metrics, for both tasks.

A *task* (``rgb.net.TASK``, ``partseg.net.TASK``) supplies what differs between
colour and part reconstruction (see :class:`Task`); everything else -- the
placeholders, the network's structure branch, projecting every supervision
view, the mask and affinity losses, weight decay, the optional 3D loss and the
validation Chamfer -- is built here once.
"""
import copy
import types

from utils.tfv1 import tf  # before tf_ops: TensorFlow loads quietly, in graph mode

import tf_ops
from utils.render import camera, projection
from utils.net import layers
from utils import losses, metrics
from utils.data import N_GT_PTS
from utils.net.recon_net import recon_net

AFFINITY_SCALE = 1e-4  # the original's training script multiplied both affinity means by this
NONFINITE_TAG = "non-finite network output"  # in the error raised when predictions become NaN/inf


class Task:
    """What a task must provide: the interface between the shared code and ``rgb/``, ``partseg/``.

    Subclassed in rgb/net.py (``RGBTask``) and partseg/net.py (``PartsegTask``); each module's
    ``TASK`` is the one instance the entry points pass around. Data attributes describe the
    task; the methods below are the hooks, in three groups. A hook that raises
    NotImplementedError here must be provided by every task; the others have a default.

    Attributes:
        name: 'rgb' or 'partseg' (also the name of the task's data tree, utils.data.task_dirs).
        view_key: batch key of the per-view GT feature maps ('rgb' or 'labels').
        point_key: batch key of the GT per-point features ('pcl_rgb' or 'pcl_labels').
        view_dtype, point_dtype: TF dtypes of those placeholders.
        feature_dims: trailing dimensions of one GT pixel / point feature: (3,) for a colour,
            () for a part label.
        activation: output activation of the feature branch ('sigmoid' or 'softmax').
        weight_flag: the training flag weighting the task's 2D feature loss ('wt_rgb', 'wt_partseg').
        headline: the metrics printed first in tables (e.g. ('chamfer', 'emd', 'colour')).
    """
    name = view_key = point_key = None
    view_dtype = point_dtype = tf.float32
    feature_dims = ()
    activation = None
    weight_flag = None
    headline = ("chamfer", "emd")

    # -- arguments -------------------------------------------------------------------------
    def resolve_args(self, args):
        """Fill in flag values that depend on the data (e.g. partseg's ``--n_cls 0``).

        Args:
            args: the training Namespace; left unchanged.
        Returns:
            a new namespace (a copy of ``args`` by default).
        """
        return copy.copy(args)

    # -- graph hooks (utils.model.build_graph, the training pictures) ---------------------
    def n_feat(self, args):
        """C, the per-point feature width the network predicts."""
        raise NotImplementedError

    def feat_activation(self):
        """The feature branch's output activation (:attr:`activation`)."""
        return self.activation

    def view_shape(self, args):
        """Per-sample shape of the GT view maps: (V, H, W) + feature_dims."""
        return (args.N_VIEWS, args.IMG_H, args.IMG_W) + tuple(self.feature_dims)

    def point_shape(self, args):
        """Per-point shape of the GT cloud features: feature_dims."""
        return tuple(self.feature_dims)

    def weight(self, args):
        """The weight of the task's 2D feature loss (the flag :attr:`weight_flag`)."""
        return getattr(args, self.weight_flag)

    def project(self, pix, feat, args):
        """Depth-aware feature projection.

        Args:
            pix: float32 (B, N, 3) row, col (px), depth (camera.project).
            feat: float32 (B, N, C) predicted features.
            args: the training Namespace (IMG_H, IMG_W, WELL_RADIUS, BETA, projection).
        Returns:
            float32 (B, H, W, C') projected map.
        """
        raise NotImplementedError

    def view_loss(self, proj, gt_view):
        """Scalar loss between a projected map (B, H, W, C') and GT maps (B, H, W) + feature_dims."""
        raise NotImplementedError

    def feature_loss_3d(self, feat, gt_feat, idx_fwd, idx_bwd):
        """Scalar 3D feature loss through nearest neighbours (``--USE_3D_LOSS``).

        Args:
            feat: float32 (B, N, C) predicted features; gt_feat: (B, N_gt) + feature_dims.
            idx_fwd: int32 (B, N_gt), nearest predicted point of each GT point.
            idx_bwd: int32 (B, N), nearest GT point of each predicted point.
        """
        raise NotImplementedError

    def display(self, proj):
        """(B, H, W, C') projected map -> float32 (B, H, W, 3) picture in [0, 1] (TensorBoard)."""
        raise NotImplementedError

    def display_gt(self, gt_view):
        """(B, H, W) + feature_dims GT maps -> float32 (B, H, W, 3) picture in [0, 1] (TensorBoard)."""
        raise NotImplementedError

    def display_np(self, view, gt):
        """Numpy twin of :meth:`display` (``gt=False``, a projected map (H, W, C')) and of
        :meth:`display_gt` (``gt=True``, a GT map) -> (H, W, 3) in [0, 1] (PNG pictures)."""
        raise NotImplementedError

    # -- evaluation hooks (utils.eval.evaluate, utils.eval.inference) -------------------------------
    def point_colours(self, feat):
        """(N, C) predicted features -> (N, 3) colours in [0, 1] for pictures and PLY files."""
        raise NotImplementedError

    def gt_point_colours(self, gt_feat):
        """(N,) + feature_dims GT features -> (N, 3) colours in [0, 1]."""
        raise NotImplementedError

    def point_properties(self, feat):
        """(N, C) predicted features -> dict name -> (N,) extra PLY vertex properties (none by default)."""
        return {}

    def feature_metrics(self, gt_feat, feat, idx_fwd, idx_bwd, margs):
        """Per-sample feature metrics through nearest-neighbour correspondences.

        Args:
            gt_feat: (B, N_gt) + feature_dims numpy; feat: (B, N, C) numpy predictions.
            idx_fwd (B, N_gt), idx_bwd (B, N): from utils.metrics.cloud_metrics.
            margs: the metrics Namespace (task-specific options, e.g. --freq_wt).
        Returns:
            dict name -> (B,) numpy array.
        """
        raise NotImplementedError

    def baselines(self, train_clouds, train_feats, medoid, args):
        """Predictors that ignore the image, scored beside the model.

        Args:
            train_clouds: float32 (M, N_gt, 3) training clouds; train_feats: (M, N_gt) + feature_dims.
            medoid: int, index of the training medoid cloud (utils.metrics.medoid_index).
            args: the training Namespace (args.json).
        Returns:
            list of (name, fn): ``fn(pred_xyz (B, N, 3), pred_feat (B, N, C))`` returns the
            baseline's (xyz (B, N', 3), features (B, N', C)).
        """
        raise NotImplementedError


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


def network_input(image, input_scale="unit"):
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


def affinity_view_weights(mode, batch_size, n_views):
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


def _affinity_terms(args, pred_mask, pix, gt_mask, gt_dist):
    """Forward and backward affinity (unscaled scalars) of ``args.affinity``: 'paper' or 'original'.

    pred_mask, gt_mask, gt_dist: float32 (B*V, H, W); pix: float32 (B*V, N, 3). Views weighted by
    ``args.affinity_view_weight`` (:func:`affinity_view_weights`).
    """
    n_views = args.N_VIEWS
    weights = affinity_view_weights(getattr(args, "affinity_view_weight", "equal"),
                                    int(gt_mask.shape[0]) // n_views, n_views)
    kw = {} if weights is None else dict(image_weights=weights)  # (the plain call when views weigh alike)
    if args.affinity == "original":
        return (losses.affinity_fwd_original(pred_mask, gt_mask, **kw),
                losses.affinity_bwd_original(pred_mask, gt_mask, **kw))
    if args.affinity == "paper":
        return losses.affinity_fwd(pred_mask, gt_dist, **kw), losses.affinity_bwd(pix, gt_mask, **kw)
    raise ValueError(f"affinity must be 'paper' or 'original', got {args.affinity!r}")


def build_graph(args, task, batch_size, n_gt_pts=N_GT_PTS, training=True):
    """Build placeholders, network, projections, losses and validation metrics.

    Args:
        args: the training Namespace (utils.train.config.train_parser, or args.json).
        task: a :class:`Task`.
        batch_size: int, B (static: the projection's scatter ids need it).
        n_gt_pts: int, points in the ground-truth clouds.
        training: also build the 2D/3D losses (metrics only need the network).
    Returns:
        SimpleNamespace with ``ph`` (dict batch key -> placeholder), ``xyz``
        (B, N, 3), ``feat`` (B, N, C), and with ``training``: ``pred_mask``
        (B*V, H, W), ``proj`` (B*V, H, W, C'), ``loss`` (scalar), ``terms``
        (dict name -> scalar), ``val`` (dict of (B,) Chamfer metrics), ``feed``
        (function batch dict -> feed_dict).
    """
    B, V, H, W = batch_size, args.N_VIEWS, args.IMG_H, args.IMG_W
    ph = dict(image=tf.placeholder(tf.float32, [B, H, W, 3], "image"))
    g = types.SimpleNamespace(ph=ph)
    g.xyz, g.feat = recon_net(network_input(ph["image"], args.input_scale), args.N_PTS, task.n_feat(args),
                              task.feat_activation(), args.bottleneck, getattr(args, "skipconn", False),
                              init=args.init)
    if not training:
        g.feed = lambda batch: {ph[k]: batch[k] for k in ph}
        return g

    ph.update(mask=tf.placeholder(tf.float32, [B, V, H, W], "mask"),
              dist=tf.placeholder(tf.float32, [B, V, H, W], "dist"),
              az=tf.placeholder(tf.float32, [B, V], "az"),
              el=tf.placeholder(tf.float32, [B, V], "el"),
              pcl=tf.placeholder(tf.float32, [B, n_gt_pts, 3], "pcl"))
    ph[task.view_key] = tf.placeholder(task.view_dtype, [B] + list(task.view_shape(args)), task.view_key)
    ph[task.point_key] = tf.placeholder(task.point_dtype, [B, n_gt_pts] + list(task.point_shape(args)),
                                        task.point_key)

    with tf.name_scope("projection"):
        # A diverged network (NaN/inf weights) stops here with NONFINITE_TAG in the error, before
        # the projection turns NaN pixel coordinates into meaningless scatter indices.
        xyz = tf.debugging.check_numerics(g.xyz, NONFINITE_TAG + " (predicted points)")
        feat = tf.debugging.check_numerics(g.feat, NONFINITE_TAG + " (predicted features)")
        pix = camera.project(_repeat_views(xyz, V), _flatten_views(ph["az"]),
                             _flatten_views(ph["el"]), H, W)  # (B*V, N, 3)
        g.pred_mask = projection.mask_projection(pix, H, W, args.SIGMA_SQ_MASK, impl=args.projection)
        g.proj = task.project(pix, _repeat_views(feat, V), args)

    with tf.name_scope("loss"):
        gt_mask, gt_dist = _flatten_views(ph["mask"]), _flatten_views(ph["dist"])
        aff_fwd, aff_bwd = _affinity_terms(args, g.pred_mask, pix, gt_mask, gt_dist)
        t = dict(bce=losses.mask_bce(g.pred_mask, gt_mask), aff_fwd=aff_fwd, aff_bwd=aff_bwd,
                 aff_pts=losses.affinity_points(pix, gt_dist),
                 feat=task.view_loss(g.proj, _flatten_views(ph[task.view_key])),
                 decay=layers.weight_decay_loss("recon_net"))
        weighted = [(args.wt_bce, "bce"), (AFFINITY_SCALE * args.wt_aff_fwd, "aff_fwd"),
                    (AFFINITY_SCALE * args.wt_aff_bwd, "aff_bwd"), (args.wt_aff_pts, "aff_pts"),
                    (task.weight(args), "feat"), (args.wt_decay, "decay")]
        d_fwd, idx_fwd, d_bwd, idx_bwd = tf_ops.nn_distance(ph["pcl"], g.xyz)
        if args.USE_3D_LOSS:
            t["chamfer_3d"] = tf.reduce_mean(d_fwd) + tf.reduce_mean(d_bwd)
            t["feat_3d"] = task.feature_loss_3d(g.feat, ph[task.point_key], idx_fwd, idx_bwd)
            weighted += [(args.wt_3d, "chamfer_3d"), (args.wt_3d, "feat_3d")]
        # A term whose weight is 0 stays in ``terms`` (logged) but not in the loss, so it adds no
        # gradient ops at all (e.g. the 3D-only ablation has no path from the loss to the projections).
        active = [w * t[name] for w, name in weighted if w]
        if not active:
            raise ValueError("every loss weight is 0: nothing to train (check --wt_* and --USE_3D_LOSS)")
        loss = tf.add_n(active)
        t["total"] = loss
        g.loss, g.terms = loss, t

    with tf.name_scope("val_metrics"):
        g.val = validation_chamfer(args, ph["pcl"], g.xyz)
    g.feed = lambda batch: {ph[k]: batch[k] for k in ph}
    return g


def validation_chamfer(args, gt, xyz):
    """The validation Chamfer of the training flags (``--val_chamfer``, ``--val_clip_box``).

    Args:
        gt: float32 (B, N_gt, 3), xyz: float32 (B, N, 3), world units.
    Returns:
        dict of float32 (B,) tensors chamfer_fwd, chamfer_bwd, chamfer (fwd + bwd) on clouds scaled to
        the unit cube (utils.metrics.cloud_metrics): mean distances, or mean squared distances with
        ``--val_chamfer squared``.
    """
    res = metrics.cloud_metrics(gt, xyz, emd=False, box_clip=args.val_clip_box or None,
                                squared=getattr(args, "val_chamfer", "distance") == "squared")
    return {k: res[k] for k in ("chamfer_fwd", "chamfer_bwd", "chamfer")}


def build_validation_graph(args, task, batch_size, n_gt_pts=N_GT_PTS):
    """The network on a batch of validation images and its validation Chamfer.

    Reuses the variables of a network already built in this graph (``recon_net``, e.g. by
    :func:`build_graph`), or creates them. Its batch size is its own, so the validation set is
    evaluated in the same batches whatever ``--batch_size`` is.

    Args:
        args: the training Namespace. task: a :class:`Task`. batch_size: int, B.
        n_gt_pts: int, points in the ground-truth clouds.
    Returns:
        SimpleNamespace: ``ph`` (image (B, H, W, 3) in [0, 1], pcl (B, n_gt_pts, 3)), ``xyz``
        (B, N, 3), ``val`` (:func:`validation_chamfer`, (B,) each), ``feed`` (batch dict -> feed_dict).
    """
    with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE), tf.name_scope("validation"):
        g = build_graph(args, task, batch_size, training=False)
        g.ph["pcl"] = tf.placeholder(tf.float32, [batch_size, n_gt_pts, 3], "pcl")
        g.val = validation_chamfer(args, g.ph["pcl"], g.xyz)
    ph = g.ph
    g.feed = lambda batch: {ph[k]: batch[k] for k in ph}
    return g
