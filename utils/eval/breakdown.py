"""Where a model's colour error lives: the forward colour error of trained rgb experiments split by
groups of ground-truth points (``claims/colour_breakdown.py``).

For every experiment, the best validation snapshot predicts every (model, input view) sample of
the test split (``metrics_rgb.py --save_predictions``, written once into
``<exp>/breakdown_<snapshot>/``). Each ground-truth point then takes the colour of its nearest
predicted point (both clouds scaled to the unit cube, as the metrics: the rgb task's forward
colour error, squared difference averaged over the channels), and the points are grouped four
ways:

* **part**: the part label of the point (the data's part tree; the same points as the colour tree);
* **side**: a part's hidden side, its visible side, or within ``edge_radius`` of the other side
  (:func:`utils.metrics.side_groups`; data with a side record); **part and side**: both at once
  (the hidden side of the backrest apart from the seat's underside, ...);
* **boundary**: within ``edge_radius`` of a ground-truth point of another part, or not;
* **views**: seen in at least one of the model's rendered views, or in none. The caller gives it
  (``visibility``): for the demo data, ``claims/colour_breakdown.py`` rebuilds each model's mesh
  and casts a ray from every view's camera to every point
  (:meth:`utils.datagen.mesh_render.MeshRenderer.seen_in_views`). A training model's unseen
  points get no 2D supervision at all.

For each group: its share of the points, the mean error over its points (pooled over every
sample) and its share of the total error. Between two variants (``--reference``, default ``3d``),
each group's contribution to the difference of the mean errors: ``share * (mean - mean_ref)``,
which over a grouping sums to the whole difference.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

GROUPINGS = ("part", "side", "part and side", "boundary", "views")
SNAPSHOT = "best"


def _unit(xyz):
    from utils.metrics import scale_to_unit_cube_np

    return scale_to_unit_cube_np(xyz)


def point_groups(data_dir, category, model_id, gt_xyz, edge_radius, visibility=None):
    """The groups of one model's ground-truth points: dict grouping -> dict group name -> bool (N,)
    (a grouping is left out when the data lack what it needs), and the part names.

    Args:
        gt_xyz: float (N, 3), the model's ground-truth cloud (the loaders' frame).
        edge_radius: unit-cube units, the side and boundary groups' edge.
        visibility: None, or ``visibility(model_id) -> int (N,)``: in how many views each GT point is seen.
    """
    from scipy.spatial import cKDTree

    from utils import metrics
    from utils.data import (
        PART_TREE_DIR,
        PCL_LABELS_FILE,
        part_names,
        read_cloud_labels,
        tree_dirs,
    )
    from utils.data.layout import PCL_FILE, PCL_SIDES_FILE
    from utils.data.readers import read_cloud, read_point_sides
    from utils.data.shapenet import synset_id

    syn = synset_id(category)
    n = len(gt_xyz)
    unit = _unit(gt_xyz)
    out, names = {}, None
    seg = tree_dirs(data_dir, PART_TREE_DIR)
    labels_path = os.path.join(seg["pcl"], syn, model_id, PCL_LABELS_FILE)
    if os.path.isfile(labels_path):
        seg_xyz = read_cloud(os.path.join(seg["pcl"], syn, model_id, PCL_FILE), n)
        if np.allclose(seg_xyz, gt_xyz):  # the same points in both trees (generated data)
            labels = read_cloud_labels(labels_path, n)
            names = part_names(data_dir, category)
            out["part"] = {name: labels == k for k, name in enumerate(names)}
            to_other = np.full(n, np.inf)
            for k in np.unique(labels):
                mine = labels == k
                if (~mine).any():
                    to_other[mine] = cKDTree(unit[~mine]).query(unit[mine])[0]
            near = to_other < edge_radius
            out["boundary"] = {"near another part": near, "inside a part": ~near}
    pdir = os.path.join(tree_dirs(data_dir)["pcl"], syn, model_id)
    if os.path.isfile(os.path.join(pdir, PCL_SIDES_FILE)):
        sides = read_point_sides(os.path.join(pdir, PCL_SIDES_FILE), n)
        out["side"] = metrics.side_groups(unit, sides, edge_radius)
        if "part" in out:
            out["part and side"] = {
                f"{part}, {side}": pmask & smask
                for part, pmask in out["part"].items()
                for side, smask in out["side"].items()
            }
    if visibility is not None:
        seen = np.asarray(visibility(model_id)) > 0
        out["views"] = {"seen": seen, "unseen in every view": ~seen}
    return out, names


def forward_errors(gt_xyz, gt_col, xyz, col):
    """Per ground-truth point: the squared colour difference to its nearest predicted point (mean over
    channels), both clouds scaled to the unit cube. float (N,)."""
    from scipy.spatial import cKDTree

    nearest = cKDTree(_unit(xyz)).query(_unit(gt_xyz))[1]
    return np.mean((np.asarray(col, np.float64)[nearest] - gt_col) ** 2, axis=1)


def predictions(exp, data_dir, snapshot=SNAPSHOT, log=print):
    """The experiment's predictions on the test split (``predictions.npz`` of the metrics, made once
    into ``<exp>/breakdown_<snapshot>/``) and that folder's summary.json."""
    from utils.eval import evaluate
    from utils.task import task_from_ref
    from utils.train import config

    saved = config.load_train_args(exp)
    task = task_from_ref(saved.task, getattr(saved, "task_module", None))
    out = os.path.join(exp, f"breakdown_{snapshot}")
    path = os.path.join(out, evaluate.PREDICTIONS_FILE)
    if not os.path.isfile(path):
        log(f"breakdown: predicting the test split with {exp} ({snapshot} snapshot)")
        evaluate.main(
            task,
            [
                "--exp",
                exp,
                "--snapshot",
                snapshot,
                "--eval_set",
                "test",
                "--input_views",
                "all",
                "--data_dir",
                data_dir,
                "--out",
                out,
                "--save_predictions",
            ],
        )
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    return np.load(path), summary


