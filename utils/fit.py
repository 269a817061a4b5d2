"""Fit a free point cloud and its colours to the masks and images of a few views of one model.

DIFFER's renderer on its own, in TensorFlow 2 eager code: no network, no training loop. The
cloud's coordinates and colours are the variables; every step renders them from the model's
cameras (``utils.render.Camera``) with the soft silhouette (``mask_projection``) and the
depth-aware colour projection (``feature_projection``), compares with the data's views with the
training losses (:mod:`utils.losses`) and takes an Adam step (:func:`fit`). The renderer-alone
experiment (``claims/renderer_alone.py``) and the tutorial (``examples/fit_cloud_to_views.py``,
walked through in docs/tutorial_fit.md; its command line is :func:`main`) use it:

    python data/make_demo_data.py                                  # once: the demo data
    python examples/fit_cloud_to_views.py                          # defaults: a demo chair with arms
    python examples/fit_cloud_to_views.py --losses bce             # silhouette BCE only
    python examples/fit_cloud_to_views.py --BETA 0                 # depth-unaware colour term
    python examples/fit_cloud_to_views.py --reference              # + the floor and baseline Chamfer

It prints the losses and the Chamfer distance to the ground-truth cloud (:mod:`utils.metrics`:
both clouds scaled to the unit cube, mean nearest-neighbour distance both ways) and writes a
figure of the fit over the iterations (``--figure``).
"""

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]  # the repository (this file: utils/fit.py)
LOSS_SETS = {
    "bce": ("bce",),
    "bce+aff": ("bce", "aff"),
    "bce+aff+colour": ("bce", "aff", "colour"),
    "bce+colour": ("bce", "colour"),
}


# ----------------------------------------------------------------------------- data
def _arm_fraction(data_dir, category, mid, n_pts):
    """Fraction of the model's GT points labelled 'arm' (demo part labels), or None."""
    from utils.data import PART_TREE_DIR, PCL_LABELS_FILE, part_names, read_cloud_labels, tree_dirs
    from utils.data.shapenet import synset_id

    path = os.path.join(tree_dirs(data_dir, PART_TREE_DIR)["pcl"], synset_id(category), mid, PCL_LABELS_FILE)
    try:
        names = part_names(data_dir, category)
        labels = read_cloud_labels(path, n_pts)
    except Exception:  # no part labels for this data set: the model cannot be chosen by its arms
        return None
    return float(np.mean(labels == names.index("arm"))) if "arm" in names else None


def choose_model(data_dir: str, category: str, split: str, model: str) -> str:
    """The model id to fit: ``model`` itself, or for 'auto' the first model of the split that has
    arms (a concave seat between arm rests; demo part labels), else the split's first model."""
    from utils.data import N_GT_PTS, list_models

    ids = list_models(data_dir, category, split)
    if model != "auto":
        if model not in ids:
            raise ValueError(
                f"--model {model}: not in the {split} split of {category} in {data_dir} "
                f"(first ids: {', '.join(ids[:5])})"
            )
        return model
    for mid in ids:
        frac = _arm_fraction(data_dir, category, mid, N_GT_PTS)
        if frac is not None and frac > 0.05:
            return mid
    return ids[0]


