"""3D evaluation: unit-cube scaling, Chamfer and EMD (tf_ops), feature errors, baselines.

Definitions (as the original's metrics code):

* Both clouds are first scaled independently so that the longest side of their
  bounding box is 1 and the box is centred in [-0.5, 0.5]^3
  (:func:`scale_to_unit_cube`), as the original's metrics did. Optionally
  (``--clip_box``) the prediction's box is measured on coordinates clipped to
  +-clip_box, so a few far stray points cannot shrink the whole cloud; the
  original's metrics did not clip (its *training-time* validation measured the
  prediction's box on coordinates clipped to +-0.4, see ``--val_clip_box``).
* Chamfer forward = mean over ground-truth points of the Euclidean distance to
  the nearest predicted point; backward = the same from predicted to ground
  truth; Chamfer = forward + backward. (Euclidean, not squared, as the original
  reported them.)
* EMD = mean Euclidean distance between points matched one-to-one by
  ``tf_ops.auction_match``.
* Colour error forward = mean over ground-truth points of the squared RGB
  difference (averaged over channels) to the colour of the nearest predicted
  point; backward = from every predicted point to its nearest ground-truth
  point. Colours in [0, 1].
* Side-resolved errors (data with a side record, ``PCL_SIDES_FILE``): the ground-truth points
  are split into three groups (:func:`side_groups`): *edge*, the points within
  :data:`EDGE_RADIUS` of a point of the other side (hidden or not), where even an independent
  resampling of the surface often finds its nearest neighbour on the other side; *hidden*,
  the other points on a part's hidden side; *visible*, the rest. A feature error per group is
  the mean of the forward per-point errors over the group's points (:func:`group_mean`).
* Part IoU through the same nearest-neighbour correspondences; per part, IoU =
  TP / (|GT| + |pred| - TP); a part absent from both clouds counts as 1; mIoU is
  the mean over parts; optionally frequency weighted by the GT part counts.
"""

import numpy as np

from utils.common.tfv1 import tf  # before tf_ops: TensorFlow loads quietly, in graph mode

import tf_ops

MIN_BOX = 1e-8  # scale_to_unit_cube: a degenerate (single-point) cloud is not divided by 0
SQRT_EPS = 1e-12  # Euclidean distances as sqrt(squared + SQRT_EPS): finite gradients at 0
SIDE_GROUPS = ("hidden", "visible", "edge")
# side_groups: a GT point closer than this to a GT point of the other side is an edge point. Unit-cube
# units (the GT cloud scaled as for Chamfer): about 1.5 times the median spacing of a 1024-point demo
# chair (0.034), the distance within which an independent resampling's nearest neighbour is often on
# the other side (docs/results.md measures it).
EDGE_RADIUS = 0.05


def scale_to_unit_cube(pcl: tf.Tensor, box_clip: float | None = None) -> tf.Tensor:
    """Scale each cloud so its bounding box's longest side is 1, centred at 0.

    Args:
        pcl: float32 (B, N, 3), world units.
        box_clip: float or None. When given, the bounding box is measured on the
            coordinates clipped to [-box_clip, box_clip] (the points themselves are
            not clipped), so a few stray points far outside the object's space
            cannot shrink the whole cloud. None (the metrics' default, as the
            original's metrics): the plain bounding box.
    Returns:
        float32 (B, N, 3); each cloud's box spans [-0.5, 0.5] along its longest
        axis and is centred on the origin along the others.
    """
    box = pcl if box_clip is None else tf.clip_by_value(pcl, -box_clip, box_clip)
    lo = tf.reduce_min(box, axis=1, keepdims=True)  # (B,1,3)
    hi = tf.reduce_max(box, axis=1, keepdims=True)
    size = tf.reduce_max(hi - lo, axis=2, keepdims=True)  # (B,1,1)
    return (pcl - (lo + hi) / 2.0) / tf.maximum(size, MIN_BOX)


def scale_to_unit_cube_np(pcl: np.ndarray, box_clip: float | None = None) -> np.ndarray:
    """Numpy twin of :func:`scale_to_unit_cube` for ``(N, 3)`` or ``(B, N, 3)``."""
    pcl = np.asarray(pcl, np.float64)
    box = pcl if box_clip is None else np.clip(pcl, -box_clip, box_clip)
    lo, hi = box.min(axis=-2, keepdims=True), box.max(axis=-2, keepdims=True)
    size = np.max(hi - lo, axis=-1, keepdims=True)
    return (pcl - (lo + hi) / 2.0) / np.maximum(size, MIN_BOX)


