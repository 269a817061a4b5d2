"""End to end on a tiny generated data set: train, snapshot, resume, evaluate (both tasks).

Also: every flag reaches the graph or the batches, each loss weight multiplies its own term, the
3D loss against brute force, the dense projection through the graph builder, a learning test on
one batch, the run scripts' flags parse against the shared parser, args.json round trip, atomic
checkpoints, and the evaluation's IoU rule on a hand-computed example.
"""

import argparse
import csv
import json
import os
import re
import shlex

import imageio.v2 as imageio
import numpy as np
import pytest

import tiny
from utils import metrics
from utils.common.tfv1 import tf
from utils.eval import evaluate
from utils.experiment import Experiment
from utils.train import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_argv(task, exp, data, iters, extra=()):
    """The tiny configuration (tests/tiny.py) at the default network size (1024 points)."""
    return tiny.train_argv(
        exp,
        data,
        iters,
        "--N_PTS",
        "1024",
        "--bottleneck",
        "128",
        "--print_n",
        "2",
        "--save_n",
        "3",
        "--save_model_n",
        "2",
        "--lr",
        "1e-4",
        *extra,
    )


class _ReadFlags(argparse.Namespace):
    """A Namespace that notes every flag read from it, so a test sees which flags a run uses."""

    seen = set()

    def __getattribute__(self, name):
        if not name.startswith("_"):
            _ReadFlags.seen.add(name)
        return super().__getattribute__(name)


def _per_sample(folder):
    with open(os.path.join(folder, "per_sample.csv")) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["rgb", "partseg"])
