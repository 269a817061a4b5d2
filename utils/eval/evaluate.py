"""Metrics runner shared by rgb/metrics_rgb.py and partseg/metrics_partseg.py.

Restores a snapshot of an experiment (architecture from its args.json), runs
the network on an evaluation split and computes, per sample, Chamfer and EMD
(utils.metrics, tf_ops) plus the task's feature metrics, for the model and for
baselines that ignore the image (the task defines them; all start from the
training set's medoid cloud). A sample is one input view of one model: by
default every input view of every model of the split (the paper's protocol).
Where the data holds a second, independent sampling of each surface (the demo data does,
data/README.md), the same metrics are computed for it against the ground truth: the
*floor* (:data:`FLOOR`), what a perfect prediction with as many other points would
score. Where the data records which ground-truth points lie on a part's hidden side (the demo
data does), the task's feature error is also given per group of ground-truth points: hidden
side, visible side and the edge between them (:func:`utils.metrics.side_groups`, the task's
``group_feature_metrics``). Writes ``per_sample.csv`` (one row per sample and method), ``per_model.csv``
(means over each model's views) and ``summary.json``, prints a
model-vs-baseline table, and makes the pictures asked for (screenshots, GIFs,
PLY, an interactive window). The files of a run are one set: written into a working folder beside
``--out`` and moved onto it when complete, so a run killed meanwhile leaves the previous run's
folder whole (:func:`_report`).
"""

import argparse
import csv
import json
import math
import os
import sys
import types

import numpy as np

from utils import metrics
from utils.common import atomic_io, cli, tfv1, viewer, visualize
from utils.common.progress import Progress
from utils.common.tfv1 import tf
from utils.data import SPLITS, BatchPipeline, DataError, list_models
from utils.experiment import Experiment, ExperimentStateError, WrongTask, check_task
from utils.model import GraphSettings, build_graph
from utils.task import as_task
from utils.train import config
from utils.train.clouds import upright

# One pass over the samples in file order, one input view each (unless told otherwise), the
# first views supervising: the evaluation's pipelines differ from training's in these arguments.
_ONE_PASS = dict(n_views=1, view_mode="fixed", use_input_view=False, shuffle=False, repeat=False)
FLOOR = "floor_resampled_gt"  # the method name of the floor row: ground truth vs its second sampling
FLOOR_LABEL = "ground truth vs an independent resampling of the same surface"
NO_FLOOR = (
    "not available: the data holds no second sampling of its surfaces (the authors' ShapeNet "
    "clouds have none; the demo data writes one, data/README.md)"
)
NO_SIDES = (
    "not available: the data holds no side record of its ground-truth points (pcl_1024_fps_trimesh_sides.npy; "
    "the demo data writes one, data/README.md), so the errors are not split by side"
)


def _collect_training_clouds(targs, task, n_models):
    """Up to n_models (cloud, point features, model id) from the training split, in a fixed order:
    (float32 (M, N, 3), (M, N) + feature_dims, list of M str)."""
    data = BatchPipeline.from_args(targs, task, "train", batch_size=1, all_input_views=False, **_ONE_PASS)
    try:
        batches = [data.get_batch(k) for k in range(min(n_models, data.n_models))]
    finally:
        data.close()
    return (
        np.concatenate([b["pcl"] for b in batches]),
        np.concatenate([b[task.point_key] for b in batches]),
        [str(b["model_id"][0]) for b in batches],
    )


def _eval_pipeline(targs, task, margs):
    """The evaluation samples: every (model, input view) pair of the split (``--input_views all``,
    the paper's protocol) or one seeded random input view per model (``random``)."""
    try:
        list_models(targs.data_dir, targs.category, margs.eval_set, task.data_tree)
    except DataError as err:
        if "no split file" in str(err) and margs.eval_set != "val":
            raise DataError(
                f"{err}. The authors' ShapeNet release has only train and val lists: evaluate with --eval_set val"
            ) from None
        raise
    return BatchPipeline.from_args(
        targs,
        task,
        margs.eval_set,
        batch_size=margs.batch_size,
        all_input_views=margs.input_views == "all",
        **_ONE_PASS,
    )


