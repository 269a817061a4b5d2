"""The one graph builder shared by training and metrics, for both tasks.

A *task* (``rgb.net.TASK``, ``partseg.net.TASK``) supplies what differs between
colour and part reconstruction (see :class:`Task`); everything else -- the
placeholders, the network's structure branch, projecting every supervision
view, the mask and affinity losses, weight decay, the optional 3D loss and the
validation Chamfer -- is built here once.
"""
import types

import tf_ops
from utils import camera, layers, losses, metrics, projection
from utils.recon_net import recon_net
from utils.tfv1 import tf

AFFINITY_SCALE = 1e-4  # the original's training script multiplied both affinity means by this
NONFINITE_TAG = "non-finite network output"  # in the error raised when predictions become NaN/inf


class Task:
    """What a task must provide. Subclassed in rgb/net.py and partseg/net.py.

    Attributes:
        name: 'rgb' or 'partseg'.
        view_key: batch key of the per-view GT feature maps ('rgb' or 'labels').
        point_key: batch key of the GT per-point features ('pcl_rgb' or 'pcl_labels').
        view_dtype, point_dtype: TF dtypes of those placeholders.
    """
    name = view_key = point_key = None
    view_dtype = point_dtype = tf.float32

    def n_feat(self, args):
        """C, the per-point feature width the network predicts."""
        raise NotImplementedError

    def feat_activation(self):
        raise NotImplementedError

    def view_shape(self, args):
        """Per-sample shape of the GT view maps, e.g. (V, H, W, 3)."""
        raise NotImplementedError

    def point_shape(self, args):
        raise NotImplementedError

    def project(self, pix, feat, args):
        """(B, N, 3) pixels, (B, N, C) features -> (B, H, W, C') projected map."""
        raise NotImplementedError

    def view_loss(self, proj, gt_view):
        """Scalar loss between a projected map (B, H, W, C') and GT maps (B, H, W[, 3])."""
        raise NotImplementedError

    def feature_loss_3d(self, feat, gt_feat, idx_fwd, idx_bwd):
        """Scalar 3D feature loss through nearest-neighbour indices (B, N_gt), (B, N)."""
        raise NotImplementedError

    def display(self, proj):
        """(B, H, W, C') projected map -> float32 (B, H, W, 3) picture in [0, 1]."""
        raise NotImplementedError

    def weight(self, args):
        """The task's loss weight (wt_rgb or wt_partseg)."""
        raise NotImplementedError

    def point_properties(self, feat):
        """(N, C) predicted features -> dict name -> (N,) extra PLY vertex properties (none by default)."""
        return {}


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


def _affinity_terms(args, pred_mask, pix, gt_mask, gt_dist):
    """Forward and backward affinity (unscaled scalars) of ``args.affinity``: 'paper' or 'original'."""
    if args.affinity == "original":
        return losses.affinity_fwd_original(pred_mask, gt_mask), losses.affinity_bwd_original(pred_mask, gt_mask)
    if args.affinity == "paper":
        return losses.affinity_fwd(pred_mask, gt_dist), losses.affinity_bwd(pix, gt_mask)
    raise ValueError(f"affinity must be 'paper' or 'original', got {args.affinity!r}")


def build_graph(args, task, batch_size, n_gt_pts=1024, training=True):
    """Build placeholders, network, projections, losses and validation metrics.

    Args:
        args: the training Namespace (utils.config.train_parser, or args.json).
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
        g.val = metrics.cloud_metrics(ph["pcl"], g.xyz, emd=False, box_clip=args.val_clip_box or None)
    g.feed = lambda batch: {ph[k]: batch[k] for k in ph}
    return g
