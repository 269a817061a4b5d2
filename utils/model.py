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

AFFINITY_SCALE = 1e-4  # the original multiplied both affinity terms by this
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


def _flatten_views(x):
    """(B, V, ...) -> (B*V, ...)."""
    shape = x.shape.as_list()
    return tf.reshape(x, [shape[0] * shape[1]] + shape[2:])


def _repeat_views(x, n_views):
    """(B, ...) -> (B*V, ...), each sample repeated V times (matching _flatten_views)."""
    shape = x.shape.as_list()
    x = tf.tile(tf.expand_dims(x, 1), [1, n_views] + [1] * (len(shape) - 1))
    return tf.reshape(x, [shape[0] * n_views] + shape[1:])


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
    g.xyz, g.feat = recon_net(ph["image"], args.N_PTS, task.n_feat(args), task.feat_activation(),
                              args.bottleneck, getattr(args, "skipconn", False))
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
        gt_mask = _flatten_views(ph["mask"])
        t = dict(bce=losses.mask_bce(g.pred_mask, gt_mask),
                 aff_fwd=losses.affinity_fwd(g.pred_mask, _flatten_views(ph["dist"])),
                 aff_bwd=losses.affinity_bwd(pix, gt_mask),
                 aff_pts=losses.affinity_points(pix, _flatten_views(ph["dist"])),
                 feat=task.view_loss(g.proj, _flatten_views(ph[task.view_key])),
                 decay=layers.weight_decay_loss("recon_net"))
        loss = (args.wt_bce * t["bce"]
                + AFFINITY_SCALE * (args.wt_aff_fwd * t["aff_fwd"] + args.wt_aff_bwd * t["aff_bwd"])
                + args.wt_aff_pts * t["aff_pts"] + task.weight(args) * t["feat"]
                + args.wt_decay * t["decay"])
        d_fwd, idx_fwd, d_bwd, idx_bwd = tf_ops.nn_distance(ph["pcl"], g.xyz)
        if args.USE_3D_LOSS:
            t["chamfer_3d"] = tf.reduce_mean(d_fwd) + tf.reduce_mean(d_bwd)
            t["feat_3d"] = task.feature_loss_3d(g.feat, ph[task.point_key], idx_fwd, idx_bwd)
            loss += args.wt_3d * (t["chamfer_3d"] + t["feat_3d"])
        t["total"] = loss
        g.loss, g.terms = loss, t

    with tf.name_scope("val_metrics"):
        g.val = metrics.cloud_metrics(ph["pcl"], g.xyz, emd=False)
    g.feed = lambda batch: {ph[k]: batch[k] for k in ph}
    return g
