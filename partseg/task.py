"""The partseg task: what is specific to part-segmented point clouds -- its flags, its targets
(part-label views and cloud labels, in the data root's part tree), K softmax part scores per
point, their depth-aware projection with a background channel, the cross-entropy against
rendered part maps, part IoU and colour-coded pictures with a legend."""

import os

import numpy as np

from utils import losses, metrics
from utils.common import visualize
from utils.common.cli import non_negative_float, non_negative_int
from utils.common.tfv1 import tf
from utils.data.layout import PART_TREE_DIR, PCL_LABELS_FILE, RESAMPLE_LABELS_FILE, label_map_file, n_parts, part_names
from utils.data.readers import DataError, read_cloud_labels, read_label_map
from utils.render import projection
from utils.task import Task

# Colour of label k (0 = background, white; k >= 1 = part k-1), as visualize.label_map_to_rgb.
_LABEL_PALETTE = np.concatenate([np.ones((1, 3)), visualize.PART_COLOURS], 0).astype(np.float32)


class PartsegTask(Task):
    """Part labels: the :class:`utils.task.Task` hooks for ``partseg/``."""

    name = "partseg"
    view_key, point_key = "labels", "pcl_labels"
    view_dtype = point_dtype = tf.int32
    feature_dims = ()
    activation = "softmax"
    weight_flag = "wt_partseg"
    headline = ("chamfer", "emd", "miou")
    data_tree = PART_TREE_DIR  # <data_dir>/partseg/, as in the original release
    # No partseg training script in the original: its preset takes the RGB run's values, and
    # --wt_partseg the original parser's default (10, src/train_utils.py).
    presets = dict(recommended=dict(wt_partseg=1.0), original=dict(wt_partseg=10.0))
    architecture_flags = ("n_cls",)
    metric_phrase = "part mIoU"
    output_phrase = "part-labelled"
    ply_phrase = "part colours + a 'label' vertex property"
    feature_phrase = "part probabilities (softmax); argmax = part index"
    baseline_label = "image-blind baseline (training medoid, its own labels)"

    # -- flags --------------------------------------------------------------
    def add_train_flags(self, groups):
        groups["loss weights"].add_argument(
            "--wt_partseg", type=non_negative_float, help="cross-entropy on projected part labels"
        )
        groups["network"].add_argument(
            "--n_cls",
            type=non_negative_int,
            default=0,
            help="number of part classes; 0 = read from the data set for --category",
        )

    def add_metrics_flags(self, parser):
        parser.add_argument("--freq_wt", action="store_true", help="also report frequency-weighted IoU")

    def resolve_args(self, args):
        """``--n_cls 0`` means: the number of parts of ``--category`` in the data set (read from it)."""
        args = super().resolve_args(args)
        if not args.n_cls:
            args.n_cls = int(n_parts(args.data_dir, args.category))
        return args

    # -- data ---------------------------------------------------------------
    def data_options(self, args):
        return dict(n_cls=getattr(args, "n_cls", None) or None)

    def open_data(self, pipe, n_cls=None):
        """``pipe.n_cls``: ``n_cls``, or the number of parts of the pipeline's category."""
        pipe.n_cls = int(n_cls) if n_cls else int(n_parts(pipe.data_dir, pipe.category))

    def load_targets(self, pipe, model, views, masks):
        """Part-label views int (V, H, W) in 0..n_cls (0 background) and cloud labels int (n_pts,)
        0-based; DataError naming the file for a label out of range."""
        rdir, ldir, pdir = (pipe.model_dir(k, model) for k in ("rendered", "labels", "pcl"))
        lab = []
        for v in views:
            path = os.path.join(ldir, label_map_file(v))
            if not os.path.isfile(path):  # some copies keep the label maps beside the renders
                alt = os.path.join(rdir, label_map_file(v))
                path = alt if os.path.isfile(alt) else path
            lab.append(read_label_map(path, pipe.img_h, pipe.img_w, pipe.n_cls))
        return {
            self.view_key: np.stack(lab),
            self.point_key: read_cloud_labels(os.path.join(pdir, PCL_LABELS_FILE), pipe.n_pts, pipe.n_cls),
        }

    def load_resampled_targets(self, pipe, model):
        """0-based part labels (n_pts,) of the second sampling of the surface (the floor row)."""
        path = os.path.join(pipe.model_dir("pcl", model), RESAMPLE_LABELS_FILE)
        return {self.point_key: read_cloud_labels(path, pipe.n_pts, pipe.n_cls)}

    # -- graph --------------------------------------------------------------
    def n_feat(self, args):
        return args.n_cls

    def project(self, pix, feat, *, img_h, img_w, well_radius, beta, impl):
        """(B, N, 3) pixels, (B, N, K) probabilities -> (B, H, W, K+1), channel 0 = background."""
        probs, _ = projection.part_projection(pix, feat, img_h, img_w, well_radius, beta, impl=impl)
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

    def legend(self, data_dir, category, n_feat):
        """[(part name, colour)] of the category's n_feat parts (names from the data set when found)."""
        try:
            names = part_names(data_dir, category)
        except (DataError, OSError):
            names = []
        n_cls = int(n_feat)
        names = [names[k] if k < len(names) else f"part {k}" for k in range(n_cls)]
        return list(zip(names, visualize.part_colours(np.arange(n_cls))))

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

    def baselines(self, train_clouds, train_feats, medoid, n_feat):
        """Both ignore the image: the medoid cloud with its own labels; the predicted
        shape with the training set's majority part everywhere."""
        n_cls = n_feat
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