def evaluate(task, margs):
    """Run the evaluation described by the parsed metrics flags; returns the summary dict.

    Steps: the trained experiment (:func:`_trained`), the evaluation samples
    (:func:`_eval_pipeline`), the image-blind baselines (:func:`_baselines`), every sample
    scored (:func:`_run`), then the files, the table and the pictures (:func:`_report`).
    """
    tfv1.use_graph_mode()  # the process-wide switch, here in the entry point, not at import
    tfv1.select_gpu(margs.gpu)
    tfv1.set_verbose(margs.verbose)
    margs = _check_window(margs)
    targs, exp, prefix, step, trained_on = _trained(task, margs)
    out_dir = margs.out or exp.path(f"metrics_{margs.eval_set}_{margs.snapshot}")
    check_out_dir(out_dir, "--out")
    check_replaceable(out_dir, "--out")
    remove_leftovers(out_dir)
    data = _eval_pipeline(targs, task, margs)  # the folder is made once there are results to write
    try:
        medoid, baselines, baseline_info = _baselines(targs, task, margs, trained_on)
        floor = floor_method(data, task)
        groups = point_groups(data, margs.edge_radius)
        rows, pictures, predictions = _run(
            task, margs, targs, prefix, data, baselines + ([(FLOOR, floor)] if floor else []), groups
        )
    finally:
        data.close()
    floor_info = dict(method=FLOOR, label=FLOOR_LABEL, available=floor is not None)
    if floor is None:
        floor_info["note"] = NO_FLOOR
    summary = _summarise(
        rows,
        ["model"] + [name for name, _ in baselines] + ([FLOOR] if floor else []),
        dict(
            exp=os.path.abspath(margs.exp),
            snapshot=margs.snapshot,
            step=step,
            data_dir=os.path.abspath(targs.data_dir),
            trained_on=trained_on,
            eval_set=margs.eval_set,
            category=targs.category,
            input_views=margs.input_views,
            clip_box=margs.clip_box,
            medoid_model=None if medoid is None else int(medoid),
            baseline=baseline_info,
            task=task.name,
            headline=list(task.headline),
            floor=floor_info,
            point_groups=_groups_info(groups),
        ),
    )
    legend = task.legend(targs.data_dir, targs.category, task.n_feat(targs))
    _report(out_dir, rows, summary, pictures, task, margs, predictions, legend)
    return summary


def _check_window(margs):
    """``--visualize`` without a display: say so (before the evaluation, not after) and go on without
    the window. Returns the flags to use."""
    problem = margs.visualize and visualize.display_problem()
    if not problem:
        return margs
    print(
        f"metrics: --visualize: {problem}, so no window will open. Write the pictures to files instead: "
        "--save_screenshots (PNG grids) or --save_gifs (turntables).",
        file=sys.stderr,
        flush=True,
    )
    return argparse.Namespace(**dict(vars(margs), visualize=False))