def test_train_snapshot_resume_metrics(task, tiny_data, tmp_path, capsys, monkeypatch):
    import importlib

    train = importlib.import_module(f"{task}.train_{task}")
    evaluate_mod = importlib.import_module(f"{task}.metrics_{task}")
    exp = str(tmp_path / "exp")
    extra = ["--USE_3D_LOSS"] + (["--skipconn"] if task == "rgb" else [])  # (--wt_3d is read only then)
    parse = config.parse_train_args  # every flag the two runs below read is noted
    monkeypatch.setattr(config, "parse_train_args", lambda *a, **k: _ReadFlags(**vars(parse(*a, **k))))
    monkeypatch.setattr(_ReadFlags, "seen", set())

    assert train.main(_train_argv(task, exp, tiny_data, 3, extra)) == 3
    e = Experiment(exp, create=False)
    assert e.pointer("snapshots")["step"] == 3 and e.pointer("best")["step"] == 3
    # --print_n 2, --save_n 3, --save_model_n 2, --val_batches 1 (and the last iteration does all)
    log = open(e.log_file).read()
    assert re.findall(r"(iter|val @) (\d+)", log) == [("iter", "2"), ("iter", "3"), ("val @", "3")]
    assert "1 validation batches" in log
    assert sorted(os.listdir(e.path("snapshots"))) == ["latest.json", "step-0000002", "step-0000003"]
    assert os.path.isdir(e.path("log_proj_images", "0000003"))
    assert any(n.startswith("events") for n in os.listdir(e.path("logs", "train")))
    saved = config.load_train_args(exp)
    assert saved.task == task and saved.N_PTS == 1024 and (task != "partseg" or saved.n_cls == 4)

    # Resume: same command with more iterations starts at 3, not 0.
    assert train.main(_train_argv(task, exp, tiny_data, 5, extra)) == 5
    log = open(e.log_file).read()
    assert "resumed at iteration 3" in log
    assert "projection: fused" in log  # --projection auto with the compiled library
    assert e.pointer("snapshots")["step"] == 5
    assert re.findall(r"(iter|val @) (\d+)", log)[3:] == [("iter", "4"), ("iter", "5"), ("val @", "5")]
    unread = _train_flags(task) - _ReadFlags.seen
    assert not unread, f"flags that no training run reads: {sorted(unread)}"

    out = str(tmp_path / "metrics")
    pictures = ["--save_screenshots", "--save_ply"] + (["--save_gifs"] if task == "partseg" else [])
    metrics_argv = [
        "--exp",
        exp,
        "--snapshot",
        "latest",
        "--eval_set",
        "test",
        "--out",
        out,
        "--batch_size",
        "3",
        "--baseline_models",
        "4",
        "--n_pictures",
        "1",
        *pictures,
    ]
    summary = evaluate_mod.main(metrics_argv)
    rows = _per_sample(out)
    model_rows = [r for r in rows if r["method"] == "model"]
    # Every input view of every test model is a sample (1 model x 4 views in the tiny set).
    assert len(model_rows) == summary["n_samples"] == summary["n_models"] * 4 > 0
    assert sorted(int(r["input_view"]) for r in model_rows) == [0, 1, 2, 3] * summary["n_models"]
    with open(os.path.join(out, "per_model.csv")) as f:
        per_model = [r for r in csv.DictReader(f) if r["method"] == "model"]
    assert len(per_model) == summary["n_models"] and per_model[0]["n_views"] == "4"
    np.testing.assert_allclose(
        float(per_model[0]["chamfer"]), np.mean([float(r["chamfer"]) for r in model_rows[:4]]), rtol=1e-6
    )
    key = "colour" if task == "rgb" else "miou"
    for r in model_rows:
        for k in ("chamfer", "emd", key):
            assert np.isfinite(float(r[k])), (k, r)
    assert json.load(open(os.path.join(out, "summary.json")))["step"] == 5
    assert len(os.listdir(os.path.join(out, "screenshots"))) == 1
    assert len(os.listdir(os.path.join(out, "ply"))) == 2
    assert "medoid_baseline" in capsys.readouterr().out
    # The floor row: the ground truth against its second sampling, above 0 and below the baseline.
    floor, baseline = summary["methods"]["floor_resampled_gt"], summary["methods"]["medoid_baseline"]
    assert summary["floor"]["available"] and 0 < floor["chamfer"] < baseline["chamfer"]
    assert 0 < floor["emd"] < baseline["emd"]
    assert (0 <= floor["colour"] < baseline["colour"]) if task == "rgb" else (baseline["miou"] < floor["miou"] <= 1)
    # Everything the run wrote is its own: a second run into the same folder replaces the set.
    assert sorted(os.listdir(out)) == sorted(
        ["per_sample.csv", "per_model.csv", "summary.json", "screenshots", "ply", "viewer.html"]
        + (["gifs"] if task == "partseg" else [])
    )
    assert evaluate_mod.main(metrics_argv)["step"] == 5
    if task == "partseg":  # a turntable GIF of GT and prediction side by side
        [gif] = os.listdir(os.path.join(out, "gifs"))
        frames = imageio.mimread(os.path.join(out, "gifs", gif))
        assert len(frames) == 24 and frames[0].shape[1] > frames[0].shape[0]
        assert not np.array_equal(frames[0], frames[6])  # it turns
    else:  # batches of 3 over 4 samples: the padded last batch scores its one sample as batches of 1 do
        alone = str(tmp_path / "metrics_b1")
        evaluate_mod.main(
            [
                "--exp",
                exp,
                "--snapshot",
                "latest",
                "--eval_set",
                "test",
                "--out",
                alone,
                "--batch_size",
                "1",
                "--baseline_models",
                "4",
            ]
        )
        rows_b1 = _per_sample(alone)
        assert [(r["model_id"], r["input_view"], r["method"]) for r in rows] == [
            (r["model_id"], r["input_view"], r["method"]) for r in rows_b1
        ]
        for a, b in zip(rows, rows_b1):
            for k in ("chamfer", "emd", "colour"):
                np.testing.assert_allclose(float(a[k]), float(b[k]), rtol=1e-4, atol=1e-6, err_msg=(k, a))


