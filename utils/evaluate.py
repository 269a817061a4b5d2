"""Metrics runner shared by rgb/metrics_rgb.py and partseg/metrics_partseg.py.

Restores a snapshot of an experiment (architecture from its args.json), runs
the network on an evaluation split and computes, per sample, Chamfer and EMD
(utils.metrics, tf_ops) plus the task's feature metrics, for the model and for
baselines that ignore the image (the task defines them; all start from the
training set's medoid cloud). A sample is one input view of one model: by
default every input view of every model of the split (the paper's protocol).
Writes ``per_sample.csv`` (one row per sample and method), ``per_model.csv``
(means over each model's views) and ``summary.json``, prints a
model-vs-baseline table, and makes the pictures asked for (screenshots, GIFs,
PLY, an interactive window).
"""
import csv
import json
import math
import os
import warnings

import numpy as np

from utils import config, metrics, visualize
from utils.data import BatchPipeline, DataError, list_models
from utils.experiment import Experiment
from utils.model import build_graph
from utils.tfv1 import tf


def _collect_training_clouds(targs, task, n_models, num_workers):
    """Up to n_models (cloud, point features) pairs from the training split, in a fixed order."""
    data = BatchPipeline(targs.data_dir, targs.category, "train", task=task.name, batch_size=1, n_views=1,
                         img_h=targs.IMG_H, img_w=targs.IMG_W, view_mode="fixed", shuffle=False,
                         repeat=False, seed=targs.seed, num_workers=num_workers, n_cls=getattr(targs, "n_cls", None))
    try:
        n = min(n_models, len(data))
        batches = [data.get_batch(k) for k in range(n)]
    finally:
        data.close()
    return (np.concatenate([b["pcl"] for b in batches]), np.concatenate([b[task.point_key] for b in batches]))


def _eval_pipeline(targs, task, margs):
    """The evaluation samples: every (model, input view) pair of the split (``--input_views all``,
    the paper's protocol) or one seeded random input view per model (``random``)."""
    try:
        list_models(targs.data_dir, targs.category, margs.eval_set, task.name)
    except DataError as err:
        if "no split file" in str(err) and margs.eval_set != "val":
            raise DataError(f"{err}. The authors' ShapeNet release has only train and val lists: "
                            f"evaluate with --eval_set val") from None
        raise
    return BatchPipeline(targs.data_dir, targs.category, margs.eval_set, task=task.name,
                         batch_size=margs.batch_size, n_views=1, img_h=targs.IMG_H, img_w=targs.IMG_W,
                         view_mode="fixed", shuffle=False, repeat=False, seed=targs.seed,
                         num_workers=targs.num_workers, all_input_views=margs.input_views == "all",
                         n_cls=getattr(targs, "n_cls", None))


def evaluate(task, margs):
    """Run the evaluation described by the parsed metrics flags; returns the summary dict."""
    if margs.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(margs.gpu)
    targs = config.load_train_args(margs.exp)
    if margs.data_dir:
        targs.data_dir = margs.data_dir
    exp = Experiment(margs.exp, create=False)
    prefix, step = exp.checkpoint(margs.snapshot)
    out_dir = margs.out or exp.path(f"metrics_{margs.eval_set}_{margs.snapshot}")
    os.makedirs(out_dir, exist_ok=True)

    data = _eval_pipeline(targs, task, margs)
    train_clouds, train_feats = _collect_training_clouds(targs, task, margs.baseline_models, targs.num_workers)
    medoid, _ = metrics.medoid_index(train_clouds)
    baselines = task.baselines(train_clouds, train_feats, medoid, targs)
    methods = ["model"] + [name for name, _ in baselines]
    try:
        rows, pictures = _run(task, margs, targs, prefix, data, baselines)
    finally:
        data.close()
    summary = _summarise(rows, methods, dict(exp=os.path.abspath(margs.exp), snapshot=margs.snapshot, step=step,
                                             eval_set=margs.eval_set, category=targs.category,
                                             input_views=margs.input_views, clip_box=margs.clip_box,
                                             medoid_model=int(medoid), task=task.name))
    _write(out_dir, rows, summary)
    _print_table(summary, task.headline)
    _pictures(pictures, margs, out_dir)
    print(f"per-sample metrics: {os.path.join(out_dir, 'per_sample.csv')}\n"
          f"per-model means: {os.path.join(out_dir, 'per_model.csv')}\n"
          f"summary: {os.path.join(out_dir, 'summary.json')}")
    return summary