def cloud_metrics(
    gt: tf.Tensor, pred: tf.Tensor, emd: bool = True, box_clip: float | None = None, squared: bool = False
) -> dict[str, tf.Tensor]:
    """Per-sample Chamfer (and EMD) between unit-cube-scaled clouds.

    Args:
        gt: float32 (B, N, 3), pred: float32 (B, M, 3) (M == N for EMD), world units.
        box_clip: float or None, passed to :func:`scale_to_unit_cube` for the prediction.
        squared: Chamfer terms as means of *squared* nearest-neighbour distances (unit-cube
            units squared), the form of the original's training-time validation
            (``get_chamfer_metrics``: ``reduce_mean`` of ``nn_distance``'s squared distances);
            default False: means of distances, as the reported metrics. EMD is unaffected.
    Returns:
        dict of float32 (B,) tensors: chamfer_fwd, chamfer_bwd, chamfer, emd; and
        int32 (B, N) ``idx_fwd`` (nearest predicted point of each GT point) and
        (B, M) ``idx_bwd`` (nearest GT point of each predicted point).
    """
    gt_s, pred_s = scale_to_unit_cube(gt), scale_to_unit_cube(pred, box_clip)
    d_fwd, idx_fwd, d_bwd, idx_bwd = tf_ops.nn_distance(gt_s, pred_s)
    per_point = (lambda d: d) if squared else (lambda d: tf.sqrt(d + SQRT_EPS))
    out = dict(
        chamfer_fwd=tf.reduce_mean(per_point(d_fwd), axis=1),
        chamfer_bwd=tf.reduce_mean(per_point(d_bwd), axis=1),
        idx_fwd=idx_fwd,
        idx_bwd=idx_bwd,
    )
    out["chamfer"] = out["chamfer_fwd"] + out["chamfer_bwd"]
    if emd:
        match, _ = tf_ops.auction_match(pred_s, gt_s)  # (B, M): GT index of each predicted point
        matched = tf.gather(gt_s, match, batch_dims=1)
        out["emd"] = tf.reduce_mean(tf.norm(matched - pred_s, axis=-1), axis=1)
    return out