@pytest.mark.slow
def test_train_step_benchmark_worker(tiny_data, capsys):
    """benchmarks/bench_train_step.py's worker on a tiny configuration: it trains, times and reports
    every part, for the fused step and the step before it; and the table it prints."""
    from benchmarks import bench_train_step as bench
    from utils import losses

    affinity_bwd = losses.affinity_bwd
    cfg = dict(batch=2, views=2, n_pts=64, size=64)  # the tiny data set has 64x64 renders
    try:
        for impl in ("fused", "before"):
            with tf.Graph().as_default():
                bench.worker("rgb", impl, cfg, tiny_data, repeats=1, train_first=2, threads=1)
            res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            assert res["impl"] == impl and res["resolved"] == ("local" if impl == "before" else "fused")
            keys = {k for _, k in bench.ROWS} | {k for k, _ in bench.COMPONENTS}
            assert set(res["cpu_ms"]) == set(res["wall_ms"]) == keys and res["cpu_ms"]["step"] > 0
            assert all(np.isfinite(v) for v in res["loss_first_last"])
    finally:
        losses.affinity_bwd = affinity_bwd  # the 'before' worker swapped it
    cpu = {i: dict.fromkeys(keys, 2.0) for i in ("before", "fused")}
    cpu["before"]["step"] = 6.0
    table = bench._table(cpu, {"before": 50.0, "fused": 25.0})
    assert "| full training step | 6.0 | 2.0 | 3.0x |" in table and "| 20.0 | 40.0 | 2.00x |" in table


def flags_in_script(path):
    """The ``--flags`` each command of a run script passes (one list per line that runs a .py)."""
    with open(path) as f:
        text = f.read().replace("\\\n", " ")
    flags = []
    for line in text.splitlines():
        if ".py" not in line or line.lstrip().startswith("#"):
            continue
        tokens = shlex.split(line, comments=True)
        start = next(i for i, t in enumerate(tokens) if t.endswith(".py")) + 1
        flags.append([t for t in tokens[start:] if not re.fullmatch(r'"?\$[@*]"?', t)])
    return flags