def _run(task, margs, targs, prefix, data, baselines):
    """Restore the snapshot and score every sample of ``data``: (rows, pictures)."""
    from tqdm import tqdm
    B = margs.batch_size
    n_total = data.n_samples if margs.max_samples <= 0 else min(data.n_samples, margs.max_samples)
    n_gt = data.get_batch(0)["pcl"].shape[1]
    with_emd = n_gt == targs.N_PTS
    if not with_emd:
        warnings.warn(f"EMD needs equal point counts (prediction {targs.N_PTS}, ground truth {n_gt}); skipped")

    graph = tf.Graph()
    with graph.as_default():
        g = build_graph(targs, task, B, training=False)
        gt_ph = tf.placeholder(tf.float32, [B, n_gt, 3])
        pred_ph = tf.placeholder(tf.float32, [B, targs.N_PTS, 3])
        cloud_m = metrics.cloud_metrics(gt_ph, pred_ph, emd=with_emd, box_clip=margs.clip_box or None)
        saver = tf.train.Saver(tf.global_variables("recon_net"))
    rows, pictures, pictured = [], [], set()
    n_pictures = margs.n_pictures or n_total
    with tf.Session(graph=graph) as sess:
        saver.restore(sess, prefix)

        def score(batch, xyz, feat):
            m = sess.run(cloud_m, {gt_ph: batch["pcl"], pred_ph: xyz})
            out = {k: m[k] for k in ("chamfer_fwd", "chamfer_bwd", "chamfer", "emd") if k in m}
            out.update(task.feature_metrics(batch[task.point_key], feat, m["idx_fwd"], m["idx_bwd"], margs))
            return out

        for k in tqdm(range(math.ceil(n_total / B)), disable=not margs.tqdm, desc=f"metrics {margs.eval_set}",
                      unit="batch"):
            batch = data.get_batch(k)  # always B samples; the pipeline pads the last pass batch
            n_valid = min(int(np.sum(batch["valid"])), n_total - k * B)
            xyz, feat = sess.run([g.xyz, g.feat], g.feed(batch))
            results = {"model": score(batch, xyz, feat)}
            for name, fn in baselines:
                results[name] = score(batch, *fn(xyz, feat))
            for i in range(n_valid):
                mid, view = str(batch["model_id"][i]), int(batch["input_view"][i])
                for method, values in results.items():
                    rows.append(dict(model_id=mid, input_view=view, method=method,
                                     **{key: float(v[i]) for key, v in values.items()}))
                # Pictures: one sample per model (its first evaluated view), or every sample to view.
                if (len(pictures) < n_pictures and mid not in pictured) or margs.visualize:
                    pictured.add(mid)
                    pictures.append(dict(model_id=f"{mid}_view{view}", image=batch["image"][i], gt=batch["pcl"][i],
                                         gt_col=task.gt_point_colours(batch[task.point_key][i]),
                                         pred=xyz[i], pred_col=task.point_colours(feat[i])))
    return rows, pictures


ID_KEYS = ("model_id", "input_view", "method")