def load_views(data_dir: str, category: str, mid: str, n_views: int) -> dict[str, np.ndarray]:
    """One model's first ``n_views`` views and its GT cloud.

    Returns a dict: az, el float32 (V,) radians; mask float32 (V, H, W) in {0, 1}; rgb float32
    (V, H, W, 3) in [0, 1], 0 on the background (as the training pipeline); xyz float32 (N, 3)
    renderer frame; colours float32 (N, 3).
    """
    import cv2

    from utils.data import (
        N_GT_PTS,
        PCL_COLOURS_FILE,
        PCL_FILE,
        VIEWS_FILE,
        depth_file,
        read_cloud,
        read_cloud_colours,
        read_mask,
        read_rgb,
        read_views,
        render_file,
        tree_dirs,
    )
    from utils.data.shapenet import synset_id

    dirs = tree_dirs(data_dir)
    rdir = os.path.join(dirs["rendered"], synset_id(category), mid)
    pdir = os.path.join(dirs["pcl"], synset_id(category), mid)
    angles = np.radians(read_views(os.path.join(rdir, VIEWS_FILE)))
    if n_views > len(angles):
        raise ValueError(f"--n_views {n_views}: model {mid} has only {len(angles)} views ({rdir})")
    first = cv2.imread(os.path.join(rdir, render_file(0)))
    if first is None:
        raise ValueError(f"cannot read {os.path.join(rdir, render_file(0))}; expected a PNG view")
    img_h, img_w = first.shape[:2]
    views = range(n_views)
    mask = np.stack([read_mask(os.path.join(rdir, depth_file(v)), img_h, img_w) for v in views])
    rgb = np.stack([read_rgb(os.path.join(rdir, render_file(v)), img_h, img_w) for v in views]) * mask[..., None]
    return dict(
        az=angles[:n_views, 0].astype(np.float32),
        el=angles[:n_views, 1].astype(np.float32),
        mask=mask,
        rgb=rgb.astype(np.float32),
        xyz=read_cloud(os.path.join(pdir, PCL_FILE), N_GT_PTS),
        colours=read_cloud_colours(os.path.join(pdir, PCL_COLOURS_FILE), N_GT_PTS),
    )