def test_flags_in_script_reads_continued_lines(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text(
        '# python x.py --no\nsource env.sh\npython rgb/train_rgb.py --exp "a b" \\\n  --lr 1e-4 "$@"  # c\n'
    )
    assert flags_in_script(script) == [["--exp", "a b", "--lr", "1e-4"]]


@pytest.mark.parametrize("task", ["rgb", "partseg"])
def test_run_scripts_use_only_defined_flags(task):
    for kind, parser in (("train", config.train_parser(task)), ("metrics", evaluate.metrics_parser(task))):
        commands = flags_in_script(os.path.join(ROOT, f"run_{kind}_{task}.sh"))
        assert len(commands) == 1
        args = parser.parse_args(commands[0])  # SystemExit on an unknown flag
        assert args.exp.startswith("experiments/")


# ----------------------------------------------------------------------------- flags
# A value other than the default for every flag that decides what is trained, and where the change
# must show: 'model' (utils.model.build_graph: network, projections, losses, validation metric),
# 'optimiser' (the whole training graph, Adam included) and/or 'data' (the first training batch).
# (base flags, changed flags, where).
CHANGES = {
    "N_VIEWS": ([], ["--N_VIEWS", "3"], "model data"),
    "views": ([], ["--views", "fixed"], "data"),
    "input_views": ([], ["--input_views", "all"], "data"),
    "CORR": ([], ["--CORR"], "data"),
    "IMG_H": ([], ["--IMG_H", "32"], "model"),
    "IMG_W": ([], ["--IMG_W", "32"], "model"),
    "N_PTS": ([], ["--N_PTS", "32"], "model"),
    "num_workers": ([], ["--num_workers", "2"], "data"),
    "seed": ([], ["--seed", "7"], "optimiser data"),
    "projection": ([], ["--projection", "dense"], "model"),
    "SIGMA_SQ_MASK": ([], ["--SIGMA_SQ_MASK", "0.8"], "model"),
    "WELL_RADIUS": ([], ["--WELL_RADIUS", "2"], "model"),
    "BETA": ([], ["--BETA", "50"], "model"),
    "wt_bce": ([], ["--wt_bce", "0.5"], "model"),
    "wt_aff_fwd": ([], ["--wt_aff_fwd", "0.5"], "model"),
    "wt_aff_bwd": ([], ["--wt_aff_bwd", "0.5"], "model"),
    "affinity": ([], ["--affinity", "original"], "model"),
    "affinity_view_weight": ([], ["--affinity_view_weight", "original"], "model"),
    "val_chamfer": ([], ["--val_chamfer", "squared"], "model"),
    "wt_aff_pts": ([], ["--wt_aff_pts", "0.5"], "model"),
    "wt_rgb": ([], ["--wt_rgb", "0.5"], "model"),
    "wt_partseg": ([], ["--wt_partseg", "0.5"], "model"),
    "USE_3D_LOSS": ([], ["--USE_3D_LOSS"], "model"),
    "wt_3d": (["--USE_3D_LOSS"], ["--wt_3d", "0.5"], "model"),
    "wt_decay": ([], ["--wt_decay", "0.5"], "model"),
    "bottleneck": ([], ["--bottleneck", "16"], "model"),
    "input_scale": ([], ["--input_scale", "255"], "model"),
    "init": ([], ["--init", "tflearn"], "model"),
    "skipconn": ([], ["--no-skipconn"], "model"),
    "n_cls": ([], ["--n_cls", "5"], "model"),
    "batch_size": ([], ["--batch_size", "3"], "model data"),
    "lr": ([], ["--lr", "1e-3"], "optimiser"),
    "val_clip_box": ([], ["--val_clip_box", "0.4"], "model"),
}
# Flags that steer the run rather than what is trained: each must be read during a training run
# (test_train_snapshot_resume_metrics records every flag a run reads); their effects are checked
# there (print_n, save_n, save_model_n, N_ITERS, val_batches, exp, data_dir, category), in
# test_failures.py (override) and test_fidelity.py (preset), in test_progress.py (no_progress), and in
# test_validation.py (val_selection, val_samples: the validation set, which decides the best snapshot), and in
# test_view_cache.py (view_cache, cache_dir: the same batches, read from the cache).
RUN_FLAGS = {
    "exp",
    "preset",
    "gpu",
    "data_dir",
    "category",
    "N_ITERS",
    "print_n",
    "save_n",
    "save_model_n",
    "val_batches",
    "no_progress",
    "verbose",
    "override",
    "val_selection",
    "val_samples",
    "view_cache",
    "cache_dir",
}
SMALL = ["--N_VIEWS", "2", "--N_PTS", "64", "--bottleneck", "8", "--batch_size", "2", "--num_workers", "1"]


def _train_flags(task):
    return {a.dest for a in config.train_parser(task)._actions if a.dest != "help"}


def _graph_fingerprint(args, task, optimiser):
    """sha256 of the GraphDef that build_graph (or the whole training graph) makes for ``args``."""
    import hashlib

    from utils.model import GraphSettings, build_graph
    from utils.train import loop as train_loop

    with tf.Graph().as_default() as graph:
        if optimiser:
            train_loop.build_training_graph(args, task, n_gt_pts=32)
        else:
            build_graph(GraphSettings.from_args(args, task), task, args.batch_size, n_gt_pts=32)
    graph_def = graph.as_graph_def()
    for node in graph_def.node:
        node.attr.pop("_gradient_op_type", None)  # a process-wide counter, not part of the graph
    return hashlib.sha256(graph_def.SerializeToString(deterministic=True)).hexdigest()


def _data_fingerprint(args, task):
    """The first training batch the flags describe (and the pipeline's thread count)."""
    from utils.data import BatchPipeline

    with BatchPipeline.from_args(args, task, "train") as p:
        batch = p.get_batch(0)
    return p.num_workers, {k: v.tolist() for k, v in batch.items()}


@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["rgb", "partseg"])
def test_every_train_flag_reaches_the_graph_or_the_batches(task_name, tiny_data):
    """Each flag that decides what is trained changes the training graph or the batches when its
    value changes (a flag nothing reads would change neither); every flag is classified."""
    import importlib

    task = importlib.import_module(f"{task_name}.task").TASK
    flags = _train_flags(task_name)
    assert flags == (set(CHANGES) & flags) | RUN_FLAGS, "classify every flag in CHANGES or RUN_FLAGS"
    # partseg: only its own flags (the shared ones are checked with rgb)
    checked = sorted(flags - RUN_FLAGS) if task_name == "rgb" else sorted(flags - _train_flags("rgb"))
    fingerprints = {}

    def fingerprint(argv, where):
        args = task.resolve_args(
            config.parse_train_args(task_name, ["--exp", "x", "--data_dir", tiny_data, *SMALL, *argv])
        )
        key = (tuple(argv), where)
        if key not in fingerprints:
            fingerprints[key] = (
                _data_fingerprint(args, task)
                if where == "data"
                else _graph_fingerprint(args, task, optimiser=where == "optimiser")
            )
        return fingerprints[key]

    for flag in checked:
        base, change, places = CHANGES[flag]
        for where in places.split():
            assert fingerprint(base + change, where) != fingerprint(base, where), f"--{flag} does not reach the {where}"


