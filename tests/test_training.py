"""End to end on a tiny generated data set: train, snapshot, resume, evaluate (both tasks).

Also: the run scripts' flags parse against the shared parser, args.json round trip,
atomic checkpoints, and the evaluation's IoU rule on a hand-computed example.
"""
import csv
import json
import os

import numpy as np
import pytest

from utils import config, metrics
from utils.experiment import Experiment
from utils.tfv1 import tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from utils import demo_data
    out = tmp_path_factory.mktemp("tiny_data")
    demo_data.main(["--out", str(out), "--categories", "chair", "--n_models", "10", "--n_views", "4",
                    "--seed", "3", "--workers", "1"])
    return str(out)


def _train_argv(task, exp, data, iters, extra=()):
    argv = ["--exp", exp, "--data_dir", data, "--category", "chair", "--N_VIEWS", "2", "--batch_size", "2",
            "--N_ITERS", str(iters), "--print_n", "2", "--save_n", "3", "--save_model_n", "2",
            "--val_batches", "1", "--num_workers", "1", "--no_progress", "--lr", "1e-4"]
    return argv + list(extra)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["rgb", "partseg"])
def test_train_snapshot_resume_metrics(task, tiny_data, tmp_path, capsys):
    import importlib
    train = importlib.import_module(f"{task}.train_{task}")
    evaluate_mod = importlib.import_module(f"{task}.metrics_{task}")
    exp = str(tmp_path / "exp")
    extra = ["--skipconn"] if task == "rgb" else []

    assert train.main(_train_argv(task, exp, tiny_data, 3, extra)) == 3
    e = Experiment(exp, create=False)
    assert e.pointer("snapshots")["step"] == 3 and e.pointer("best")["step"] == 3
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

    out = str(tmp_path / "metrics")
    summary = evaluate_mod.main(["--exp", exp, "--snapshot", "latest", "--eval_set", "test", "--out", out,
                                 "--batch_size", "3", "--baseline_models", "4", "--save_screenshots",
                                 "--save_ply", "--n_pictures", "1"])
    with open(os.path.join(out, "per_sample.csv")) as f:
        rows = list(csv.DictReader(f))
    model_rows = [r for r in rows if r["method"] == "model"]
    assert len(model_rows) == summary["n_samples"] > 0
    key = "colour" if task == "rgb" else "miou"
    for r in model_rows:
        for k in ("chamfer", "emd", key):
            assert np.isfinite(float(r[k])), (k, r)
    assert json.load(open(os.path.join(out, "summary.json")))["step"] == 5
    assert len(os.listdir(os.path.join(out, "screenshots"))) == 1
    assert len(os.listdir(os.path.join(out, "ply"))) == 2
    assert "medoid_baseline" in capsys.readouterr().out