# ----------------------------------------------------------------------------- metrics
def chamfer(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """The Chamfer distance of :func:`utils.metrics.cloud_metrics` between two clouds (N, 3), (M, 3)
    (eager): both scaled to the unit cube, mean nearest-neighbour distance GT -> pred plus pred -> GT.
    Returns (total, fwd, bwd) as floats."""
    out = cloud_errors(gt, None, pred, None)
    return out["chamfer"], out["chamfer_fwd"], out["chamfer_bwd"]


def cloud_errors(
    gt_xyz: np.ndarray, gt_col: np.ndarray | None, xyz: np.ndarray, col: np.ndarray | None
) -> dict[str, float]:
    """The rgb task's metrics of one fitted cloud (eager): Chamfer (and, with colours, the colour error)
    of :mod:`utils.metrics`.

    Args:
        gt_xyz (N, 3), gt_col (N, 3) in [0, 1] or None; xyz (M, 3), col (M, 3) in [0, 1] or None.
    Returns:
        dict of floats: chamfer, chamfer_fwd, chamfer_bwd (and colour, colour_fwd, colour_bwd).
    """
    from utils import metrics
    from utils.common.tfv1 import tf

    def run():
        return metrics.cloud_metrics(np.asarray(gt_xyz, np.float32)[None], np.asarray(xyz, np.float32)[None], emd=False)

    if tf.executing_eagerly():
        out = run()
    else:  # called from a graph-mode process: a graph and session of its own
        with tf.Graph().as_default(), tf.Session() as sess:
            out = sess.run(run())
    res = {k: float(np.asarray(out[k])[0]) for k in ("chamfer", "chamfer_fwd", "chamfer_bwd")}
    if gt_col is not None and col is not None:
        fwd, bwd = metrics.colour_errors(
            np.asarray(gt_col)[None], np.asarray(col)[None], np.asarray(out["idx_fwd"]), np.asarray(out["idx_bwd"])
        )
        res.update(colour=float(fwd[0] + bwd[0]), colour_fwd=float(fwd[0]), colour_bwd=float(bwd[0]))
    return res


def far_points(gt, pred, threshold=0.05):
    """Fraction of predicted points farther than ``threshold`` (unit-cube units) from every GT
    point, after scaling both clouds to the unit cube: points floating off the surface."""
    from scipy.spatial import cKDTree

    from utils.metrics import scale_to_unit_cube_np

    d = cKDTree(scale_to_unit_cube_np(gt)).query(scale_to_unit_cube_np(pred))[0]
    return float(np.mean(d > threshold))


def hull_stats(views, xyz, threshold=0.05, part_labels=None, part_names=None):
    """Where the fitted points are, against the views' visual hull and the GT surface.

    A point is inside the visual hull when it projects onto a GT foreground pixel (rounded to
    the nearest pixel centre) in every view; far when it lies farther than ``threshold``
    (unit-cube units) from every GT point. Returns a dict: outside_hull (fraction of points
    outside the hull: some silhouette rejects them), inside_far (inside the hull yet far from
    the surface: no silhouette can reject them) and, with the GT's part labels, the share of
    each part among the GT points nearest to the inside_far points.
    """
    from scipy.spatial import cKDTree

    from utils.metrics import scale_to_unit_cube_np
    from utils.render.camera import project_np

    n_views, img_h, img_w = views["mask"].shape
    inside = np.ones(len(xyz), bool)
    for v in range(n_views):
        rc = np.round(project_np(xyz, views["az"][v], views["el"][v], img_h, img_w)[:, :2]).astype(int)
        ok = (rc[:, 0] >= 0) & (rc[:, 0] < img_h) & (rc[:, 1] >= 0) & (rc[:, 1] < img_w)
        fg = np.zeros(len(xyz), bool)
        fg[ok] = views["mask"][v][rc[ok, 0], rc[ok, 1]] > 0.5
        inside &= fg
    dist, nearest = cKDTree(scale_to_unit_cube_np(views["xyz"])).query(scale_to_unit_cube_np(xyz))
    far = dist > threshold
    out = dict(outside_hull=float(np.mean(~inside)), inside_far=float(np.mean(inside & far)))
    if part_labels is not None and (inside & far).any():
        owners = part_labels[nearest[inside & far]]
        out["inside_far_parts"] = {name: round(float(np.mean(owners == k)), 3) for k, name in enumerate(part_names)}
    return out


def part_labels_of(data_dir, category, mid, n_pts):
    """The GT cloud's 0-based part labels and the part names, or (None, None) without them."""
    from utils.data import PART_TREE_DIR, PCL_LABELS_FILE, part_names, read_cloud_labels, tree_dirs
    from utils.data.shapenet import synset_id

    path = os.path.join(tree_dirs(data_dir, PART_TREE_DIR)["pcl"], synset_id(category), mid, PCL_LABELS_FILE)
    try:
        return read_cloud_labels(path, n_pts), part_names(data_dir, category)
    except Exception:  # no part annotation for this data set
        return None, None


def reference_band(data_dir: str, category: str, mid: str, gt: np.ndarray) -> dict[str, float]:
    """The floor and the baseline of the Chamfer distance for this model.

    floor: GT vs the data's second, independent sampling of the same surface
    (``pcl_1024_fps_trimesh_resample.npy``: every generated data set has one); None for data without
    it (the authors' ShapeNet clouds). medoid: the training split's medoid cloud
    (:func:`utils.metrics.medoid_index`, the image-blind baseline of docs/results.md).
    """
    from utils.data import N_GT_PTS, PCL_FILE, list_models, read_cloud, tree_dirs
    from utils.data.layout import RESAMPLE_PCL_FILE
    from utils.data.shapenet import synset_id
    from utils.metrics import medoid_index

    out = {}
    pdir = os.path.join(tree_dirs(data_dir)["pcl"], synset_id(category))
    again = os.path.join(pdir, mid, RESAMPLE_PCL_FILE)
    if os.path.isfile(again):
        out["floor"] = chamfer(gt, read_cloud(again, N_GT_PTS))[0]
    train = list_models(data_dir, category, "train")
    clouds = np.stack([read_cloud(os.path.join(pdir, t, PCL_FILE), N_GT_PTS) for t in train])
    out["medoid"] = chamfer(gt, clouds[medoid_index(clouds)[0]])[0]
    return out


# ----------------------------------------------------------------------------- the fit
def fit(
    views: dict[str, np.ndarray],
    steps: int = 600,
    n_pts: int = 1024,
    losses: Sequence[str] = ("bce", "aff", "colour"),
    beta: float = 100.0,
    sigma_sq: float = 0.4,
    well_radius: float = 1.0,
    lr: float = 0.01,
    seed: int = 0,
    init_radius: float = 0.3,
    wt_aff: float = 1.0,
    wt_rgb: float = 1.0,
    log_every: int = 100,
    snapshots: Sequence[int] = (),
    log: Callable[[str], None] = print,
) -> dict:
    """Optimise a free cloud (and colours) against ``views`` (see :func:`load_views`).

    Args:
        views: dict from :func:`load_views` (V views of H x W px).
        steps: Adam steps; n_pts: points of the fitted cloud; lr: Adam learning rate.
        losses: subset of 'bce' (mask BCE), 'aff' (forward and backward affinity, x1e-4 as in
            training, times ``wt_aff``; plus the point-wise affinity of utils/losses.py), 'colour'
            (L2 of the rendered colours, times ``wt_rgb``).
        beta: softmax sharpness of the colour projection (0: depth-unaware).
        sigma_sq: px^2, the silhouette's Gaussian; well_radius: px.
        init_radius: world units; the cloud starts uniform in a ball of this radius.
        snapshots: steps at which to keep a copy of the cloud (for the figure).
    Returns:
        dict: xyz (N, 3), colours (N, 3), history (list of dicts: step, losses, chamfer),
        snapshots {step: (xyz, colours)}, seconds.
    """
    import tensorflow as tf

    from utils import losses as L
    from utils import render

    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n_pts, 3))
    r = init_radius * rng.uniform(size=(n_pts, 1)) ** (1 / 3)
    xyz = tf.Variable((d / np.linalg.norm(d, axis=1, keepdims=True) * r).astype(np.float32), name="xyz")
    logits = tf.Variable(np.zeros((n_pts, 3), np.float32), name="colour_logits")  # colours 0.5 to start
    n_views, img_h, img_w = views["mask"].shape
    cam = render.Camera.from_az_el(views["az"], views["el"], img_h, img_w)  # the data's cameras
    gt_mask = tf.constant(views["mask"])
    gt_rgb = tf.constant(views["rgb"])
    from utils.data.distance_map import gt_distance_transform

    gt_dist = tf.constant(gt_distance_transform(views["mask"]))  # (V, H, W) px^2 to the GT silhouette
    opt = tf.keras.optimizers.Adam(lr)
    variables = [xyz, logits] if "colour" in losses else [xyz]

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            pix = cam.project(xyz)  # (V, N, 3): row px, column px, depth
            mask = render.mask_projection(pix, img_h, img_w, sigma_sq)  # (V, H, W)
            terms = {"bce": L.mask_bce(mask, gt_mask)}
            total = terms["bce"] if "bce" in losses else 0.0
            if "aff" in losses:
                terms["aff_fwd"] = L.affinity_fwd(mask, gt_dist)
                terms["aff_bwd"] = L.affinity_bwd(pix, gt_mask)
                terms["aff_pts"] = L.affinity_points(pix, gt_dist)
                total += wt_aff * (L.AFFINITY_SCALE * (terms["aff_fwd"] + terms["aff_bwd"]) + terms["aff_pts"])
            if "colour" in losses:
                colours = tf.sigmoid(tf.broadcast_to(logits[None], [n_views, n_pts, 3]))
                rgb, _ = render.feature_projection(pix, colours, img_h, img_w, well_radius, beta)
                terms["colour"] = L.rgb_l2(rgb, gt_rgb)
                total += wt_rgb * terms["colour"]
            terms["total"] = total
        opt.apply_gradients(zip(tape.gradient(total, variables), variables))
        return terms

    history, kept, terms = [], {}, {}
    t0 = time.perf_counter()
    for it in range(steps + 1):
        if it in snapshots:
            kept[it] = (xyz.numpy().copy(), tf.sigmoid(logits).numpy())
        if it % log_every == 0 or it == steps:
            cd = chamfer(views["xyz"], xyz.numpy())[0]
            history.append(dict(step=it, chamfer=cd, **{k: float(v) for k, v in terms.items()} if it else {}))
            if it:
                log(
                    f"step {it:5d}  "
                    + "  ".join(f"{k} {float(v):.4g}" for k, v in terms.items())
                    + f"  chamfer {cd:.4f}"
                )
            else:
                log(f"step {it:5d}  chamfer {cd:.4f} (the initial ball)")
        if it < steps:
            terms = step()
    return dict(
        xyz=xyz.numpy(),
        colours=tf.sigmoid(logits).numpy(),
        history=history,
        snapshots=kept,
        seconds=time.perf_counter() - t0,
    )