def breakdown(exp, data_dir, category="chair", edge_radius=None, snapshot=SNAPSHOT, visibility=None, log=print):
    """One experiment's forward colour error by group (see the module docstring).

    Args:
        exp: an rgb experiment folder; data_dir: the data it is evaluated on (its test split).
        edge_radius: unit-cube units (default :data:`utils.metrics.EDGE_RADIUS`); snapshot: 'best', ...
        visibility: None, or ``visibility(model_id) -> int (N,)`` (:func:`point_groups`).
    Returns:
        dict: n_samples, mean (the pooled forward colour error), metrics_colour_fwd (the metrics' own
        mean over samples, for comparison), groups {grouping: {group: {share, mean, error_share}}}.
    """
    from utils import metrics
    from utils.data.layout import N_GT_PTS, PCL_COLOURS_FILE, PCL_FILE, tree_dirs
    from utils.data.readers import read_cloud, read_cloud_colours
    from utils.data.shapenet import synset_id

    edge_radius = metrics.EDGE_RADIUS if edge_radius is None else edge_radius
    pred, summary = predictions(exp, data_dir, snapshot, log)
    pdir = os.path.join(tree_dirs(data_dir)["pcl"], synset_id(category))
    cache = {}
    totals, counts = {}, {}
    err_sum, n_points = 0.0, 0
    for mid, xyz, col in zip(pred["model_id"], pred["xyz"], pred["features"]):
        mid = str(mid)
        if mid not in cache:
            gt_xyz = read_cloud(os.path.join(pdir, mid, PCL_FILE), N_GT_PTS)
            gt_col = read_cloud_colours(os.path.join(pdir, mid, PCL_COLOURS_FILE), len(gt_xyz))
            cache[mid] = (gt_xyz, gt_col, point_groups(data_dir, category, mid, gt_xyz, edge_radius, visibility)[0])
        gt_xyz, gt_col, groups = cache[mid]
        err = forward_errors(gt_xyz, gt_col, xyz, np.clip(col, 0.0, 1.0))
        err_sum += err.sum()
        n_points += len(err)
        for grouping, members in groups.items():
            for name, mask in members.items():
                key = (grouping, name)
                totals[key] = totals.get(key, 0.0) + float(err[mask].sum())
                counts[key] = counts.get(key, 0) + int(mask.sum())
    mean = err_sum / max(n_points, 1)
    out = dict(
        exp=os.path.abspath(exp),
        snapshot=snapshot,
        step=summary.get("step"),
        n_samples=len(pred["model_id"]),
        mean=mean,
        metrics_colour_fwd=summary["methods"]["model"].get("colour_fwd"),
        edge_radius=edge_radius,
        groups={},
    )
    for (grouping, name), total in totals.items():
        n = counts[(grouping, name)]
        out["groups"].setdefault(grouping, {})[name] = dict(
            share=n / n_points, mean=total / n if n else None, error_share=total / err_sum if err_sum else None
        )
    return out