def _summarise(rows, methods, info):
    """Means over all samples per method (a sample = one input view of one model), NaN samples listed."""
    keys = [k for k in rows[0] if k not in ID_KEYS] if rows else []
    model_rows = [r for r in rows if r["method"] == "model"]
    summary = dict(info, n_samples=len(model_rows), n_models=len({r["model_id"] for r in model_rows}), methods={})
    nan_ids = sorted({f"{r['model_id']}/{r['input_view']}" for r in model_rows
                      if any(math.isnan(r[k]) for k in keys)})
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
        out.append(dict(model_id=mid, method=method, n_views=len(sel),
                        **{k: float(np.nanmean([r[k] for r in sel])) for k in keys}))
    return out


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write(out_dir, rows, summary):
    if rows:
        _write_csv(os.path.join(out_dir, "per_sample.csv"), rows)
        _write_csv(os.path.join(out_dir, "per_model.csv"), per_model_rows(rows))
    tmp = os.path.join(out_dir, "summary.json.tmp")
    with open(tmp, "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(tmp, os.path.join(out_dir, "summary.json"))


def _print_table(summary, headline):
    methods = list(summary["methods"])
    keys = [k for k in headline if k in summary["methods"]["model"]]
    keys += [k for k in summary["methods"]["model"] if k not in keys]
    width = max(12, *(len(m) for m in methods))
    print(f"\n{summary['task']} metrics, {summary['category']} {summary['eval_set']} split, "
          f"{summary['n_samples']} samples ({summary['n_models']} models, input views: {summary['input_views']}), "
          f"snapshot {summary['snapshot']} (iteration {summary['step']})")
    print(f"{'metric':<16}" + "".join(f"{m:>{width + 2}}" for m in methods))
    for k in keys:
        print(f"{k:<16}" + "".join(f"{summary['methods'][m][k]:>{width + 2}.5f}" for m in methods))
    nan = summary["nan_samples"]
    print(f"samples with NaN metrics: {nan['count']}" + (f" ({', '.join(nan['samples'])})" if nan["count"] else ""))


def _pictures(pictures, margs, out_dir):
    if not (margs.save_screenshots or margs.save_gifs or margs.save_ply or margs.visualize):
        return
    limit = margs.n_pictures or len(pictures)
    for i, p in enumerate(pictures[:limit]):
        gt = metrics.scale_to_unit_cube_np(p["gt"])
        pred = metrics.scale_to_unit_cube_np(p["pred"], visualize.PICTURE_BOX_CLIP)
        name = f"{margs.eval_set}_{i:03d}_{p['model_id'].replace('/', '_')}"
        if margs.save_screenshots:
            visualize.save_screenshot(os.path.join(out_dir, "screenshots", name + ".png"), p["image"],
                                      [(gt, p["gt_col"]), (pred, p["pred_col"])],
                                      titles=["input / ground truth", "prediction"])
        if margs.save_gifs:
            visualize.save_turntable_gif(os.path.join(out_dir, "gifs", name + ".gif"),
                                         [(gt, p["gt_col"]), (pred, p["pred_col"])])
        if margs.save_ply:
            visualize.save_ply(os.path.join(out_dir, "ply", name + "_pred.ply"), p["pred"], p["pred_col"])
            visualize.save_ply(os.path.join(out_dir, "ply", name + "_gt.ply"), p["gt"], p["gt_col"])
    for kind, flag in (("screenshots", margs.save_screenshots), ("gifs", margs.save_gifs), ("ply", margs.save_ply)):
        if flag:
            print(f"{kind}: {os.path.join(out_dir, kind)}")
    if margs.visualize:
        visualize.interactive_viewer(
            dict(title=p["model_id"], image=p["image"],
                 clouds=[("ground truth", metrics.scale_to_unit_cube_np(p["gt"]), p["gt_col"]),
                         ("prediction", metrics.scale_to_unit_cube_np(p["pred"], visualize.PICTURE_BOX_CLIP),
                          p["pred_col"])])
            for p in pictures)


def main(task, argv=None):
    """Entry point of metrics_<task>.py."""
    margs = config.metrics_parser(task.name).parse_args(argv)
    return evaluate(task, margs)