# ----------------------------------------------------------------------------- losses in the graph
TINY_GRAPH = ["--N_VIEWS", "2", "--N_PTS", "37", "--IMG_H", "16", "--IMG_W", "12", "--bottleneck", "8"]


def _task(name):
    import importlib

    return importlib.import_module(f"{name}.task").TASK


def _random_batch(task_name, rng, n_cls=3, b=2, v=2, h=16, w=12, n_gt=32):
    """A batch of the shapes the loaders make, random values (masks with their distance maps)."""
    from utils.data.distance_map import gt_distance_transform

    mask = (rng.random((b, v, h, w)) > 0.6).astype(np.float32)
    batch = dict(
        image=rng.random((b, h, w, 3)).astype(np.float32),
        mask=mask,
        dist=gt_distance_transform(mask),
        az=rng.random((b, v)) * 6,
        el=rng.random((b, v)) * 0.5,
        pcl=rng.random((b, n_gt, 3)) - 0.5,
    )
    if task_name == "rgb":
        batch.update(rgb=rng.random((b, v, h, w, 3)) * mask[..., None], pcl_rgb=rng.random((b, n_gt, 3)))
    else:
        batch.update(
            labels=(rng.integers(1, n_cls + 1, (b, v, h, w)) * mask).astype(np.int32),
            pcl_labels=rng.integers(0, n_cls, (b, n_gt)).astype(np.int32),
        )
    return batch


def _run_model(task_name, argv, batch, fetch=("terms", "xyz", "feat")):
    """Build the training graph's model for ``argv`` (seed 1) and run ``fetch`` on ``batch``:
    (dict of results, the graph namespace)."""
    from utils.model import GraphSettings, build_graph

    args = config.parse_train_args(task_name, ["--exp", "x", *TINY_GRAPH, *argv])
    if task_name == "partseg":
        args.n_cls = 3
    with tf.Graph().as_default(), tf.Session() as sess:
        tf.set_random_seed(1)
        g = build_graph(
            GraphSettings.from_args(args, _task(task_name)),
            _task(task_name),
            batch_size=2,
            n_gt_pts=batch["pcl"].shape[1],
        )
        sess.run(tf.global_variables_initializer())
        return sess.run({k: getattr(g, k) for k in fetch}, g.feed(batch)), g


# The loss term each weight flag multiplies, and the factor on top of the weight: the original's
# rgb/train_rgb.py multiplied both affinity means by 1e-4 (loss_fwd = 1e-4 * tf.reduce_mean(...)).
WEIGHTED_TERMS = {
    "wt_bce": (["bce"], 1.0),
    "wt_aff_fwd": (["aff_fwd"], 1e-4),
    "wt_aff_bwd": (["aff_bwd"], 1e-4),
    "wt_aff_pts": (["aff_pts"], 1.0),
    "wt_decay": (["decay"], 1.0),
    "wt_3d": (["chamfer_3d", "feat_3d"], 1.0),
}