def contributions(result, reference):
    """Per grouping and group: ``share * (mean - mean_ref)`` (the group's part of the difference of
    the pooled means; shares taken from ``reference``: the same points in both)."""
    out = {}
    for grouping, groups in result["groups"].items():
        ref = reference["groups"].get(grouping, {})
        out[grouping] = {
            name: ref[name]["share"] * (g["mean"] - ref[name]["mean"])
            for name, g in groups.items()
            if name in ref and g["mean"] is not None and ref[name]["mean"] is not None
        }
    return out


def _experiments(args):
    """[(variant, seed, exp folder)] of an ablation folder (``<out>/<variant>/seed<k>``) or of --exp."""
    found = []
    for root in args.ablation or []:
        for variant in sorted(os.listdir(root)):
            vdir = os.path.join(root, variant)
            if not os.path.isdir(vdir) or (args.variants and variant not in args.variants):
                continue
            for seed in sorted(os.listdir(vdir)):
                exp = os.path.join(vdir, seed)
                if seed.startswith("seed") and os.path.isfile(os.path.join(exp, "args.json")):
                    found.append(
                        (
                            f"{variant}@{os.path.basename(os.path.normpath(root))}"
                            if len(args.ablation) > 1
                            else variant,
                            seed[4:],
                            exp,
                        )
                    )
    for exp in args.exp or []:
        found.append((os.path.basename(os.path.normpath(exp)), "-", exp))
    return found


def table(results, reference_variant):
    """Markdown: per grouping and group, the share of points and, per variant (mean over its seeds),
    the mean error and its share of the error; then each variant's contribution to the gap from the
    reference variant."""
    variants = list(dict.fromkeys(v for v, _, _ in results))
    by_variant = {v: [r for vv, _, r in results if vv == v] for v in variants}
    lines = [
        "| grouping | group | share of points | " + " | ".join(f"{v}: error (share of error)" for v in variants) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in variants) + " |",
    ]
    lines.append(
        "| all | all points | 1.00 | "
        + " | ".join(f"{np.mean([r['mean'] for r in by_variant[v]]):.4f}" for v in variants)
        + " |"
    )
    first = by_variant[variants[0]][0]
    for grouping in GROUPINGS:
        for name, g in first["groups"].get(grouping, {}).items():
            if not g["share"]:
                continue
            cells = []
            for v in variants:
                vals = [r["groups"][grouping][name] for r in by_variant[v] if name in r["groups"].get(grouping, {})]
                means = [x["mean"] for x in vals if x["mean"] is not None]
                shares = [x["error_share"] for x in vals if x["error_share"] is not None]
                cells.append(f"{np.mean(means):.4f} ({100 * np.mean(shares):.0f} %)" if means else "-")
            lines.append(f"| {grouping} | {name} | {g['share']:.2f} | " + " | ".join(cells) + " |")
    if reference_variant in by_variant and len(variants) > 1:
        lines += [
            "",
            f"Contribution of each group to the difference from `{reference_variant}` (share of points x "
            f"difference of the group's mean error; over a grouping the contributions add up to the whole "
            f"difference), mean over paired seeds:",
            "",
            "| grouping | group | "
            + " | ".join(f"{v} − {reference_variant}" for v in variants if v != reference_variant)
            + " |",
            "| --- | --- | " + " | ".join("---" for v in variants if v != reference_variant) + " |",
        ]
        ref_by_seed = {s: r for v, s, r in results if v == reference_variant}
        gaps = {v: [] for v in variants if v != reference_variant}
        contrib = {v: [] for v in gaps}
        for v, s, r in results:
            if v in gaps and s in ref_by_seed:
                gaps[v].append(r["mean"] - ref_by_seed[s]["mean"])
                contrib[v].append(contributions(r, ref_by_seed[s]))
        lines.append(
            "| all | all points | " + " | ".join(f"{np.mean(gaps[v]):+.4f}" if gaps[v] else "-" for v in gaps) + " |"
        )
        for grouping in GROUPINGS:
            for name in first["groups"].get(grouping, {}):
                cells = []
                for v in gaps:
                    vals = [c[grouping][name] for c in contrib[v] if name in c.get(grouping, {})]
                    cells.append(f"{np.mean(vals):+.4f}" if vals else "-")
                if any(c != "-" for c in cells):
                    lines.append(f"| {grouping} | {name} | " + " | ".join(cells) + " |")
    return lines


