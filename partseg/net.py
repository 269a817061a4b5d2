"""What is specific to part-segmented point clouds: K softmax part scores per
point, their depth-aware projection with a background channel, the
cross-entropy against rendered part maps, part IoU and colour-coded pictures."""
import numpy as np

from utils import losses, metrics, visualize
from utils.render import projection
from utils.data import n_parts
from utils.model import Task
from utils.tfv1 import tf

# Colour of label k (0 = background, white; k >= 1 = part k-1), as visualize.label_map_to_rgb.
_LABEL_PALETTE = np.concatenate([np.ones((1, 3)), visualize.PART_COLOURS], 0).astype(np.float32)


class PartsegTask(Task):
    """Part labels: the :class:`utils.model.Task` hooks for ``partseg/``."""
    name = "partseg"
    view_key, point_key = "labels", "pcl_labels"
    view_dtype = point_dtype = tf.int32
    feature_dims = ()
    activation = "softmax"
    weight_flag = "wt_partseg"
    headline = ("chamfer", "emd", "miou")

    def resolve_args(self, args):
        """``--n_cls 0`` means: the number of parts of ``--category`` in the data set (read from it)."""
        args = super().resolve_args(args)
        if not args.n_cls:
            args.n_cls = int(n_parts(args.data_dir, args.category))
        return args

    def n_feat(self, args):
        return args.n_cls

    def project(self, pix, feat, args):
        """(B, N, 3) pixels, (B, N, K) probabilities -> (B, H, W, K+1), channel 0 = background."""
        probs, _ = projection.part_projection(pix, feat, args.IMG_H, args.IMG_W, args.WELL_RADIUS,
                                              args.BETA, impl=args.projection)
        return probs

    def view_loss(self, proj, gt_view):
        return losses.part_cross_entropy(proj, gt_view)

    def feature_loss_3d(self, feat, gt_feat, idx_fwd, idx_bwd):
        """Cross-entropy through nearest neighbours (:func:`utils.losses.part_cross_entropy` over points):
        feat (B, N, K) probabilities, gt_feat (B, N_gt) labels."""
        p_fwd = tf.gather(feat, idx_fwd, batch_dims=1)  # (B, N_gt, K): prediction at each GT point
        lbl_bwd = tf.gather(gt_feat, idx_bwd, batch_dims=1)  # (B, N): GT label nearest each predicted point
        return losses.part_cross_entropy(p_fwd, gt_feat) + losses.part_cross_entropy(feat, lbl_bwd)

    def display(self, proj):
        """(B, H, W, K+1) -> colour-coded (B, H, W, 3), background white."""
        return tf.gather(tf.constant(_LABEL_PALETTE), tf.argmax(proj, axis=-1))

    def display_gt(self, gt_view):
        return tf.gather(tf.constant(_LABEL_PALETTE), gt_view)

    def display_np(self, view, gt):
        return visualize.label_map_to_rgb(view if gt else np.argmax(view, axis=-1))

    # -- evaluation ---------------------------------------------------------
    def point_colours(self, feat):
        return visualize.part_colours(np.argmax(feat, axis=-1))

    def gt_point_colours(self, gt_feat):
        return visualize.part_colours(gt_feat)

    def point_properties(self, feat):
        """PLY ``label``: the predicted part, int32 0-based index into the part names (label k+1 in the data)."""
        return dict(label=np.argmax(feat, axis=-1).astype(np.int32))

    def feature_metrics(self, gt_feat, feat, idx_fwd, idx_bwd, margs):
        """Part mIoU forward/backward (+ per part, + frequency weighted with --freq_wt)."""
        n_cls = feat.shape[-1]
        pred = np.argmax(feat, axis=-1)
        m = metrics.part_mious(gt_feat, pred, idx_fwd, idx_bwd, n_cls)
        out = dict(miou_fwd=m["miou_fwd"], miou_bwd=m["miou_bwd"], miou=m["miou"])
        for k in range(n_cls):
            out[f"iou_part{k}"] = (m["iou_fwd"][:, k] + m["iou_bwd"][:, k]) / 2.0
        if getattr(margs, "freq_wt", False):
            out["fw_iou"] = metrics.part_mious(gt_feat, pred, idx_fwd, idx_bwd, n_cls, freq_wt=True)["miou"]
        return out

    def baselines(self, train_clouds, train_feats, medoid, args):
        """Both ignore the image: the medoid cloud with its own labels; the predicted
        shape with the training set's majority part everywhere."""
        n_cls = args.n_cls
        xyz = train_clouds[medoid]
        onehot = np.eye(n_cls, dtype=np.float32)[train_feats[medoid]]
        majority = np.bincount(train_feats.ravel(), minlength=n_cls).argmax()

        def medoid_labels(pred_xyz, pred_feat):
            b = len(pred_xyz)
            return np.broadcast_to(xyz, (b,) + xyz.shape), np.broadcast_to(onehot, (b,) + onehot.shape)

        def majority_label(pred_xyz, pred_feat):
            feat = np.zeros_like(pred_feat)
            feat[..., majority] = 1.0
            return pred_xyz, feat
        return [("medoid_baseline", medoid_labels), ("majority_baseline", majority_label)]


TASK = PartsegTask()