@pytest.mark.parametrize("task_name", ["rgb", "partseg"])
def test_each_loss_weight_adds_its_term(task_name, rng):
    """Raising one weight by 0.75 raises the loss by 0.75 x (factor) x that term's value, and by
    nothing else: every weight multiplies its own term, weight decay included (the original
    declared it and never added it)."""
    weights = dict(WEIGHTED_TERMS, **{_task(task_name).weight_flag: (["feat"], 1.0)})
    base = ["--USE_3D_LOSS"] + [x for flag in weights for x in (f"--{flag}", "0.5")]
    batch = _random_batch(task_name, rng)
    ref, _ = _run_model(task_name, base, batch)
    assert all(ref["terms"][k] > 0 for terms, _ in weights.values() for k in terms), ref["terms"]
    # partseg: the weights of its own terms (the shared ones are checked with rgb)
    checked = weights if task_name == "rgb" else ["wt_partseg", "wt_3d"]
    for flag, (terms, factor) in ((flag, weights[flag]) for flag in checked):
        out, _ = _run_model(task_name, base + [f"--{flag}", "1.25"], batch)
        np.testing.assert_allclose(out["xyz"], ref["xyz"], rtol=1e-5, atol=1e-6)  # the same network in every graph
        expected = 0.75 * factor * sum(ref["terms"][k] for k in terms)
        np.testing.assert_allclose(
            out["terms"]["total"] - ref["terms"]["total"],
            expected,
            rtol=2e-3,
            atol=1e-6 * ref["terms"]["total"],
            err_msg=flag,
        )


@pytest.mark.parametrize("task_name", ["rgb", "partseg"])
def test_3d_loss_against_brute_force_nearest_neighbours(task_name, rng):
    """--USE_3D_LOSS adds the mean squared Chamfer distance and the feature error through nearest
    neighbours (colour L2, or part cross-entropy), computed here by brute force in numpy."""
    batch = _random_batch(task_name, rng)
    out, _ = _run_model(task_name, ["--USE_3D_LOSS", "--wt_3d", "1"], batch)
    gt, xyz, feat = batch["pcl"], out["xyz"].astype(np.float64), out["feat"].astype(np.float64)
    d = ((gt[:, :, None, :] - xyz[:, None, :, :]) ** 2).sum(-1)  # (B, N_gt, N)
    np.testing.assert_allclose(out["terms"]["chamfer_3d"], d.min(2).mean() + d.min(1).mean(), rtol=1e-4)
    fwd, bwd = d.argmin(2), d.argmin(1)  # nearest predicted point of each GT point, and back
    rows = np.arange(len(gt))[:, None]
    if task_name == "rgb":
        col = batch["pcl_rgb"]
        expected = np.mean((feat[rows, fwd] - col) ** 2) + np.mean((col[rows, bwd] - feat) ** 2)
    else:
        lab = batch["pcl_labels"]
        p_fwd = np.take_along_axis(feat[rows, fwd], lab[..., None], -1)[..., 0]  # at each GT point
        p_bwd = np.take_along_axis(feat, lab[rows, bwd][..., None], -1)[..., 0]  # at each predicted point
        expected = -np.mean(np.log(p_fwd + 1e-8)) - np.mean(np.log(p_bwd + 1e-8))
    np.testing.assert_allclose(out["terms"]["feat_3d"], expected, rtol=1e-4)
    without, _ = _run_model(task_name, [], batch)
    assert "chamfer_3d" not in without["terms"]
    np.testing.assert_allclose(
        out["terms"]["total"] - without["terms"]["total"],
        out["terms"]["chamfer_3d"] + out["terms"]["feat_3d"],
        rtol=1e-4,
    )