def gather_np(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """values (B, N, ...) gathered along axis 1 by idx (B, M) -> (B, M, ...)."""
    return np.take_along_axis(values, idx.reshape(idx.shape + (1,) * (values.ndim - 2)), axis=1)


def colour_errors(
    gt_rgb: np.ndarray, pred_rgb: np.ndarray, idx_fwd: np.ndarray, idx_bwd: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Colour error through nearest-neighbour correspondences.

    Args:
        gt_rgb (B, N, 3), pred_rgb (B, M, 3) in [0, 1]; idx_fwd (B, N), idx_bwd (B, M)
        from :func:`cloud_metrics`.
    Returns:
        (fwd, bwd) float64 (B,): mean squared difference per point and channel.
    """
    fwd = np.mean((gather_np(pred_rgb, idx_fwd) - gt_rgb) ** 2, axis=(1, 2))
    bwd = np.mean((gather_np(gt_rgb, idx_bwd) - pred_rgb) ** 2, axis=(1, 2))
    return fwd, bwd


def side_groups(gt: np.ndarray, sides: np.ndarray, edge_radius: float = EDGE_RADIUS) -> dict[str, np.ndarray]:
    """Split one ground-truth cloud's points by the side of the part they lie on.

    Args:
        gt: float (N, 3), the ground-truth cloud scaled to the unit cube (:func:`scale_to_unit_cube_np`).
        sides: bool (N,), True where a point lies on a part's hidden side (the data's side record).
        edge_radius: float, unit-cube units: a point closer than this to a point of the other side
            belongs to the edge group.
    Returns:
        dict 'hidden', 'visible', 'edge' -> bool (N,), disjoint and covering every point.
    """
    from scipy.spatial import cKDTree

    gt, sides = np.asarray(gt, np.float64), np.asarray(sides, bool)
    to_other = np.full(len(gt), np.inf)
    if sides.any() and not sides.all():
        to_other[sides] = cKDTree(gt[~sides]).query(gt[sides])[0]
        to_other[~sides] = cKDTree(gt[sides]).query(gt[~sides])[0]
    edge = to_other < edge_radius
    return dict(hidden=sides & ~edge, visible=~sides & ~edge, edge=edge)


def group_mean(per_point: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mean of per-point values over each group's points, per sample.

    Args:
        per_point: float (B, N), e.g. the squared colour difference of each GT point to its nearest
            predicted point; groups: bool (B, N) of one group.
    Returns:
        float64 (B,); NaN for a sample whose group is empty.
    """
    per_point, groups = np.asarray(per_point, np.float64), np.asarray(groups, bool)
    count = groups.sum(axis=1)
    total = np.where(groups, per_point, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def part_iou(gt_labels: np.ndarray, pred_labels: np.ndarray, n_cls: int, freq_wt: bool = False) -> np.ndarray:
    """Per-part IoU of two label arrays over the same points.

    Args:
        gt_labels, pred_labels: int (B, N), 0-based part indices.
        n_cls: int, number of parts K.
        freq_wt: weight each part's IoU by its GT frequency (then the parts'
            values sum to the frequency-weighted IoU instead of averaging to mIoU).
    Returns:
        float64 (B, K): IoU per part; 1 where a part is absent from both.
    """
    gt_labels, pred_labels = np.asarray(gt_labels), np.asarray(pred_labels)
    ious = np.zeros((gt_labels.shape[0], n_cls))
    for k in range(n_cls):
        g, p = gt_labels == k, pred_labels == k
        tp = np.sum(g & p, axis=1)
        union = np.sum(g, axis=1) + np.sum(p, axis=1) - tp
        # Absent from both: 1 (mIoU), or no weight at all (frequency weighted).
        iou = np.where(union > 0, tp / np.maximum(union, 1), 0.0 if freq_wt else 1.0)
        if freq_wt:
            iou = iou * np.sum(g, axis=1) / gt_labels.shape[1]
        ious[:, k] = iou
    return ious


def part_mious(
    gt_labels: np.ndarray,
    pred_labels: np.ndarray,
    idx_fwd: np.ndarray,
    idx_bwd: np.ndarray,
    n_cls: int,
    freq_wt: bool = False,
) -> dict[str, np.ndarray]:
    """Forward/backward part IoU through nearest-neighbour correspondences.

    Forward: every GT point takes the label of its nearest predicted point;
    backward: every predicted point is compared with its nearest GT point's label.
    Returns:
        dict: miou_fwd, miou_bwd, miou (B,) and iou_fwd, iou_bwd (B, K); with
        ``freq_wt`` the m* values are frequency-weighted sums instead of means.
    """
    iou_fwd = part_iou(gt_labels, gather_np(pred_labels, idx_fwd), n_cls, freq_wt)
    iou_bwd = part_iou(gather_np(gt_labels, idx_bwd), pred_labels, n_cls, freq_wt)
    reduce = np.sum if freq_wt else np.mean
    out = dict(iou_fwd=iou_fwd, iou_bwd=iou_bwd, miou_fwd=reduce(iou_fwd, axis=1), miou_bwd=reduce(iou_bwd, axis=1))
    out["miou"] = (out["miou_fwd"] + out["miou_bwd"]) / 2.0
    return out


def medoid_index(clouds: np.ndarray, batch_size: int = 64) -> tuple[int, np.ndarray]:
    """Index of the cloud with the lowest mean Chamfer distance to all others.

    Args:
        clouds: float32 (M, N, 3) numpy array (e.g. a subsample of the training set).
    Returns:
        (int index, float64 (M,) mean Chamfer of each cloud to the others).
    Builds and runs its own small graph (:func:`cloud_metrics`' Chamfer, clouds scaled to the unit cube).
    """
    m = clouds.shape[0]
    graph = tf.Graph()
    with graph.as_default():
        a = tf.placeholder(tf.float32, [None, clouds.shape[1], 3])
        b = tf.placeholder(tf.float32, [None, clouds.shape[1], 3])
        cd = cloud_metrics(a, b, emd=False)["chamfer"]
        with tf.Session(graph=graph) as sess:
            ii, jj = np.triu_indices(m, k=1)
            dist = np.zeros((m, m))
            for s in range(0, len(ii), batch_size):
                i, j = ii[s : s + batch_size], jj[s : s + batch_size]
                dist[i, j] = dist[j, i] = sess.run(cd, {a: clouds[i], b: clouds[j]})
    mean = dist.sum(axis=1) / max(m - 1, 1)
    return int(np.argmin(mean)), mean
