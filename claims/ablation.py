"""Reproduce the paper's two claims: train the ablations on the demo data and compare them.

Usage::

    bash run_ablation.sh [rgb|partseg]                      # every variant, the demo schedule
    python claims/ablation.py --task rgb --variants 2d,depth-unaware --iters 1000

One experiment per variant and seed (``--seeds K``, default 3: seeds ``--seed``, ``--seed`` + 1,
...; a seed changes the weights' initialisation and the order of the training data, never the
data), all with the demo's schedule (``run_demo.sh``: 8000 iterations, validation and snapshots
every 500), each trained in its own process by the task's training entry point, then evaluated
in its own process by the metrics entry point with the repository's protocol (best validation
snapshot, test split, every input view of every model, clouds scaled to the unit cube). Variants (:data:`VARIANTS`):

* ``2d``: the recommended configuration (the demo's): 2D supervision only;
* ``3d``: 3D supervision only: ``--USE_3D_LOSS`` (Chamfer on the points plus the feature
  error through nearest neighbours) with every 2D loss weight 0;
* ``2d+3d``: both;
* ``depth-unaware``: ``2d`` with ``--BETA 0``: the feature of a pixel is the unweighted mean of
  the features of the points in its well, whatever their depth;
* ``no-affinity``: ``2d`` without the affinity terms (forward, backward, point-wise);
* ``original``: ``--preset original`` (the original code's effective settings) on the same data
  and schedule.

Outputs in ``--out`` (default ``experiments/ablation_<task>``): ``table.md``, ``table.json``
and ``ablation_<task>.png`` (bar charts of the headline metrics per variant, the mean over the
seeds with the spread as error bars, the image-blind medoid baseline as a line, and the same
test sample under every variant, first seed); one experiment folder per variant and seed
(``<out>/<variant>/seed<seed>/``: the training's files, ``metrics_test/``, ``train.log`` /
``metrics.log`` (the subprocesses' output), ``ablation.json`` (status, times)).

The table (:func:`aggregate`) gives per variant the mean and the spread over the seeds of each
headline metric, and its difference from ``2d`` over the paired seeds (the same seed in both):
the spread is the sample standard deviation for 4 or more seeds, the range (min, max) for
fewer. A difference counts as a finding (marked ``*``) only when it exceeds its spread:
``|mean| > standard deviation``, or with fewer than 4 pairs, every paired difference of one sign.

Re-running the same command resumes: a (variant, seed) trained to ``--iters`` whose metrics are
written is not run again; a half-trained one continues from its last snapshot (the training
entry point resumes); a trained, unevaluated one is only evaluated. A variant that fails is
reported in the table (status and the tail of its log) and the others still run.
"""

import argparse
import codecs
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

from utils.common.atomic_io import write_json, write_text  # these two use the standard library only: --help stays quick
from utils.eval.seeds import STD_MIN_RUNS, aggregate, summary_lines
from utils.task import available_tasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The demo's schedule (run_demo.sh); --iters replaces N_ITERS.
SCHEDULE = dict(print_n=250, save_n=500, save_model_n=500)
DEFAULT_ITERS = 8000
METRIC_LABELS = dict(
    chamfer="Chamfer (lower is better)",
    emd="EMD (lower is better)",
    colour="colour error (lower is better)",
    miou="part mIoU (higher is better)",
)
BASELINE = "medoid_baseline"
EVAL_DIR = "metrics_test"
EVAL_FINAL_DIR = "metrics_test_final"  # the same evaluation of the last snapshot ('final' columns)
FLOOR = "floor_resampled_gt"  # utils.eval.evaluate.FLOOR: ground truth vs a second sampling of its surface
STATE_FILE = "ablation.json"
ERROR_TAIL_LINES = 12
DEFAULT_SEEDS = 3
REFERENCE = "2d"  # the variant every other one is compared with, seed by seed


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    preset: str = "recommended"
    flags: tuple = ()  # training flags on top of the preset and the schedule
    task_weight_zero: bool = False  # also set the task's feature weight (Task.weight_flag) to 0

    def train_flags(self, task):
        """The variant's training flags for ``task`` (a name: its Task is imported when needed)."""
        flags = list(self.flags)
        if self.task_weight_zero:
            from utils.task import task_from_ref

            flags += [f"--{task_from_ref(task).weight_flag}", "0"]
        return flags