@pytest.mark.parametrize("task_name", ["rgb", "partseg"])
def test_dense_projection_through_build_graph(task_name, rng):
    """--projection dense (the original's formulation, one (B*V, N, H, W) tensor) gives the local
    projection's masks, feature maps and losses, and is what the graph really builds."""
    batch = _random_batch(task_name, rng)
    fetch = ("terms", "pred_mask", "proj")
    (local, g_local), (dense, g_dense) = [
        _run_model(task_name, ["--projection", impl], batch, fetch) for impl in ("local", "dense")
    ]
    np.testing.assert_allclose(dense["pred_mask"], local["pred_mask"], atol=1e-5)
    np.testing.assert_allclose(dense["proj"], local["proj"], atol=1e-5)
    # (the BCE's log magnifies the Gaussian tails that the local window cuts: ~1e-3 relative)
    for k in ("bce", "aff_fwd", "aff_bwd", "aff_pts", "feat", "total"):
        np.testing.assert_allclose(dense["terms"][k], local["terms"][k], rtol=5e-3, err_msg=k)

    def points_by_pixels(tensor):  # computed from a tensor with the N = 37 points and the 16 x 12 pixels
        seen, todo = set(), [tensor.op]
        while todo:
            op = todo.pop()
            if op not in seen:
                seen.add(op)
                if any(out.shape.rank and {37, 16, 12} <= set(out.shape.as_list()) for out in op.outputs):
                    return True
                todo += [t.op for t in op.inputs]
        return False

    assert points_by_pixels(g_dense.pred_mask) and points_by_pixels(g_dense.proj)
    assert not points_by_pixels(g_local.pred_mask) and not points_by_pixels(g_local.proj)


@pytest.mark.slow
@pytest.mark.parametrize("task_name", ["rgb", "partseg"])
def test_training_on_one_batch_drives_the_losses_down(task_name, tiny_data):
    """250 Adam steps (lr 1e-3) on one batch of two chairs, 256 points: the 2D terms fall at least
    5-fold (seen: 10x to 1000x); the forward affinity, near 0 from the start (the first clouds
    project inside the silhouettes), stays below 0.05 px^2; the Chamfer distance to the
    ground-truth clouds falls by at least 15% on average (seen: 22% to 35%) and by at least 5%
    for each chair (seen: 12% to 40%). One CPU thread: the same numbers on every run."""
    from utils.data import BatchPipeline
    from utils.model import GraphSettings, build_graph

    task = _task(task_name)
    args = task.resolve_args(
        config.parse_train_args(
            task_name,
            [
                "--exp",
                "x",
                "--data_dir",
                tiny_data,
                "--N_VIEWS",
                "2",
                "--batch_size",
                "2",
                "--N_PTS",
                "256",
                "--bottleneck",
                "32",
                "--lr",
                "1e-3",
            ],
        )
    )
    with BatchPipeline.from_args(args, task, "train", num_workers=0) as pipeline:
        batch = pipeline.get_batch(0)
    one_thread = tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    with tf.Graph().as_default(), tf.Session(config=one_thread) as sess:
        tf.set_random_seed(1)
        g = build_graph(GraphSettings.from_args(args, task), task, args.batch_size, n_gt_pts=batch["pcl"].shape[1])
        step = tf.train.AdamOptimizer(args.lr).minimize(g.loss)
        sess.run(tf.global_variables_initializer())
        feed = g.feed(batch)
        before, chamfer_before = sess.run([g.terms, g.val["chamfer"]], feed)
        for _ in range(250):
            sess.run(step, feed)
        after, chamfer_after = sess.run([g.terms, g.val["chamfer"]], feed)
    for k in ("bce", "aff_bwd", "aff_pts", "feat"):
        assert after[k] * 5 <= before[k], (k, before[k], after[k])
    assert after["aff_fwd"] < 0.05, after["aff_fwd"]
    assert np.mean(chamfer_after) <= 0.85 * np.mean(chamfer_before), (chamfer_before, chamfer_after)
    assert np.all(chamfer_after <= 0.95 * chamfer_before), (chamfer_before, chamfer_after)


def test_resolve_args_returns_a_new_namespace(tiny_data):
    """partseg's --n_cls 0 is read from the data set into a copy; the parsed flags stay as given."""
    for name, expected in (("rgb", None), ("partseg", 4)):
        args = config.parse_train_args(name, ["--exp", "x", "--data_dir", tiny_data])
        before = dict(vars(args))
        resolved = _task(name).resolve_args(args)
        assert resolved is not args and vars(args) == before
        assert getattr(resolved, "n_cls", None) == expected
        assert {k: v for k, v in vars(resolved).items() if k != "n_cls"} == {
            k: v for k, v in before.items() if k != "n_cls"
        }