def check_out_dir(path, flag="--out"):
    """Refuse (CLIError) an output folder that is a file or cannot be created/written; creates nothing."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise cli.CLIError(f"{flag} {path}: is a file; expected a folder (created when absent)")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise cli.CLIError(f"{flag} {path}: {parent} is not a writable folder; expected a folder this user can write")


# What a metrics run writes in its output folder: the folder is replaced as a whole by the next run.
OUTPUTS = (
    "per_sample.csv",
    "per_model.csv",
    "summary.json",
    "predictions.npz",
    "screenshots",
    "gifs",
    "ply",
    viewer.VIEWER_FILE,
)


def check_replaceable(path, flag="--out"):
    """Refuse (CLIError) an output folder that holds files a metrics run did not write: the run
    replaces the folder as a whole (its outputs are a set), which must not take anything else with it."""
    try:
        names = sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return
    foreign = [n for n in names if n not in OUTPUTS and not atomic_io.is_temporary(n)]
    if foreign:
        raise cli.CLIError(
            f"{flag} {os.path.abspath(path)}: holds files that metrics did not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); expected a new or empty folder, or an earlier metrics "
            "output folder (a run replaces its outputs as a set)"
        )


def remove_leftovers(out_dir):
    """Remove what runs killed while writing into ``out_dir`` left beside it and in it (one warning line
    each): their unfinished output folders (``.<name>.tmp-<pid>-<hex>``) and temporary files."""
    out_dir = os.path.abspath(out_dir)
    atomic_io.remove_leftovers(os.path.dirname(out_dir), names={os.path.basename(out_dir)}, warn=cli.warn)
    if os.path.isdir(out_dir):
        atomic_io.remove_leftovers(out_dir, warn=cli.warn)


def open_trained(exp_dir, task, snapshot, kind):
    """Validate an experiment for metrics or predict before any graph is built: the folder, its
    args.json, the task it was trained for and a checkpoint that reads back in full (utils.experiment,
    ``Experiment.restorable``: 'latest' falls back to an older readable snapshot, with a warning).

    Returns (training flags as saved, Experiment, checkpoint prefix, iteration); raises
    CLIError / WrongTask / ExperimentStateError with one line naming the file or flag.
    """
    if not os.path.isdir(exp_dir):
        raise cli.CLIError(f"--exp {exp_dir}: no such folder; expected an experiment folder written by training")
    try:
        targs = config.load_train_args(exp_dir)
    except FileNotFoundError as err:
        raise cli.CLIError(str(err)) from None
    except ValueError as err:  # truncated or edited by hand
        raise cli.CLIError(
            f"{err}; expected the args.json training wrote (earlier versions: {config.HISTORY_FILE})"
        ) from None
    check_task(exp_dir, getattr(targs, "task", task.name), task.name, kind)
    exp = Experiment(exp_dir, create=False)
    try:
        prefix, step = exp.restorable(snapshot, warn=cli.warn)
    except (FileNotFoundError, ValueError) as err:
        raise cli.CLIError(f"--snapshot {snapshot}: {err}" if "--snapshot" not in str(err) else str(err)) from None
    return targs, exp, prefix, step


def _trained(task, margs):
    """The experiment's training flags (args.json, ``--data_dir`` replacing its data root, resolved
    by the task) and the snapshot to evaluate: (targs, Experiment, checkpoint prefix, iteration,
    the data root the experiment was trained on (args.json's, absolute))."""
    targs, exp, prefix, step = open_trained(margs.exp, task, margs.snapshot, "metrics")
    trained_on = os.path.abspath(os.path.expanduser(targs.data_dir))
    if margs.data_dir:
        targs.data_dir = os.path.abspath(os.path.expanduser(margs.data_dir))
    return task.resolve_args(targs), exp, prefix, step, trained_on


def _baselines(targs, task, margs, trained_on):
    """The training medoid (over ``--baseline_models`` training clouds) and the task's image-blind
    baselines built on it: (medoid index or None, [(name, fn)], summary.json's ``baseline`` record).

    The training clouds come from the data the experiment was trained on (``trained_on``, args.json);
    where that holds no training split (moved, or another machine), from the training split of the
    evaluated data (``--data_dir``); where neither has one (a data set with only a test split, and
    the training data gone), or with ``--baseline_models 0``, the baselines are skipped, with a line
    saying why.
    """
    if margs.baseline_models == 0:
        return None, [], dict(available=False, note="skipped: --baseline_models 0")
    roots = [trained_on] + ([targs.data_dir] if os.path.abspath(targs.data_dir) != trained_on else [])
    problems = []
    for root in roots:
        bargs = argparse.Namespace(**dict(vars(targs), data_dir=root))
        try:
            train_clouds, train_feats, ids = _collect_training_clouds(bargs, task, margs.baseline_models)
        except (DataError, OSError) as err:
            problems.append(f"{root}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
            continue
        medoid, _ = metrics.medoid_index(train_clouds)
        source = "the experiment's training data" if root == trained_on else "the evaluated data set's training split"
        baselines = task.baselines(train_clouds, train_feats, medoid, task.n_feat(targs))
        info = dict(
            available=True,
            data_dir=root,
            source=source,
            split="train",
            n_models=len(ids),
            medoid_model_id=ids[medoid],
            methods=[name for name, _ in baselines],
        )
        if problems:
            cli.warn(f"baselines: {'; '.join(problems)}; taking the training medoid from {root}")
        return medoid, baselines, info
    note = "skipped: no training split to take the medoid from (" + "; ".join(problems) + ")"
    cli.warn(f"image-blind baselines {note}; the model's metrics are complete without them")
    return None, [], dict(available=False, note=note)


def floor_method(data, task):
    """The floor as a method: ``fn(batch) -> (xyz (B, N, 3), features (B, N, C))``, each sample's
    second sampling of its model's surface (``BatchPipeline.resampled_gt``) with its point
    features as a prediction's (labels become one-hot scores); None when the split's first model
    has no second sampling (then the data has none) or the task reads no targets from it
    (:meth:`utils.task.Task.load_resampled_targets`)."""
    first = data.resampled_gt(data.models[0]) if data.models else None
    if first is None or task.point_key not in first:  # no second sampling, or none of this task's targets
        return None
    cache = {}

    def resampled(batch):
        clouds, feats = [], []
        for mid in batch["model_id"]:
            mid = str(mid)
            if mid not in cache:
                again = data.resampled_gt(mid)
                if again is None:
                    raise DataError(
                        f"model {mid} has no second sampling of its surface (other models of the "
                        f"split have one): regenerate the data set"
                    )
                cache[mid] = again
            clouds.append(cache[mid]["pcl"])
            feats.append(_as_prediction(task, cache[mid][task.point_key], batch))
        return np.stack(clouds), np.stack(feats)

    return resampled


class PointGroups:
    """The side groups of the evaluated ground-truth clouds (utils.metrics.side_groups), per model
    from the data's side record, computed once per model.

    ``masks(batch)`` -> dict group name -> bool (B, N); ``count`` adds a batch's valid samples to
    each group's point count (its share of the evaluated points)."""

    def __init__(self, data, edge_radius):
        self.data, self.edge_radius = data, float(edge_radius)
        self._cache = {}
        self.counts = dict.fromkeys(metrics.SIDE_GROUPS, 0)
        self.n_points = 0
        self.metric_keys = {}  # the task's per-group metric names, in order (_score)

    def masks(self, batch):
        per_sample = []
        for mid, gt in zip(batch["model_id"], batch["pcl"]):
            mid = str(mid)
            if mid not in self._cache:
                sides = self.data.point_sides(mid)
                if sides is None:
                    raise DataError(
                        f"model {mid} has no side record (other models of the split have one): regenerate the data set"
                    )
                self._cache[mid] = metrics.side_groups(metrics.scale_to_unit_cube_np(gt), sides, self.edge_radius)
            per_sample.append(self._cache[mid])
        return {g: np.stack([s[g] for s in per_sample]) for g in metrics.SIDE_GROUPS}

    def count(self, masks, n_valid):
        for g, m in masks.items():
            self.counts[g] += int(m[:n_valid].sum())
        self.n_points += int(next(iter(masks.values()))[:n_valid].size)


def point_groups(data, edge_radius):
    """:class:`PointGroups` of the split, or None when its first model has no side record (then the
    data has none: ShapeNet, make_dataset.py output, or a tree without it)."""
    if not data.models or data.point_sides(data.models[0]) is None:
        return None
    return PointGroups(data, edge_radius)


def _groups_info(groups):
    """summary.json's record of the side groups: available, the metric names, the edge radius, each
    group's share of the evaluated GT points, or why there are none."""
    if groups is None:
        return dict(available=False, note=NO_SIDES)
    return dict(
        available=True,
        metrics=list(groups.metric_keys),
        edge_radius=groups.edge_radius,
        definition="forward error (each ground-truth point against its nearest predicted point) over the "
        "ground-truth points within edge_radius (unit-cube units) of a point of the other side "
        "(edge), the other points on a part's hidden side (hidden), and the rest (visible)",
        share={g: groups.counts[g] / max(groups.n_points, 1) for g in metrics.SIDE_GROUPS},
    )


def _as_prediction(task, gt_feat, batch):
    """Ground-truth point features (N,) + feature_dims in the form of predicted ones (N, C): part labels
    (an integer point dtype) become one-hot scores over the task's classes, colours stay."""
    if task.point_dtype.is_integer:
        n_cls = int(batch.get("_n_cls", 0)) or int(np.max(gt_feat)) + 1
        return np.eye(n_cls, dtype=np.float32)[gt_feat]
    return np.asarray(gt_feat, np.float32)


def _metrics_graph(targs, task, batch_size, n_gt, clip_box):
    """The network (as trained) and the cloud metrics, in a new graph.

    Returns:
        SimpleNamespace: graph, g (build_graph's network), gt and pred placeholders (B, n_gt, 3),
        (B, N_PTS, 3) (any N with Chamfer only: the baselines' clouds have n_gt points), cloud
        (utils.metrics.cloud_metrics; EMD when n_gt == N_PTS), saver.
    """
    with_emd = n_gt == targs.N_PTS
    if not with_emd:
        cli.warn(f"EMD needs equal point counts (prediction {targs.N_PTS}, ground truth {n_gt}); skipped")
    m = types.SimpleNamespace(graph=tf.Graph())
    with m.graph.as_default():
        m.g = build_graph(GraphSettings.from_args(targs, task), task, batch_size, training=False)
        m.gt = tf.placeholder(tf.float32, [batch_size, n_gt, 3])
        m.pred = tf.placeholder(tf.float32, [batch_size, targs.N_PTS if with_emd else None, 3])
        m.cloud = metrics.cloud_metrics(m.gt, m.pred, emd=with_emd, box_clip=clip_box or None)
        m.saver = tf.train.Saver(tf.global_variables("recon_net"))
    return m


def _score(sess, m, task, margs, batch, xyz, feat, groups=None, masks=None):
    """Per-sample metrics of one method's clouds ``xyz`` (B, N, 3), features ``feat`` against the
    batch's ground truth: dict name -> (B,) array; with ``groups`` (a :class:`PointGroups`) and its
    ``masks`` (group name -> bool (B, N_gt)) also the task's per-group feature errors."""
    res = sess.run(m.cloud, {m.gt: batch["pcl"], m.pred: xyz})
    out = {k: res[k] for k in ("chamfer_fwd", "chamfer_bwd", "chamfer", "emd") if k in res}
    out.update(task.feature_metrics(batch[task.point_key], feat, res["idx_fwd"], res["idx_bwd"], margs))
    if groups is not None:
        per_group = task.group_feature_metrics(batch[task.point_key], feat, res["idx_fwd"], masks)
        groups.metric_keys.update(dict.fromkeys(per_group))
        out.update(per_group)
    return out


def _run(task, margs, targs, prefix, data, baselines, groups=None):
    """Restore the snapshot and score the samples of ``data`` (at most ``--max_samples``) with the
    model and every baseline (and, with ``groups``, a :class:`PointGroups`, their per-group errors):
    (rows, one per sample and method; pictures; with ``--save_predictions`` the model's
    [(model id, input view, xyz (N, 3), features (N, C))] per sample, else None)."""
    B = margs.batch_size
    n_total = data.n_samples if margs.max_samples <= 0 else min(data.n_samples, margs.max_samples)
    m = _metrics_graph(targs, task, B, data.get_batch(0)["pcl"].shape[1], margs.clip_box)
    rows, pictures = [], _Pictures(task, margs.n_pictures or n_total, every_sample=margs.visualize)
    saved = [] if getattr(margs, "save_predictions", False) else None
    n_batches = math.ceil(n_total / B)
    with (
        tf.Session(graph=m.graph, config=tfv1.session_config()) as sess,
        Progress(n_batches, f"metrics {margs.eval_set}", unit="batch", enabled=margs.tqdm) as progress,
    ):
        m.saver.restore(sess, prefix)
        for k in range(n_batches):
            batch = data.get_batch(k)  # always B samples; the pipeline pads the last batch of the pass
            n_valid = min(int(np.sum(batch["valid"])), n_total - k * B)
            xyz, feat = sess.run([m.g.xyz, m.g.feat], m.g.feed(batch))
            masks = groups.masks(batch) if groups is not None else None
            if masks is not None:
                groups.count(masks, n_valid)
            results = {"model": _score(sess, m, task, margs, batch, xyz, feat, groups, masks)}
            for name, fn in baselines:
                if name == FLOOR:  # the ground truth's second sampling, in the prediction's feature width
                    floor_xyz, floor_feat = fn(dict(batch, _n_cls=feat.shape[-1]))
                    results[name] = _score(sess, m, task, margs, batch, floor_xyz, floor_feat, groups, masks)
                else:
                    results[name] = _score(sess, m, task, margs, batch, *fn(xyz, feat), groups, masks)

            for i in range(n_valid):
                mid, view = str(batch["model_id"][i]), int(batch["input_view"][i])
                rows += [
                    dict(
                        model_id=mid, input_view=view, method=method, **{key: float(v[i]) for key, v in values.items()}
                    )
                    for method, values in results.items()
                ]
                pictures.offer(batch, i, xyz[i], feat[i])
                if saved is not None:
                    saved.append((mid, view, xyz[i], feat[i]))
            progress.update()
    return rows, pictures.taken, saved


class _Pictures:
    """The samples to draw: one per model (its first evaluated view) up to ``limit``, or every sample
    (``every_sample``: the interactive window)."""

    def __init__(self, task, limit, every_sample=False):
        self.task, self.limit, self.every_sample = task, limit, every_sample
        self.taken, self._models = [], set()

    def offer(self, batch, i, xyz, feat):
        mid = str(batch["model_id"][i])
        if self.every_sample or (len(self.taken) < self.limit and mid not in self._models):
            self._models.add(mid)
            self.taken.append(
                dict(
                    model_id=f"{mid}_view{int(batch['input_view'][i])}",
                    image=batch["image"][i],
                    gt=batch["pcl"][i],
                    gt_col=self.task.gt_point_colours(batch[self.task.point_key][i]),
                    pred=xyz,
                    pred_col=self.task.point_colours(feat),
                )
            )


def _report(out_dir, rows, summary, pictures, task, margs, predictions=None, legend=None):
    """Write the CSV and JSON files (and predictions.npz, the pictures, the viewer page) as one set,
    print the table, say where everything is, open the window.

    The set is written into a working folder beside ``out_dir`` and moved onto it when complete
    (:class:`utils.common.atomic_io.WorkDir`): a run killed or out of disk space meanwhile leaves
    the previous run's folder as it was (and its working folder, removed by the next run)."""
    out_dir = os.path.abspath(out_dir)
    with atomic_io.WorkDir(out_dir) as work:
        _write(str(work.path), rows, summary)
        if predictions:
            path = os.path.join(work.path, PREDICTIONS_FILE)
            with atomic_io.naming(path):
                np.savez_compressed(
                    path,
                    model_id=np.array([p[0] for p in predictions], dtype=str),
                    input_view=np.array([p[1] for p in predictions], np.int32),
                    xyz=np.stack([p[2] for p in predictions]).astype(np.float32),
                    features=np.stack([p[3] for p in predictions]).astype(np.float32),
                )
        page = _pictures(pictures, margs, str(work.path), summary, legend)
        work.commit()
    if predictions:
        print(f"predictions: {os.path.join(out_dir, PREDICTIONS_FILE)}")
    _print_table(summary, task.headline)
    if page:
        n = page["n_shown"]
        print(
            f"viewer: {os.path.join(out_dir, viewer.VIEWER_FILE)} ({n} sample{'s' * (n != 1)}, "
            f"{page['bytes'] / 2**20:.1f} MiB; open it in a browser)"
        )
    for kind, flag in (("screenshots", margs.save_screenshots), ("gifs", margs.save_gifs), ("ply", margs.save_ply)):
        if flag:
            print(f"{kind}: {os.path.join(out_dir, kind)}")
    print(
        f"per-sample metrics: {os.path.join(out_dir, 'per_sample.csv')}\n"
        f"per-model means: {os.path.join(out_dir, 'per_model.csv')}\n"
        f"summary: {os.path.join(out_dir, 'summary.json')}"
    )
    if margs.visualize:
        visualize.interactive_viewer(
            dict(
                title=p["model_id"],
                image=p["image"],
                clouds=[("ground truth", gt, p["gt_col"]), ("prediction", pred, p["pred_col"])],
            )
            for p in pictures
            for gt, pred in [_shown(p)]
        )


ID_KEYS = ("model_id", "input_view", "method")
PREDICTIONS_FILE = "predictions.npz"  # --save_predictions


def _summarise(rows, methods, info):
    """Means over all samples per method (a sample = one input view of one model), NaN samples listed."""
    keys = [k for k in rows[0] if k not in ID_KEYS] if rows else []
    model_rows = [r for r in rows if r["method"] == "model"]
    optional = set((info.get("point_groups") or {}).get("metrics", []))  # NaN where a sample's group is empty
    summary = dict(info, n_samples=len(model_rows), n_models=len({r["model_id"] for r in model_rows}), methods={})
    nan_ids = sorted(
        {
            f"{r['model_id']}/{r['input_view']}"
            for r in model_rows
            if any(math.isnan(r[k]) for k in keys if k not in optional)
        }
    )
    summary["nan_samples"] = dict(count=len(nan_ids), samples=nan_ids)
    for method in methods:
        sel = [r for r in rows if r["method"] == method]
        summary["methods"][method] = {k: float(np.nanmean([r[k] for r in sel])) if sel else float("nan") for k in keys}
    return summary


def per_model_rows(rows):
    """Mean of every metric over the input views of each (model, method), in first-seen order."""
    groups = {}
    for r in rows:
        groups.setdefault((r["model_id"], r["method"]), []).append(r)
    out = []
    for (mid, method), sel in groups.items():
        keys = [k for k in sel[0] if k not in ID_KEYS]
        out.append(
            dict(
                model_id=mid,
                method=method,
                n_views=len(sel),
                **{k: float(np.nanmean([r[k] for r in sel])) for k in keys},
            )
        )
    return out


def _write_csv(path, rows):
    with atomic_io.naming(path), open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write(out_dir, rows, summary):
    """The CSV files and summary.json into ``out_dir`` (a working folder, :func:`_report`)."""
    os.makedirs(out_dir, exist_ok=True)
    if rows:
        _write_csv(os.path.join(out_dir, "per_sample.csv"), rows)
        _write_csv(os.path.join(out_dir, "per_model.csv"), per_model_rows(rows))
    path = os.path.join(out_dir, "summary.json")
    with atomic_io.naming(path), open(path, "w") as f:
        json.dump(summary, f, indent=2)


def _print_table(summary, headline):
    methods = list(summary["methods"])
    keys = [k for k in headline if k in summary["methods"]["model"]]
    keys += [k for k in summary["methods"]["model"] if k not in keys]
    width = max(12, *(len(m) for m in methods))
    print(
        f"\n{summary['task']} metrics, {summary['category']} {summary['eval_set']} split, "
        f"{summary['n_samples']} samples ({summary['n_models']} models, input views: {summary['input_views']}), "
        f"snapshot {summary['snapshot']} (iteration {summary['step']})"
    )
    if summary.get("data_dir"):
        print(
            f"data set: {summary['data_dir']}"
            + ("" if summary["data_dir"] == summary.get("trained_on") else f" (trained on {summary['trained_on']})")
        )
    base = summary.get("baseline") or {}
    if base.get("available"):
        print(
            f"baselines ({', '.join(base['methods'])}): from the medoid of {base['n_models']} training models "
            f"of {base['data_dir']} ({base['source']})"
        )
    elif base:
        print(f"baselines: {base['note']}")
    print(f"{'metric':<16}" + "".join(f"{m:>{width + 2}}" for m in methods))
    for k in keys:
        print(f"{k:<16}" + "".join(f"{summary['methods'][m].get(k, float('nan')):>{width + 2}.5f}" for m in methods))
    floor = summary.get("floor") or {}
    if floor:
        print(
            f"{floor['method']}: {floor['label']}"
            + (
                ": what a perfect prediction with other points would score"
                if floor["available"]
                else f": {floor['note']}"
            )
        )
    groups = summary.get("point_groups") or {}
    if groups.get("available"):
        share = groups["share"]
        print(
            f"{', '.join(groups['metrics'])}: forward error over the ground-truth points on a part's hidden "
            f"side ({100 * share['hidden']:.0f} % of them), the rest ({100 * share['visible']:.0f} %) and those "
            f"within {groups['edge_radius']:g} of the other side (edge, {100 * share['edge']:.0f} %)"
        )
    elif groups:
        print(f"side-resolved errors: {groups['note']}")
    nan = summary["nan_samples"]
    print(f"samples with NaN metrics: {nan['count']}" + (f" ({', '.join(nan['samples'])})" if nan["count"] else ""))


def _pictures(pictures, margs, out_dir, summary=None, legend=None):
    """The viewer page, PNG grids, GIFs and PLY files asked for, into ``out_dir`` (a working folder,
    :func:`_report`). Returns the viewer page's info (utils.common.viewer.write_viewer) or None."""
    viewer_page = margs.save_viewer or margs.save_screenshots or margs.save_gifs or margs.save_ply
    if not viewer_page:
        return None
    limit = margs.n_pictures or len(pictures)
    page = _viewer_page(pictures[:limit], out_dir, summary or {}, legend)
    for i, p in enumerate(pictures[:limit]):
        gt, pred = _shown(p)
        name = f"{margs.eval_set}_{i:03d}_{p['model_id'].replace('/', '_')}"
        if margs.save_screenshots:
            visualize.save_screenshot(
                os.path.join(out_dir, "screenshots", name + ".png"),
                p["image"],
                [(gt, p["gt_col"]), (pred, p["pred_col"])],
                titles=["input / ground truth", "prediction"],
            )
        if margs.save_gifs:
            visualize.save_turntable_gif(
                os.path.join(out_dir, "gifs", name + ".gif"), [(gt, p["gt_col"]), (pred, p["pred_col"])]
            )
        if margs.save_ply:
            visualize.save_ply(os.path.join(out_dir, "ply", name + "_pred.ply"), p["pred"], p["pred_col"])
            visualize.save_ply(os.path.join(out_dir, "ply", name + "_gt.ply"), p["gt"], p["gt_col"])
    return page


def _viewer_page(pictures, out_dir, summary, legend=None):
    """``<out>/viewer.html`` (utils.common.viewer): each picture's input, ground truth and prediction.
    Returns write_viewer's info (samples shown, bytes)."""
    path = os.path.join(out_dir, viewer.VIEWER_FILE)
    title = f"{summary.get('task', '')} metrics: {_short(summary.get('exp', ''))}".strip()
    lines = [
        f"snapshot {summary.get('snapshot')} (iteration {summary.get('step')}), {summary.get('category')} "
        f"{summary.get('eval_set')} split of {_short(summary.get('data_dir', ''))}: one sample per model (its first "
        f"evaluated input view), clouds scaled to the unit cube, y up"
    ]
    samples = [
        dict(
            title=p["model_id"],
            image=p["image"],
            clouds=[
                ("ground truth", upright(p["gt"]), p["gt_col"]),
                ("prediction", upright(p["pred"], visualize.PICTURE_BOX_CLIP), p["pred_col"]),
            ],
        )
        for p in pictures
    ]
    return viewer.write_viewer(path, samples, title, lines, legend=legend)


def _short(path):
    """``path`` relative to the working folder when it lies inside it, else as given."""
    rel = os.path.relpath(path) if path else path
    return rel if rel and not rel.startswith("..") else path


def _shown(picture):
    """The GT and predicted clouds of a picture as drawn: each scaled to the unit cube (the
    prediction's box measured on coordinates clipped to visualize.PICTURE_BOX_CLIP)."""
    return (
        metrics.scale_to_unit_cube_np(picture["gt"]),
        metrics.scale_to_unit_cube_np(picture["pred"], visualize.PICTURE_BOX_CLIP),
    )


def metrics_parser(task):
    """argparse parser for ``<task>/metrics_<task>.py``; the architecture and data come from the
    experiment's args.json (utils.train.config), so metrics cannot disagree with training."""
    task = as_task(task)
    p = argparse.ArgumentParser(
        prog=f"metrics_{task.name}.py",
        description=f"Evaluate a trained DIFFER ({task.name}) experiment: Chamfer, EMD and "
        f"{task.metric_phrase} against a baseline that ignores the image.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--exp", required=True, help="experiment folder written by training (holds args.json)")
    p.add_argument("--snapshot", default="best", help="'best', 'latest' or an iteration number")
    p.add_argument(
        "--eval_set",
        choices=SPLITS,
        default="test",
        help="split to evaluate (the authors' ShapeNet release has only train and val lists)",
    )
    p.add_argument(
        "--input_views",
        choices=("all", "random"),
        default="all",
        help="'all': every input view of every model is a sample (the paper's protocol); "
        "'random': one seeded random input view per model",
    )
    p.add_argument(
        "--clip_box",
        type=cli.non_negative_float,
        default=0.0,
        help="measure the prediction's bounding box (unit-cube scaling) on coordinates clipped to "
        "+-clip_box, so far stray points do not shrink the cloud; 0 = off (the original's metrics)",
    )
    p.add_argument("--data_dir", default=None, help="override the data root stored in args.json")
    p.add_argument("--gpu", default=None, help="GPU index to use (sets CUDA_VISIBLE_DEVICES)")
    p.add_argument("--batch_size", type=cli.positive_int, default=16)
    p.add_argument(
        "--max_samples", type=cli.non_negative_int, default=0, help="evaluate at most this many samples (0 = all)"
    )
    p.add_argument(
        "--baseline_models",
        type=cli.non_negative_int,
        default=200,
        help="training clouds used to find the baseline's medoid, taken from the data the experiment was "
        "trained on (args.json; else from --data_dir's training split); 0 = no baselines",
    )
    p.add_argument("--out", default=None, help="output folder (default: <exp>/metrics_<eval_set>_<snapshot>)")
    p.add_argument(
        "--edge_radius",
        type=cli.non_negative_float,
        default=0.05,  # utils.metrics.EDGE_RADIUS
        help="data with a side record (the demo data): ground-truth points closer than this to a point "
        "of the other side (unit-cube units) form the 'edge' group of the side-resolved errors",
    )
    task.add_metrics_flags(p)
    g = p.add_argument_group("pictures")
    g.add_argument(
        "--visualize",
        action="store_true",
        help="interactive window per sample (needs a display); n / right arrow: next, q: quit",
    )
    g.add_argument(
        "--save_screenshots", action="store_true", help="PNG grids (input, GT, prediction from several angles)"
    )
    g.add_argument("--save_gifs", action="store_true", help="turntable GIFs of GT and prediction")
    g.add_argument("--save_ply", action="store_true", help="predicted clouds as coloured PLY files")
    g.add_argument(
        "--save_viewer",
        action="store_true",
        help=f"{viewer.VIEWER_FILE}: one offline HTML page to turn the clouds in a browser (input, ground truth "
        f"and prediction of the pictured samples; {viewer.LIMITS}); written with any of the "
        "other picture flags too",
    )
    g.add_argument(
        "--save_predictions",
        action="store_true",
        help="every sample's predicted cloud and features, unrounded, in predictions.npz (model_id, "
        "input_view, xyz (S, N, 3) in the renderer frame, features (S, N, C)), for analyses",
    )
    g.add_argument(
        "--n_pictures",
        type=cli.non_negative_int,
        default=8,
        help="samples to draw with --save_screenshots/--save_gifs/--save_viewer, one per model (0 = all)",
    )
    g.add_argument(
        "--tqdm",
        action="store_true",
        help="progress bar on a terminal (elsewhere: a plain line every 10%% of the batches)",
    )
    p.add_argument("--verbose", action="store_true", help=config.VERBOSE_HELP)
    p.set_defaults(task=task.name)
    return p


# Failures whose one-line message says everything (utils.common.cli): no traceback.
EXPECTED_ERRORS = (DataError, ExperimentStateError, WrongTask)


def main(task, argv=None):
    """Entry point of metrics_<task>.py."""
    margs = metrics_parser(task).parse_args(argv)
    return evaluate(task, margs)


def cli_main(task):
    """``metrics_<task>.py`` on the command line: :func:`main` behind utils.common.cli's one error path."""
    cli.exit_with(f"metrics_{task.name}", lambda argv: main(task, argv) and 0, expected=EXPECTED_ERRORS)