_NO_AFFINITY = ("--wt_aff_fwd", "0", "--wt_aff_bwd", "0", "--wt_aff_pts", "0")
VARIANTS = {
    v.name: v
    for v in (
        Variant("2d", "2D supervision only: masks (BCE + affinity) and depth-aware features (recommended)"),
        Variant(
            "3d",
            "3D supervision only: Chamfer + nearest-neighbour feature loss, every 2D weight 0",
            flags=("--USE_3D_LOSS", "--wt_bce", "0") + _NO_AFFINITY,
            task_weight_zero=True,
        ),
        Variant("2d+3d", "2D and 3D supervision together", flags=("--USE_3D_LOSS",)),
        Variant(
            "depth-unaware",
            "2d with --BETA 0: a pixel's feature is the unweighted mean over its well",
            flags=("--BETA", "0"),
        ),
        Variant("no-affinity", "2d without the affinity terms (forward, backward, point-wise)", flags=_NO_AFFINITY),
        Variant(
            "original",
            "the original code's effective settings (--preset original), same data and schedule",
            preset="original",
        ),
    )
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="ablation.py",
        description="Train one experiment per ablation variant on the demo data (each in its own process, "
        "the demo schedule, --seeds seeds each), evaluate each on the test split, and write table.md, "
        "table.json (mean and spread over the seeds, paired differences from 2d) and a figure. "
        "Re-running resumes. Variants: " + "; ".join(f"{v.name}: {v.description}" for v in VARIANTS.values()),
    )
    p.add_argument(
        "--task",
        choices=available_tasks(),
        required=True,
        help="the task to ablate (a task folder: colours or part labels)",
    )
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated subset of: " + ", ".join(VARIANTS) + " (default: all, in this order)",
    )
    p.add_argument(
        "--iters",
        type=int,
        default=DEFAULT_ITERS,
        help=f"training iterations per variant (default: {DEFAULT_ITERS}, the demo's)",
    )
    p.add_argument("--out", default=None, help="output folder (default: <repo>/experiments/ablation_<task>)")
    p.add_argument("--data_dir", default=None, help="data root (default: <repo>/data, the demo data)")
    p.add_argument("--category", default="chair", help="category (default: chair)")
    p.add_argument(
        "--seed", type=int, default=1024, help="first seed; the runs use --seed, --seed + 1, ... (default: 1024)"
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=DEFAULT_SEEDS,
        help=f"seeds per variant, K (default: {DEFAULT_SEEDS}); a seed changes the initialisation "
        "and the data order, not the data. The table gives the mean and the spread over them "
        f"(standard deviation for K >= {STD_MIN_RUNS}, min-max below)",
    )
    p.add_argument(
        "--n_pictures", type=int, default=4, help="test samples drawn per variant: screenshots, PLY (default: 4)"
    )
    p.add_argument(
        "--copy_figure",
        default=None,
        metavar="PATH",
        help="also copy the figure there, e.g. docs/ablation_rgb.png for docs/results.md",
    )
    args = p.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        p.error(f"--variants: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(VARIANTS)}")
    args.variants = list(dict.fromkeys(names))
    if args.iters <= 0:
        p.error(f"--iters must be a positive integer, got {args.iters}")
    if args.seeds <= 0:
        p.error(f"--seeds must be a positive integer, got {args.seeds}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    from utils.train import config

    args.out = os.path.abspath(args.out or os.path.join(ROOT, "experiments", f"ablation_{args.task}"))
    args.data_dir = os.path.abspath(args.data_dir or config.default_data_dir())
    return args


# ----------------------------------------------------------------------------- commands
def run_seeds(args):
    """The seeds of every variant: ``--seed``, ``--seed`` + 1, ... (``--seeds`` of them)."""
    return [args.seed + k for k in range(args.seeds)]


def experiment_dir(args, variant, seed=None):
    """The experiment folder of one (variant, seed): ``<out>/<variant>/seed<seed>``."""
    return os.path.join(args.out, variant.name, f"seed{args.seed if seed is None else seed}")


def train_command(args, variant, seed=None):
    """argv of the training subprocess (the demo's schedule, the variant's flags, ``seed``:
    default the first seed)."""
    seed = args.seed if seed is None else seed
    cmd = [
        sys.executable,
        "-m",
        f"{args.task}.train_{args.task}",
        "--exp",
        experiment_dir(args, variant, seed),
        "--data_dir",
        args.data_dir,
        "--category",
        args.category,
        "--preset",
        variant.preset,
        "--seed",
        str(seed),
        "--N_ITERS",
        str(args.iters),
    ]
    cmd += [x for k, v in SCHEDULE.items() for x in (f"--{k}", str(v))]
    cmd += variant.train_flags(args.task)
    return cmd


def metrics_command(args, variant, snapshot="best", seed=None):
    """argv of the metrics subprocess (run_demo.sh's protocol; for the best snapshot also PLY files for
    the figure); ``snapshot`` 'latest' evaluates the last snapshot into EVAL_FINAL_DIR."""
    exp = experiment_dir(args, variant, seed)
    cmd = [
        sys.executable,
        "-m",
        f"{args.task}.metrics_{args.task}",
        "--exp",
        exp,
        "--snapshot",
        snapshot,
        "--eval_set",
        "test",
        "--input_views",
        "all",
        "--data_dir",
        args.data_dir,
        "--out",
        os.path.join(exp, EVAL_DIR if snapshot == "best" else EVAL_FINAL_DIR),
        "--tqdm",
    ]
    if snapshot == "best":
        cmd += ["--save_screenshots", "--save_ply", "--n_pictures", str(args.n_pictures)]
    return cmd


def _run_logged(cmd, log_path):
    """Run ``cmd`` (cwd: the repository), its output passed through to ours and appended to
    ``log_path``. Returns (exit status, the last lines of the output)."""
    from utils.common.progress import PROGRESS_ENV, on_terminal

    # The child writes into a pipe: it draws progress bars when our own output is a terminal.
    env = dict(os.environ, PYTHONUNBUFFERED="1", **{PROGRESS_ENV: "1" if on_terminal(sys.stdout) else "0"})
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = b""
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            while True:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                log.write(chunk)
                tail = (tail + chunk)[-16384:]
                sys.stdout.write(decoder.decode(chunk))
                sys.stdout.flush()
        except BaseException:
            proc.wait()  # Ctrl-C reaches the child too: let it write its snapshot
            raise
        finally:
            proc.stdout.close()
        rc = proc.wait()
    return rc, _last_lines(tail.decode("utf-8", "replace"), ERROR_TAIL_LINES)


def _last_lines(text, n):
    """The last ``n`` non-empty lines of a log, progress-bar redraws (\\r) collapsed."""
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    return "\n".join([line for line in lines if line.strip()][-n:])


# ----------------------------------------------------------------------------- state
def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _progress(exp_dir):
    """(latest snapshot step, best snapshot step), None where absent."""
    from utils.experiment import BEST, SNAPSHOTS, Experiment

    if not os.path.isdir(exp_dir):
        return None, None
    exp = Experiment(exp_dir, create=False)
    latest, best = exp.pointer(SNAPSHOTS), exp.pointer(BEST)
    return (latest["step"] if latest else None), (best["step"] if best else None)


def _evaluated(exp_dir, best_step, folder=EVAL_DIR):
    """The metrics summary of the best snapshot (or, with ``folder=EVAL_FINAL_DIR`` and the latest
    step, of the last one), or None when it is missing or stale (older summaries, without the
    task's 'headline' metrics or the floor's record, count as stale)."""
    summary = _read_json(os.path.join(exp_dir, folder, "summary.json"))
    if (
        summary
        and best_step is not None
        and summary.get("step") == best_step
        and summary.get("headline")
        and "floor" in summary
    ):
        return summary
    return None


def run_variant(args, variant, index, total, seed=None):
    """Train (or resume) and evaluate one (variant, seed) unless already done; returns its row (a dict)."""
    seed = args.seed if seed is None else seed
    exp_dir = experiment_dir(args, variant, seed)
    state_path = os.path.join(exp_dir, STATE_FILE)
    os.makedirs(exp_dir, exist_ok=True)
    state = _read_json(state_path) or {}
    row = dict(
        variant=variant.name,
        seed=seed,
        description=variant.description,
        preset=variant.preset,
        flags=variant.train_flags(args.task),
        exp=exp_dir,
        status="ok",
        error=None,
        train_s=state.get("train_s", 0.0),
        eval_s=state.get("eval_s", 0.0),
    )
    tag = f"ablation: [{index}/{total}] {variant.name} seed {seed}"
    from utils.train import config

    if variant.preset not in config.PRESET_NAMES:
        row["status"] = f"skipped: --preset {variant.preset} is not available"
        print(f"{tag}: {row['status']}", flush=True)
        return row

    latest, best = _progress(exp_dir)
    summary = _evaluated(exp_dir, best) if latest is not None and latest >= args.iters else None
    final = _evaluated(exp_dir, latest, EVAL_FINAL_DIR) if summary is not None else None
    if summary is not None and final is not None:
        print(f"{tag}: already trained ({latest} iterations) and evaluated; reused", flush=True)
    else:
        start = time.time()
        if latest is None:
            what = f"training {args.iters} iterations"
        elif latest < args.iters:
            what = f"resuming at iteration {latest} of {args.iters}"
        else:
            what = f"trained ({latest} iterations), evaluating"
        print(f"{tag}: started ({what}) -> {exp_dir}", flush=True)
        if latest is None or latest < args.iters:
            t0 = time.time()
            rc, tail = _run_logged(train_command(args, variant, seed), os.path.join(exp_dir, "train.log"))
            row["train_s"] += time.time() - t0
            state.update(train_s=row["train_s"])
            write_json(state_path, state)
            if rc != 0:
                row.update(status=f"failed: training exited with {rc}", error=tail)
        latest, best = _progress(exp_dir)
        if row["status"] == "ok":
            t0 = time.time()
            row["eval_s"] = 0.0
            for snapshot, folder, step in (("best", EVAL_DIR, best), ("latest", EVAL_FINAL_DIR, latest)):
                done = _evaluated(exp_dir, step, folder)
                if done is None:
                    rc, tail = _run_logged(
                        metrics_command(args, variant, snapshot, seed), os.path.join(exp_dir, "metrics.log")
                    )
                    done = _evaluated(exp_dir, step, folder)
                    if rc != 0 or done is None:
                        row.update(status=f"failed: metrics ({snapshot} snapshot) exited with {rc}", error=tail)
                        break
                summary, final = (done, final) if snapshot == "best" else (summary, done)
            row["eval_s"] = time.time() - t0
            state.update(eval_s=row["eval_s"])
            write_json(state_path, state)
        elapsed = time.time() - start
        if row["status"] == "ok":
            print(f"{tag}: finished in {_minutes(elapsed)} ({_metric_text(summary)})", flush=True)
        else:
            print(f"{tag}: {row['status']} after {_minutes(elapsed)}; last lines:\n{row['error']}", flush=True)
    state.update(status=row["status"], error=row["error"])
    write_json(state_path, state)
    row.update(iterations=latest, best_step=best)
    if summary is not None:
        row["metrics"] = summary["methods"]["model"]
        row["headline"] = summary["headline"]
        row["group_keys"] = (summary.get("point_groups") or {}).get("metrics") or []
        row["baseline"] = summary["methods"].get(BASELINE)
        row["floor"] = summary["methods"].get(FLOOR)
        row["floor_note"] = (summary.get("floor") or {}).get("note")
        row["n_samples"], row["n_models"] = summary.get("n_samples"), summary.get("n_models")
    if final is not None:
        row["final_metrics"] = final["methods"]["model"]
    return row


def _minutes(seconds):
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _metric_text(summary):
    model = summary["methods"]["model"]
    return ", ".join(f"{k} {model[k]:.4f}" for k in summary["headline"] if k in model)


def _headline(rows):
    """The task's headline metrics (Task.headline, recorded by the metrics in summary.json)."""
    return next((r["headline"] for r in rows if r.get("headline")), [])


def _group_keys(rows):
    """The side-resolved metrics (summary.json's point_groups; data with a side record), else []."""
    return next((r["group_keys"] for r in rows if r.get("group_keys")), [])


# ----------------------------------------------------------------------------- table
def _fmt(value):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def write_table(args, rows, wall_s):
    """Write table.json and table.md into ``args.out``; returns the markdown text."""
    keys, group_keys = _headline(rows), _group_keys(rows)
    baseline = next((r["baseline"] for r in rows if r.get("baseline")), None)
    floor = next((r["floor"] for r in rows if r.get("floor")), None)
    floor_note = next((r["floor_note"] for r in rows if r.get("floor_note")), None)
    summary = aggregate(rows, keys + group_keys, REFERENCE)
    info = dict(
        task=args.task,
        category=args.category,
        iters=args.iters,
        seed=args.seed,
        seeds=run_seeds(args),
        data_dir=args.data_dir,
        reference=REFERENCE,
        schedule=SCHEDULE,
        eval=dict(snapshot=["best", "latest"], eval_set="test", input_views="all"),
        wall_s=wall_s,
        variants_s=sum(r["train_s"] + r["eval_s"] for r in rows),
        headline=list(keys),
        group_keys=list(group_keys),
        baseline=dict(name=BASELINE, metrics=baseline),
        floor=dict(name=FLOOR, metrics=floor, note=floor_note),
    )
    write_json(os.path.join(args.out, "table.json"), dict(info, summary=summary, variants=rows))

    n_samples = next((r["n_samples"] for r in rows if r.get("n_samples")), None)
    n_models = next((r["n_models"] for r in rows if r.get("n_models")), None)
    seeds = run_seeds(args)
    lines = [
        f"Ablation ({args.task}, {args.category}): {args.iters} training iterations per run, "
        f"{len(seeds)} seed(s) per variant ({', '.join(map(str, seeds))}); "
        f"best validation snapshot on the test split"
        + (f" ({n_samples} samples: every input view of {n_models} models)" if n_samples else "")
        + f". Training and evaluation time, summed over the runs: "
        f"{_minutes(sum(r['train_s'] + r['eval_s'] for r in rows))} (this invocation: {_minutes(wall_s)}).",
        "",
        f"Mean over the seeds with the spread: ± the sample standard deviation ({STD_MIN_RUNS} or more "
        f"seeds), [min, max] below that. Δ: the difference from `{REFERENCE}` over the paired seeds (same "
        f"seed), with its spread; `*` marks a difference that exceeds its spread (|mean| > standard "
        f"deviation, or with fewer than {STD_MIN_RUNS} pairs every paired difference of one sign), the "
        f"only ones to read as findings. At the best validation snapshot.",
        "",
    ]
    lines += summary_lines(summary, keys, REFERENCE) if keys else ["(no run has metrics)"]
    if group_keys:
        lines += [
            "",
            "Side-resolved errors (the data records which ground-truth points lie on a part's hidden side): "
            "the forward error over the hidden-side points, the visible-side points and the edge between "
            "them (utils.metrics.side_groups), same reading:",
            "",
        ]
        lines += summary_lines(summary, group_keys, REFERENCE)
        for name, value in (("image-blind baseline", baseline), ("floor", floor)):
            if value and all(k in value for k in group_keys):
                lines.append(
                    f"| {name} | | "
                    + " | ".join(_fmt(value[k]) for k in group_keys)
                    + " | "
                    + " | ".join("" for _ in group_keys)
                    + " |"
                )
    lines += [
        "",
        "Runs: metrics at the best validation snapshot, then (final) at the last snapshot.",
        "",
        "| variant | seed | status | iterations (best) | train | eval | "
        + " | ".join(keys)
        + " | "
        + " | ".join(f"final {k}" for k in keys)
        + " |",
        "| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in keys * 2) + " |",
    ]
    for r in rows:
        m, f = r.get("metrics") or {}, r.get("final_metrics") or {}
        its = f"{r.get('iterations')} ({r.get('best_step')})" if r.get("iterations") is not None else "-"
        lines.append(
            f"| {r['variant']} | {r.get('seed', args.seed)} | {r['status']} | {its} | "
            f"{_minutes(r['train_s'])} | {_minutes(r['eval_s'])} | "
            + " | ".join(_fmt(m.get(k)) for k in keys)
            + " | "
            + " | ".join(_fmt(f.get(k)) for k in keys)
            + " |"
        )
    if baseline:
        from utils.task import task_from_ref

        lines.append(
            f"| {task_from_ref(args.task).baseline_label} | | | | | | "
            + " | ".join(_fmt(baseline.get(k)) for k in keys)
            + " | "
            + " | ".join("" for _ in keys)
            + " |"
        )
    if floor:
        lines.append(
            "| floor: ground truth vs an independent resampling of the same surface | | | | | | "
            + " | ".join(_fmt(floor.get(k)) for k in keys)
            + " | "
            + " | ".join("" for _ in keys)
            + " |"
        )
    elif floor_note:
        lines += ["", f"Floor (ground truth vs an independent resampling of the same surface): {floor_note}."]
    described = list({r["variant"]: r for r in rows}.values())
    lines += ["", "Variants:"] + [
        f"- `{r['variant']}`: {r['description']}" + (f" (flags: `{' '.join(r['flags'])}`)" if r["flags"] else "")
        for r in described
    ]
    for r in rows:
        if r.get("error"):
            lines += [
                "",
                f"`{r['variant']}` seed {r.get('seed', args.seed)} {r['status']}; last lines of its log:",
                "```",
                r["error"],
                "```",
            ]
    text = "\n".join(lines) + "\n"
    write_text(os.path.join(args.out, "table.md"), text)
    return text


# ----------------------------------------------------------------------------- figure
def _pictured_samples(exp_dir):
    """{sample key ('<model>_view<v>'): (pred PLY, GT PLY)} written by the metrics' --save_ply."""
    folder = os.path.join(exp_dir, EVAL_DIR, "ply")
    out = {}
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name.endswith("_pred.ply"):
                key = name[: -len("_pred.ply")].split("_", 2)[-1]  # drop '<eval_set>_<index>_'
                out[key] = (os.path.join(folder, name), os.path.join(folder, name[: -len("_pred.ply")] + "_gt.ply"))
    return out


def _read_ply(path):
    """(xyz (N, 3) scaled to the unit cube as the metrics' pictures, colours (N, 3) in [0, 1])."""
    import numpy as np
    import trimesh

    from utils import metrics

    cloud = trimesh.load(path)
    return (
        metrics.scale_to_unit_cube_np(np.asarray(cloud.vertices)),
        np.asarray(cloud.colors, np.float64)[:, :3] / 255.0,
    )


def _input_image(args, key):
    """The input image of a pictured sample '<model>_view<v>' from the data set, or None."""
    from utils import data
    from utils.data import shapenet

    model, _, view = key.rpartition("_view")
    from utils.task import task_from_ref

    tree = task_from_ref(args.task).data_tree
    path = os.path.join(
        data.tree_dirs(args.data_dir, tree)["rendered"],
        shapenet.synset_id(args.category),
        model,
        data.render_file(view),
    )
    try:
        import imageio.v2 as imageio

        return imageio.imread(path)[..., :3]
    except (OSError, ValueError):
        return None


def write_figure(args, rows, angles=((20, -60), (20, 120))):
    """Bar charts of the headline metrics (baseline as a line) above the same test sample under
    every variant. Returns the PNG path, or None when no variant has metrics."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from utils.common import visualize

    keys = _headline(rows)
    if not any(r.get("metrics") for r in rows):
        return None
    summary = aggregate(rows, keys, REFERENCE)
    first = {}
    for r in rows:  # the pictures: each variant's first seed with metrics (else its first row)
        if r["variant"] not in first or (r.get("metrics") and not first[r["variant"]].get("metrics")):
            first[r["variant"]] = r
    rows = list(first.values())
    done = [r for r in rows if r.get("metrics")]
    names = [r["variant"] for r in rows]
    colours = [f"C{i}" for i in range(len(rows))]
    samples = {r["variant"]: _pictured_samples(r["exp"]) for r in done}
    common = [k for k in samples[done[0]["variant"]] if all(k in s for s in samples.values())]
    key = common[0] if common else None

    n_cols = 2 + len(done)
    fig = Figure(figsize=(max(3.2 * len(keys), 1.9 * n_cols), 3.4 + 1.9 * len(angles) * (key is not None)), dpi=110)
    FigureCanvasAgg(fig)
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.4, 1.9 * len(angles) if key else 0.01])
    axes = np.atleast_1d(top.subplots(1, len(keys), gridspec_kw=dict(top=0.80, bottom=0.24, wspace=0.25)))
    baseline = next((r["baseline"] for r in rows if r.get("baseline")), None)
    for ax, k in zip(axes, keys):
        stats = [summary[r["variant"]]["metrics"][k] for r in rows]
        values = np.array([np.nan if st["mean"] is None else st["mean"] for st in stats])
        err = np.array(
            [
                [0.0, 0.0]
                if st["kind"] == "none"
                else ([st["std"]] * 2 if st["kind"] == "std" else [st["mean"] - st["min"], st["max"] - st["mean"]])
                for st in stats
            ]
        ).T
        bars = ax.bar(
            range(len(rows)),
            np.nan_to_num(values, nan=0.0),
            color=colours,
            yerr=err,
            capsize=3,
            error_kw=dict(linewidth=0.8),
        )
        for bar, v, r, up in zip(bars, values, rows, err[1]):
            label = f"{v:.3f}" if np.isfinite(v) else ("failed" if r["status"].startswith("failed") else "n/a")
            ax.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, bar.get_height() + up),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 1),
                textcoords="offset points",
            )
        if baseline and k in baseline:
            ax.axhline(baseline[k], color="k", linestyle="--", linewidth=1, label="image-blind baseline")
        ax.set_xticks(range(len(rows)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(METRIC_LABELS.get(k, k), fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.15)
    n_seeds = max(len(e["seeds"]) for e in summary.values())
    top.suptitle(
        f"DIFFER ablation ({args.task}, {args.category}, {args.iters} iterations, test split)\nmean over "
        f"up to {n_seeds} seed(s), bars: {'standard deviation' if n_seeds >= STD_MIN_RUNS else 'min-max'}"
        + ("; dashed: the image-blind baseline" if baseline else ""),
        fontsize=10,
    )

    if key is not None:
        gt = _read_ply(samples[done[0]["variant"]][key][1])
        preds = [(r["variant"], _read_ply(samples[r["variant"]][key][0])) for r in done]
        image = _input_image(args, key)
        grid = bottom.subplots(
            len(angles),
            n_cols,
            subplot_kw=dict(projection="3d"),
            squeeze=False,
            gridspec_kw=dict(wspace=0.02, hspace=0.02, left=0.01, right=0.99, top=0.9, bottom=0.01),
        )
        for a, (elev, azim) in enumerate(angles):
            grid[a, 0].remove()
            for c, (title, (xyz, col)) in enumerate([("ground truth", gt)] + preds, start=1):
                visualize.draw_cloud(grid[a, c], xyz, col, elev, azim, point_size=3.0)
                grid[a, c].set_box_aspect((1, 1, 1), zoom=1.5)
                if a == 0:
                    grid[a, c].set_title(title, fontsize=8)
        ax = bottom.add_subplot(len(angles), n_cols, 1)
        if image is not None:
            ax.imshow(image)
        ax.set_title(f"input ({key})", fontsize=7)
        ax.set_axis_off()
    path = os.path.join(args.out, f"ablation_{args.task}.png")
    fig.savefig(path)
    return path


# ----------------------------------------------------------------------------- main
def run_all(args):
    """Every (variant, seed), seed by seed (so a stopped run already has whole seeds to compare);
    returns the rows ordered by variant, then seed."""
    seeds = run_seeds(args)
    todo = [(VARIANTS[name], seed) for seed in seeds for name in args.variants]
    rows = [run_variant(args, v, i, len(todo), seed) for i, (v, seed) in enumerate(todo, 1)]
    return sorted(rows, key=lambda r: (args.variants.index(r["variant"]), r["seed"]))


def main(argv=None):
    args = parse_args(argv)
    from utils.data import missing_dataset
    from utils.task import task_from_ref

    tree = task_from_ref(args.task).data_tree
    problem = missing_dataset("ablation", args.data_dir, args.category, tree, " (run_ablation.sh does this)")
    if problem:
        print(problem, file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    seeds = run_seeds(args)
    print(
        f"ablation: {args.task}, variants {', '.join(args.variants)}, {args.iters} iterations each, "
        f"seeds {', '.join(map(str, seeds))} -> {args.out}",
        flush=True,
    )
    rows = run_all(args)
    wall = time.time() - start
    text = write_table(args, rows, wall)
    figure = None
    try:
        figure = write_figure(args, rows)
    except Exception as err:  # the table is the result; a drawing problem must not hide it
        print(f"ablation: could not draw the figure ({type(err).__name__}: {err})", file=sys.stderr)
    if figure and args.copy_figure:
        os.makedirs(os.path.dirname(os.path.abspath(args.copy_figure)), exist_ok=True)
        shutil.copyfile(figure, args.copy_figure)
    print("\n" + text)
    print(
        f"ablation: done in {_minutes(wall)}. Table: {os.path.join(args.out, 'table.md')} (and table.json)"
        + (f"; figure: {figure}" if figure else "")
        + (f" (copied to {args.copy_figure})" if figure and args.copy_figure else ""),
        flush=True,
    )
    return 1 if any(r["status"].startswith("failed") for r in rows) else 0


if __name__ == "__main__":
    from utils.common import cli

    cli.exit_with("ablation", main)