def test_incompatible_resume_is_refused(tmp_path):
    a = config.train_parser("rgb").parse_args(["--exp", str(tmp_path)])
    b = config.train_parser("rgb").parse_args(["--exp", str(tmp_path), "--N_PTS", "512"])
    config.save_args(a, str(tmp_path))
    config.check_compatible(config.load_train_args(str(tmp_path)), a)
    with pytest.raises(ValueError, match="N_PTS"):
        config.check_compatible(config.load_train_args(str(tmp_path)), b)


def test_checkpoint_is_atomic_and_pruned(tmp_path, sess):
    v = tf.get_variable("v", initializer=tf.constant([1.0, 2.0]))
    saver = tf.train.Saver()
    sess.run(tf.global_variables_initializer())
    e = Experiment(str(tmp_path / "exp"))
    for step in (10, 20, 30):
        sess.run(v.assign([step, step]))
        e.save(saver, sess, step)
    assert sorted(os.listdir(e.path("snapshots"))) == ["latest.json", "step-0000020", "step-0000030"]
    # A crash while writing leaves a temporary folder: ignored, then removed on restart.
    os.makedirs(e.path("snapshots", ".tmp-step-0000040-1"))
    e.release()  # the crash releases the lock
    e = Experiment(str(tmp_path / "exp"))
    assert not any(n.startswith(".tmp") for n in os.listdir(e.path("snapshots")))
    prefix, step = e.checkpoint("latest")
    saver.restore(sess, prefix)
    assert step == 30 and sess.run(v).tolist() == [30, 30]
    with pytest.raises(FileNotFoundError, match="available: \\[20, 30\\]"):
        e.checkpoint("10")
    with pytest.raises(FileNotFoundError, match="no best model"):
        e.checkpoint("best")


def test_part_iou_hand_computed():
    gt = np.array([[0, 0, 1, 1, 2, 2]])
    pred = np.array([[0, 1, 1, 1, 2, 0]])
    iou = metrics.part_iou(gt, pred, n_cls=4)
    # part 0: TP 1, |gt| 2, |pred| 2 -> 1/3; part 1: TP 2, 2 + 3 - 2 = 3 -> 2/3;
    # part 2: TP 1, 2 + 1 - 1 = 2 -> 1/2; part 3: absent from both -> 1.
    np.testing.assert_allclose(iou[0], [1 / 3, 2 / 3, 1 / 2, 1.0])
    fw = metrics.part_iou(gt, pred, n_cls=4, freq_wt=True)
    np.testing.assert_allclose(fw.sum(), (1 / 3 + 2 / 3 + 1 / 2) * 2 / 6)
    # Through correspondences: identical clouds, identity indices.
    idx = np.arange(6)[None]
    m = metrics.part_mious(gt, pred, idx, idx, n_cls=4)
    np.testing.assert_allclose(m["miou"], np.mean([1 / 3, 2 / 3, 1 / 2, 1.0]))


def test_colour_errors_and_scaling():
    gt = np.zeros((1, 2, 3))
    pred = np.array([[[1.0, 0, 0], [0, 0, 0], [0, 0, 0]]])
    fwd, bwd = metrics.colour_errors(gt, pred, np.array([[1, 2]]), np.array([[0, 0, 1]]))
    np.testing.assert_allclose([fwd[0], bwd[0]], [0.0, 1 / 9])
    cloud = np.array([[0, 0, 0], [2, 1, 0], [1, 0.5, 4.0]])
    s = metrics.scale_to_unit_cube_np(cloud)
    np.testing.assert_allclose(s.max(0) - s.min(0), [0.5, 0.25, 1.0])
    np.testing.assert_allclose((s.max(0) + s.min(0)) / 2, 0.0, atol=1e-12)