def build_parser():
    p = argparse.ArgumentParser(
        prog="colour_breakdown.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--ablation",
        nargs="+",
        default=None,
        metavar="DIR",
        help="ablation folders (claims/ablation.py --out): every <variant>/seed<k> experiment in them",
    )
    p.add_argument("--exp", nargs="+", default=None, metavar="EXP", help="single experiment folders")
    p.add_argument("--variants", default=None, help="comma-separated variants of the ablation folders (None: all)")
    p.add_argument("--reference", default="3d", help="the variant the differences are taken from")
    p.add_argument("--data_dir", required=True, help="the data the experiments were trained on (its test split)")
    p.add_argument("--category", default="chair", help="the category of the data set (its models' folder)")
    p.add_argument(
        "--edge_radius",
        type=float,
        default=None,
        help="unit-cube units: the side and boundary groups' edge (None: utils.metrics.EDGE_RADIUS, 0.05)",
    )
    p.add_argument("--snapshot", default=SNAPSHOT, help="the snapshot of each experiment: 'best', 'latest' or a step")
    p.add_argument("--out", required=True, help="folder for table.md and table.json")
    return p


def main(argv=None, visibility_of=None):
    """The command line of ``claims/colour_breakdown.py``: 0, or 2 when there is nothing to break down.

    ``visibility_of(data_dir, category)``: None, or a function that returns the ``visibility``
    callback of :func:`point_groups` for that data (None when it cannot tell)."""
    args = build_parser().parse_args(argv)
    if args.variants:
        args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    found = _experiments(args)
    if not found:
        print("colour_breakdown: no experiment found (--ablation DIR or --exp EXP)", file=sys.stderr)
        return 2
    t0 = time.time()
    visibility = visibility_of(args.data_dir, args.category) if visibility_of else None
    if visibility is None:
        print(
            "colour_breakdown: no 'views' grouping: which points a view sees is known for the demo data only",
            flush=True,
        )
    results = []
    for variant, seed, exp in found:
        r = breakdown(exp, args.data_dir, args.category, args.edge_radius, args.snapshot, visibility)
        print(
            f"colour_breakdown: {variant} seed {seed}: forward colour error {r['mean']:.4f} "
            f"(metrics: {r['metrics_colour_fwd']:.4f}), {r['n_samples']} samples",
            flush=True,
        )
        results.append((variant, seed, r))
    from utils.common.atomic_io import write_json, write_text

    os.makedirs(args.out, exist_ok=True)
    head = [
        f"Forward colour error (each ground-truth point against its nearest predicted point) by group of "
        f"ground-truth points; {os.path.abspath(args.data_dir)} test split, every input view; snapshot "
        f"{args.snapshot!r} ('best': the best validation snapshot); edge radius "
        f"{results[0][2]['edge_radius']:g} (unit cube). Mean over seeds.",
        "",
    ]
    text = "\n".join(head + table(results, args.reference)) + "\n"
    write_text(os.path.join(args.out, "table.md"), text)
    write_json(
        os.path.join(args.out, "table.json"),
        dict(
            data_dir=os.path.abspath(args.data_dir),
            reference=args.reference,
            runs=[dict(variant=v, seed=s, **r) for v, s, r in results],
        ),
    )
    print("\n" + text + f"colour_breakdown: {time.time() - t0:.0f} s; {os.path.join(args.out, 'table.md')}")
    return 0