@pytest.mark.slow
def test_train_step_benchmark_worker(tiny_data, capsys):
    """benchmarks/bench_train_step.py's worker on a tiny configuration: it trains, times and reports
    every part, for the fused step and the step before it; and the table it prints."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_train_step",
                                                  os.path.join(ROOT, "benchmarks", "bench_train_step.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from utils import losses
    affinity_bwd = losses.affinity_bwd
    cfg = dict(batch=2, views=2, n_pts=64, size=64)  # the tiny data set has 64x64 renders
    try:
        for impl in ("fused", "before"):
            with tf.Graph().as_default():
                bench.worker(impl, cfg, tiny_data, repeats=1, train_first=2, threads=1)
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


@pytest.mark.parametrize("task", ["rgb", "partseg"])
def test_run_scripts_use_only_defined_flags(task):
    for kind, parser in (("train", config.train_parser(task)), ("metrics", config.metrics_parser(task))):
        commands = config.flags_in_script(os.path.join(ROOT, f"run_{kind}_{task}.sh"))
        assert len(commands) == 1
        args = parser.parse_args(commands[0])  # SystemExit on an unknown flag
        assert args.exp.startswith("experiments/")


def test_every_train_flag_is_read():
    """Each flag of the parser is used somewhere in the code (no dead flags)."""
    sources = ""
    for folder in ("utils", "rgb", "partseg"):
        for name in os.listdir(os.path.join(ROOT, folder)):
            if name.endswith(".py") and name != "config.py":
                sources += open(os.path.join(ROOT, folder, name)).read()
    for task in ("rgb", "partseg"):
        for action in config.train_parser(task)._actions:
            if action.dest != "help":
                assert f"args.{action.dest}" in sources or f'"{action.dest}"' in sources, action.dest


def test_loss_is_the_weighted_sum_of_its_terms():
    """The total loss uses every weight flag, weight decay included (the original never added it)."""
    from rgb.net import TASK
    from utils.model import AFFINITY_SCALE, build_graph
    args = config.train_parser("rgb").parse_args(
        ["--exp", "x", "--N_VIEWS", "2", "--N_PTS", "64", "--IMG_H", "16", "--IMG_W", "16", "--wt_bce", "0.7",
         "--wt_aff_fwd", "2", "--wt_aff_bwd", "3", "--wt_aff_pts", "0.5", "--wt_rgb", "4", "--wt_decay", "0.25",
         "--bottleneck", "8"])
    rng = np.random.default_rng(0)
    with tf.Graph().as_default(), tf.Session() as sess:
        tf.set_random_seed(1)
        g = build_graph(args, TASK, batch_size=2, n_gt_pts=32)
        sess.run(tf.global_variables_initializer())
        mask = (rng.random((2, 2, 16, 16)) > 0.5).astype(np.float32)
        batch = dict(image=rng.random((2, 16, 16, 3)), mask=mask, dist=rng.random((2, 2, 16, 16)) * 10,
                     az=rng.random((2, 2)) * 6, el=rng.random((2, 2)) * 0.5, pcl=rng.random((2, 32, 3)) - 0.5,
                     rgb=rng.random((2, 2, 16, 16, 3)), pcl_rgb=rng.random((2, 32, 3)))
        t = sess.run(g.terms, g.feed(batch))
    assert t["decay"] > 0
    expected = (0.7 * t["bce"] + AFFINITY_SCALE * (2 * t["aff_fwd"] + 3 * t["aff_bwd"]) + 0.5 * t["aff_pts"]
                + 4 * t["feat"] + 0.25 * t["decay"])
    np.testing.assert_allclose(t["total"], expected, rtol=1e-5)


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


def test_stray_points_do_not_shrink_the_scaled_prediction():
    rng = np.random.default_rng(0)
    cloud = rng.uniform(-0.3, 0.3, (1, 200, 3)).astype(np.float32)
    stray = cloud.copy()
    stray[0, 0] = [5.0, -4.0, 3.0]
    with tf.Session() as s:
        a, b = s.run([metrics.scale_to_unit_cube(tf.constant(cloud), metrics.PRED_BOX_CLIP),
                      metrics.scale_to_unit_cube(tf.constant(stray), metrics.PRED_BOX_CLIP)])
        plain = s.run(metrics.scale_to_unit_cube(tf.constant(stray)))
    # The stray point's pull on the box is bounded by the clip: the cloud (0.6 wide) keeps
    # at least 0.6 / (0.3 + 0.5) of the unit cube; measured without the clip it collapses.
    assert np.isclose(np.ptp(a[0], axis=0).max(), 1.0, atol=1e-5)
    assert np.ptp(b[0, 1:], axis=0).max() >= 0.6 * 0.99 / 0.8
    assert np.ptp(plain[0, 1:], axis=0).max() < 0.2
    np.testing.assert_allclose(b[0, 1:], metrics.scale_to_unit_cube_np(stray, metrics.PRED_BOX_CLIP)[0, 1:], atol=1e-5)
