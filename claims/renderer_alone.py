"""The renderer alone: free clouds fitted to every view of a few models, depth-aware against
depth-unaware colour projection, with no network.

Usage::

    python claims/renderer_alone.py                                   # the demo data (flat colours)
    python claims/renderer_alone.py --data_dir data/two_sided --out experiments/renderer_alone_two-sided

For each of the first ``--models`` models of ``--split`` (default: 10 test models) and each variant,
the tutorial's fit (:func:`utils.fit.fit`) optimises a free cloud of ``--n_pts`` points and a
free colour per point against all ``--n_views`` views of the model (soft silhouette BCE, the
affinity terms and the colour L2: the example's default losses) for ``--steps`` Adam steps, from the
same initial ball (``--seed``) in both variants:

* ``depth-aware``: the colour projection with ``--BETA`` (default 100, the training default);
* ``depth-unaware``: ``BETA = 0``: a pixel's colour is the unweighted mean over its well.

Measured per fit (:func:`utils.fit.cloud_errors`: the metrics of ``utils/metrics.py``): *Chamfer* (both
clouds scaled to the unit cube, mean nearest-neighbour distance both ways), *colour* (squared RGB
difference to the nearest point's colour, averaged over channels, GT -> fit plus fit -> GT, the
rgb task's headline colour error) and *image* (the colour L2 between the rendered and the true
views at the last step: what the renderer could not explain). The table gives per variant the
mean over models with its range, and the paired difference ``depth-unaware`` − ``depth-aware``
model by model (the aggregation of :mod:`utils.eval.seeds`; ``*``: every model agrees in sign,
or with 4 or more models |mean| > standard deviation).

This separates what the projection can express from what a network learns: with free colours a
depth-unaware pixel mixes the colours of every point in its well, front and back, so on surfaces
whose hidden side has another colour no choice of colours reproduces all views; the depth-aware
projection can. Outputs in ``--out``: one JSON per (variant, model) with its fitted cloud
(``<variant>/<model>.json`` and ``.npz``; re-running reuses them), ``table.md`` and ``table.json``.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = ("depth-aware", "depth-unaware")
REFERENCE = "depth-aware"
KEYS = ("chamfer", "colour", "image")


def fit_one(views, beta, args):
    """One fit (:func:`utils.fit.fit`); returns its metrics (dict), the fitted cloud (xyz (N, 3),
    colours (N, 3)) and its seconds."""
    from utils import fit

    result = fit.fit(
        views,
        steps=args.steps,
        n_pts=args.n_pts,
        beta=beta,
        lr=args.lr,
        seed=args.seed,
        log_every=max(args.steps, 1),
        log=lambda line: None,
    )
    metrics = fit.cloud_errors(views["xyz"], views["colours"], result["xyz"], result["colours"])
    metrics.update(image=result["history"][-1].get("colour"), initial_chamfer=result["history"][0]["chamfer"])
    return metrics, result["xyz"], result["colours"], result["seconds"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--data_dir", default=os.path.join(ROOT, "data"), help="a data root in the DIFFER layout")
    p.add_argument("--category", default="chair")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--models", type=int, default=10, help="how many models: the split's first ones")
    p.add_argument("--n_views", type=int, default=10, help="views per model (its first ones)")
    p.add_argument("--steps", type=int, default=1000, help="Adam steps per fit")
    p.add_argument("--n_pts", type=int, default=1024, help="points of the fitted cloud")
    p.add_argument("--lr", type=float, default=0.005, help="Adam learning rate")
    p.add_argument("--BETA", type=float, default=100.0, help="softmax sharpness of the depth-aware variant")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial ball (the same for both variants)")
    p.add_argument("--out", default=os.path.join(ROOT, "experiments", "renderer_alone"), help="output folder")
    args = p.parse_args(argv)
    for flag in ("models", "n_views", "steps", "n_pts"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if not (args.lr > 0 and args.BETA > 0):
        p.error(f"--lr and --BETA must be > 0, got {args.lr:g} and {args.BETA:g}")
    return args


def main(argv=None):
    args = parse_args(argv)
    from utils.data import DataError, list_models, missing_dataset

    problem = missing_dataset("renderer_alone", args.data_dir, args.category)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    from utils import fit
    from utils.common.atomic_io import write_json, write_text
    from utils.eval.seeds import aggregate, summary_lines

    models = list_models(args.data_dir, args.category, args.split)[: args.models]
    settings = dict(
        data_dir=os.path.abspath(args.data_dir),
        category=args.category,
        split=args.split,
        n_views=args.n_views,
        steps=args.steps,
        n_pts=args.n_pts,
        lr=args.lr,
        seed=args.seed,
    )
    betas = {"depth-aware": args.BETA, "depth-unaware": 0.0}
    runs, t0 = [], time.perf_counter()
    from utils import render  # its backend is chosen (the compiled library loaded) here, not inside a tf.function

    print(
        f"renderer_alone: {len(models)} {args.category} models ({args.split}), {args.n_views} views, "
        f"{args.steps} steps, {args.n_pts} points; BETA {args.BETA:g} vs 0; projection: {render.auto_impl()}; "
        f"out {args.out}",
        flush=True,
    )
    for k, mid in enumerate(models):
        try:
            views = fit.load_views(args.data_dir, args.category, mid, args.n_views)
        except (DataError, ValueError) as err:
            print(f"renderer_alone: {err}", file=sys.stderr)
            return 2
        for name in VARIANTS:
            stem = os.path.join(args.out, name, mid)
            record = None
            if os.path.isfile(stem + ".json") and os.path.isfile(stem + ".npz"):
                with open(stem + ".json") as f:
                    record = json.load(f)
                if record.get("settings") != dict(settings, BETA=betas[name]):
                    record = None  # made with other settings: fitted again
            if record is None:
                metrics, xyz, col, seconds = fit_one(views, betas[name], args)
                os.makedirs(os.path.dirname(stem), exist_ok=True)
                tmp = f"{stem}.{os.getpid()}.tmp.npz"
                np.savez(tmp, xyz=xyz, colours=col)
                os.replace(tmp, stem + ".npz")
                record = dict(
                    variant=name,
                    model=mid,
                    settings=dict(settings, BETA=betas[name]),
                    metrics=metrics,
                    seconds=round(seconds, 1),
                )
                write_json(stem + ".json", record)  # last: its presence means the fit is complete
                how = f"{record['seconds']:.0f} s"
            else:
                how = "reused"
            m = record["metrics"]
            print(
                f"[{k + 1}/{len(models)}] {mid} {name:13s} chamfer {m['chamfer']:.4f}  colour {m['colour']:.4f}  "
                f"image {m['image']:.4f}  ({how})",
                flush=True,
            )
            runs.append(dict(variant=name, seed=k, model=mid, metrics={key: m[key] for key in KEYS}))
    summary = aggregate(runs, KEYS, reference=REFERENCE)
    lines = [
        f"Renderer alone ({args.category}, {args.split}, {os.path.abspath(args.data_dir)}): free clouds fitted "
        f"to {args.n_views} views of {len(models)} models, {args.steps} steps, {args.n_pts} points, "
        f"BETA {args.BETA:g} vs 0. Mean over models [min, max] or ± s; Δ paired by model; "
        "lower is better.",
        "",
    ]
    lines += [line.replace("| seeds |", "| models |") for line in summary_lines(summary, KEYS, REFERENCE)]
    lines += [
        "",
        "| model | " + " | ".join(f"{v} {k}" for v in VARIANTS for k in KEYS) + " |",
        "| --- | " + " | ".join("---" for _ in range(len(VARIANTS) * len(KEYS))) + " |",
    ]
    by = {(r["variant"], r["model"]): r["metrics"] for r in runs}
    for mid in models:
        lines.append(f"| {mid} | " + " | ".join(f"{by[(v, mid)][k]:.4f}" for v in VARIANTS for k in KEYS) + " |")
    text = "\n".join(lines) + "\n"
    write_text(os.path.join(args.out, "table.md"), text)
    write_json(
        os.path.join(args.out, "table.json"),
        dict(settings=settings, BETA=args.BETA, models=models, runs=runs, summary=summary),
    )
    print(text + f"renderer_alone: {time.perf_counter() - t0:.0f} s; table in {os.path.join(args.out, 'table.md')}")
    return 0


if __name__ == "__main__":
    import utils.common.tfv1  # noqa: F401  (TensorFlow loads without its start-up lines; eager mode stays on)

    sys.exit(main())
