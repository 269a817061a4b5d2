"""The RGB task: what is specific to coloured point clouds -- its flags, its targets (colour
views and cloud colours), 3 sigmoid colour channels per point, their depth-aware projection,
the L2 colour loss, the colour error and colour pictures."""

import argparse
import os

import numpy as np

from utils import losses, metrics
from utils.common.cli import non_negative_float
from utils.common.tfv1 import tf
from utils.data.layout import PCL_COLOURS_FILE, RESAMPLE_COLOURS_FILE, render_file
from utils.data.readers import read_cloud_colours, read_rgb
from utils.render import projection
from utils.task import Task


class RGBTask(Task):
    """Colours: the :class:`utils.task.Task` hooks for ``rgb/``."""

    name = "rgb"
    view_key, point_key = "rgb", "pcl_rgb"
    view_dtype = point_dtype = tf.float32
    feature_dims = (3,)
    activation = "sigmoid"
    weight_flag = "wt_rgb"
    headline = ("chamfer", "emd", "colour")
    data_tree = ""  # the colour tree is the data root itself (the original release's layout)
    # run_train_rgb.sh of the original passes --wt_rgb 1. --skipconn; we recommend the same.
    presets = dict(recommended=dict(wt_rgb=1.0, skipconn=True), original=dict(wt_rgb=1.0, skipconn=True))
    architecture_flags = ("skipconn",)
    metric_phrase = "colour error"
    output_phrase = ply_phrase = "coloured"
    feature_phrase = "colours in [0, 1]"
    baseline_label = "image-blind baseline (training medoid, mean colour)"

    # -- flags --------------------------------------------------------------
    def add_train_flags(self, groups):
        groups["loss weights"].add_argument("--wt_rgb", type=non_negative_float, help="L2 loss on projected colours")
        groups["network"].add_argument(
            "--skipconn",
            action=argparse.BooleanOptionalAction,
            help="feed the structure branch's hidden features to the colour branch",
        )

    # -- data ---------------------------------------------------------------
    def load_targets(self, pipe, model, views, masks):
        """Colour views (V, H, W, 3) in [0, 1], background 0, and cloud colours (n_pts, 3)."""
        rdir, pdir = pipe.model_dir("rendered", model), pipe.model_dir("pcl", model)
        rgb = np.stack([read_rgb(os.path.join(rdir, render_file(v)), pipe.img_h, pipe.img_w) for v in views])
        rgb *= masks[..., None]
        return {
            self.view_key: rgb,
            self.point_key: read_cloud_colours(os.path.join(pdir, PCL_COLOURS_FILE), pipe.n_pts),
        }

    def load_resampled_targets(self, pipe, model):
        """Colours (n_pts, 3) of the second sampling of the surface (the floor row)."""
        path = os.path.join(pipe.model_dir("pcl", model), RESAMPLE_COLOURS_FILE)
        return {self.point_key: read_cloud_colours(path, pipe.n_pts)}

    # -- graph --------------------------------------------------------------
    def n_feat(self, args):
        return 3

    def project(self, pix, feat, *, img_h, img_w, well_radius, beta, impl):
        """(B, N, 3) pixels, (B, N, 3) colours -> (B, H, W, 3) colour map (0 where no point)."""
        rgb, _ = projection.feature_projection(pix, feat, img_h, img_w, well_radius, beta, impl=impl)
        return rgb

    def view_loss(self, proj, gt_view):
        return losses.rgb_l2(proj, gt_view)

    def feature_loss_3d(self, feat, gt_feat, idx_fwd, idx_bwd):
        """Colour L2 (:func:`utils.losses.rgb_l2` over points) through nearest neighbours:
        feat (B, N, 3), gt_feat (B, N_gt, 3)."""
        return losses.rgb_l2(tf.gather(feat, idx_fwd, batch_dims=1), gt_feat) + losses.rgb_l2(
            tf.gather(gt_feat, idx_bwd, batch_dims=1), feat
        )

    def display(self, proj):
        return tf.clip_by_value(proj, 0.0, 1.0)

    def display_gt(self, gt_view):
        return gt_view

    def display_np(self, view, gt):
        return np.clip(view, 0.0, 1.0)

    # -- evaluation ---------------------------------------------------------
    def point_colours(self, feat):
        """Predicted per-point features (N, 3) -> colours (N, 3) for pictures."""
        return np.clip(feat, 0.0, 1.0)

    def gt_point_colours(self, gt_feat):
        return np.clip(gt_feat, 0.0, 1.0)

    def feature_metrics(self, gt_feat, feat, idx_fwd, idx_bwd, margs):
        """Colour error through nearest neighbours: dict of (B,) arrays."""
        fwd, bwd = metrics.colour_errors(gt_feat, feat, idx_fwd, idx_bwd)
        return dict(colour_fwd=fwd, colour_bwd=bwd, colour=fwd + bwd)

    def group_feature_metrics(self, gt_feat, feat, idx_fwd, groups):
        """``colour_<group>``: the forward colour error (mean squared difference per channel of each
        GT point to its nearest predicted point) over each group's GT points: dict of (B,) arrays."""
        per_point = np.mean((metrics.gather_np(feat, idx_fwd) - gt_feat) ** 2, axis=2)  # (B, N_gt)
        return {f"colour_{name}": metrics.group_mean(per_point, mask) for name, mask in groups.items()}

    def baselines(self, train_clouds, train_feats, medoid, n_feat):
        """The training medoid cloud painted with the mean training colour."""
        xyz = train_clouds[medoid]
        colour = np.broadcast_to(train_feats.reshape(-1, 3).mean(axis=0), (len(xyz), 3))

        def medoid_mean_colour(pred_xyz, pred_feat):
            b = len(pred_xyz)
            return np.broadcast_to(xyz, (b,) + xyz.shape), np.broadcast_to(colour, (b,) + colour.shape)

        return [("medoid_baseline", medoid_mean_colour)]


TASK = RGBTask()