# ----------------------------------------------------------------------------- figure
def figure(views, result, path, title):
    """The fit over the iterations: the cloud seen from view 0 (world points projected and
    coloured), its rendered silhouette, and the Chamfer curve. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils.render.camera import project_np

    steps = sorted(result["snapshots"])
    img_h, img_w = views["mask"].shape[1:]
    cols = len(steps) + 1
    fig, axes = plt.subplots(2, cols, figsize=(1.9 * cols, 4.0), dpi=70)

    def scatter(ax, xyz, colours, label):
        pix = project_np(xyz, views["az"][0], views["el"][0], img_h, img_w)
        order = np.argsort(-pix[:, 2])  # far points first, near ones drawn over them
        ax.scatter(pix[order, 1], pix[order, 0], c=np.clip(colours[order], 0, 1), s=3, linewidths=0)
        ax.set_xlim(0, img_w - 1)
        ax.set_ylim(img_h - 1, 0)
        ax.set_title(label, fontsize=8)

    for k, s in enumerate(steps):
        xyz, colours = result["snapshots"][s]
        scatter(axes[0, k], xyz, colours, f"step {s}")
        axes[1, k].imshow(_silhouette(xyz, views, 0), cmap="gray", vmin=0, vmax=1)
        axes[1, k].set_title("points in view 0", fontsize=8)
    scatter(axes[0, -1], views["xyz"], views["colours"], "GT cloud")
    axes[1, -1].imshow(views["rgb"][0])
    axes[1, -1].set_title("GT view 0", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"  # write, then rename: never half a PNG
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()


def _silhouette(xyz, views, v):
    """A hard silhouette of the points in view v (numpy): the pixels they fall on."""
    from utils.render.camera import project_np

    img_h, img_w = views["mask"].shape[1:]
    pix = np.round(project_np(xyz, views["az"][v], views["el"][v], img_h, img_w)[:, :2]).astype(int)
    ok = (pix[:, 0] >= 0) & (pix[:, 0] < img_h) & (pix[:, 1] >= 0) & (pix[:, 1] < img_w)
    img = 0.35 * views["mask"][v].copy()  # the GT silhouette in grey, the points' pixels in white
    img[pix[ok, 0], pix[ok, 1]] = 1.0
    return img


# ----------------------------------------------------------------------------- entry point
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="fit_cloud_to_views.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data_dir", default=str(ROOT / "data"), help="a data root in the DIFFER layout")
    p.add_argument("--category", default="chair")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--model", default="auto", help="model id; 'auto': the split's first model with arms")
    p.add_argument("--n_views", type=int, default=10, help="views used (the model's first ones)")
    p.add_argument("--steps", type=int, default=1000, help="Adam steps")
    p.add_argument("--n_pts", type=int, default=1024, help="points of the fitted cloud")
    p.add_argument("--lr", type=float, default=0.005, help="Adam learning rate")
    p.add_argument(
        "--losses",
        default="bce+aff+colour",
        choices=sorted(LOSS_SETS),
        help="loss terms: mask BCE, + affinities (forward, backward, point-wise), + colour L2",
    )
    p.add_argument(
        "--BETA",
        type=float,
        default=100.0,
        help="depth-aware softmax sharpness of the colour projection; 0: depth-unaware",
    )
    p.add_argument("--SIGMA_SQ", type=float, default=0.4, help="variance of the silhouette Gaussian (px^2)")
    p.add_argument("--WELL_RADIUS", type=float, default=1.0, help="half-side of the colour well (px)")
    p.add_argument("--wt_aff", type=float, default=1.0, help="weight of the affinity terms")
    p.add_argument("--wt_rgb", type=float, default=1.0, help="weight of the colour term")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial ball of points")
    p.add_argument("--log_every", type=int, default=100, help="steps between printed lines")
    p.add_argument(
        "--figure",
        default=str(ROOT / "outputs" / "fit_cloud_to_views.png"),
        help="PNG to write, its folder made if needed ('' for none)",
    )
    p.add_argument("--json", default="", help="also write the numbers to this JSON file")
    p.add_argument(
        "--reference",
        action="store_true",
        help="also measure the Chamfer floor (generated data: the second, independent sampling of "
        "the GT surface) and baselines (training medoid, the initial ball)",
    )
    args = p.parse_args(argv)
    for flag in ("n_views", "steps", "n_pts", "log_every"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if not (args.lr > 0 and args.SIGMA_SQ > 0 and args.WELL_RADIUS >= 0 and args.BETA >= 0):
        p.error("--lr and --SIGMA_SQ must be > 0, --WELL_RADIUS and --BETA >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """The tutorial's command line (``examples/fit_cloud_to_views.py``): 0, or 2 after a one-line error."""
    args = parse_args(argv)
    from utils.data import DataError, missing_dataset

    problem = missing_dataset("fit_cloud_to_views", args.data_dir, args.category)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    try:
        mid = choose_model(args.data_dir, args.category, args.split, args.model)
        views = load_views(args.data_dir, args.category, mid, args.n_views)
    except (DataError, ValueError) as err:
        print(f"fit_cloud_to_views: {err}", file=sys.stderr)
        return 2
    from utils import render

    losses = LOSS_SETS[args.losses]
    print(
        f"model {mid} ({args.category}, {args.split}), {args.n_views} views of "
        f"{views['mask'].shape[1]}x{views['mask'].shape[2]} px; losses {args.losses}, BETA {args.BETA:g}; "
        f"projection: {render.auto_impl()}"
    )
    snaps = sorted({0, args.steps // 10, args.steps // 3, args.steps})
    result = fit(
        views,
        steps=args.steps,
        n_pts=args.n_pts,
        losses=losses,
        beta=args.BETA,
        sigma_sq=args.SIGMA_SQ,
        well_radius=args.WELL_RADIUS,
        lr=args.lr,
        seed=args.seed,
        wt_aff=args.wt_aff,
        wt_rgb=args.wt_rgb,
        log_every=args.log_every,
        snapshots=snaps,
    )
    cd, fwd, bwd = chamfer(views["xyz"], result["xyz"])
    summary = dict(
        model=mid,
        losses=args.losses,
        BETA=args.BETA,
        steps=args.steps,
        n_views=args.n_views,
        chamfer=cd,
        chamfer_fwd=fwd,
        chamfer_bwd=bwd,
        far_points=far_points(views["xyz"], result["xyz"]),
        initial_chamfer=result["history"][0]["chamfer"],
        seconds=round(result["seconds"], 1),
    )
    from utils.data import N_GT_PTS

    labels, names = part_labels_of(args.data_dir, args.category, mid, N_GT_PTS)
    summary.update(hull_stats(views, result["xyz"], part_labels=labels, part_names=names))
    print(
        f"final chamfer {cd:.4f} (GT->fit {fwd:.4f}, fit->GT {bwd:.4f}); points farther than 0.05 from the GT: "
        f"{100 * summary['far_points']:.1f}%; outside the views' visual hull: {100 * summary['outside_hull']:.1f}%; "
        f"inside it but far from the surface: {100 * summary['inside_far']:.1f}%"
        + (f" (nearest GT part: {summary['inside_far_parts']})" if "inside_far_parts" in summary else "")
        + f"; {summary['seconds']} s"
    )
    if args.reference:
        band = reference_band(args.data_dir, args.category, mid, views["xyz"])
        band["sphere"] = summary["initial_chamfer"]
        summary.update({f"{k}_chamfer": v for k, v in band.items()})
        lo = band.get("floor")
        print(
            "reference: "
            + ", ".join(f"{k} {v:.4f}" for k, v in band.items())
            + (
                f"; the fit is {'inside' if lo <= cd <= band['medoid'] else 'OUTSIDE'} the floor-to-medoid band"
                if lo is not None
                else ""
            )
        )
    if args.figure:
        figure(views, result, args.figure, f"{mid}: {args.losses}, BETA {args.BETA:g}; final Chamfer {cd:.4f}")
        print(f"figure: {args.figure}")
    if args.json:
        from utils.common.atomic_io import write_json

        write_json(args.json, summary)
    return 0
