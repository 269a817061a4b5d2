"""The ablation script (claims/ablation.py): its variants' flags, what they change in the graph,
the aggregation over seeds (fabricated runs, hand-computed oracle), and one tiny end-to-end run of
two variants with two seeds, killed and re-run: finished (variant, seed) runs are not retrained."""

import json
import os
import sys

import numpy as np
import pytest

from utils.common.tfv1 import tf
from utils.eval import seeds
from utils.render import projection
from utils.train import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ablation():
    from claims import ablation

    return ablation


def _train_args(ablation, task, name, extra=()):
    """The Namespace the training subprocess of variant ``name`` would parse."""
    a = ablation.parse_args(
        ["--task", task, "--iters", "123", "--seed", "7", "--out", "/tmp/x", "--data_dir", "/tmp/d"]
    )
    cmd = ablation.train_command(a, ablation.VARIANTS[name])
    assert cmd[1:3] == ["-m", f"{task}.train_{task}"]
    return config.parse_train_args(task, cmd[3:] + list(extra))


@pytest.mark.parametrize("task", ["rgb", "partseg"])
def test_variant_flags_resolve_as_described(ablation, task):
    assert list(ablation.VARIANTS) == ["2d", "3d", "2d+3d", "depth-unaware", "no-affinity", "original"]
    args = {name: _train_args(ablation, task, name) for name in ablation.VARIANTS}
    feat_wt = "wt_rgb" if task == "rgb" else "wt_partseg"
    for name, a in args.items():  # one schedule and seed for all, the original preset included
        assert (a.N_ITERS, a.seed, a.print_n, a.save_n, a.save_model_n) == (123, 7, 250, 500, 500), name
        assert a.data_dir == "/tmp/d" and a.exp == os.path.join("/tmp/x", name, "seed7")
    rec = config.RECOMMENDED
    two_d = args["2d"]
    assert (two_d.preset, two_d.USE_3D_LOSS, two_d.BETA, two_d.batch_size) == ("recommended", False, rec["BETA"], 8)
    assert min(two_d.wt_bce, two_d.wt_aff_fwd, two_d.wt_aff_bwd, two_d.wt_aff_pts, getattr(two_d, feat_wt)) > 0
    three_d = args["3d"]
    assert three_d.USE_3D_LOSS and three_d.wt_3d > 0
    assert [three_d.wt_bce, three_d.wt_aff_fwd, three_d.wt_aff_bwd, three_d.wt_aff_pts, getattr(three_d, feat_wt)] == [
        0,
        0,
        0,
        0,
        0,
    ]
    assert args["2d+3d"].USE_3D_LOSS and args["2d+3d"].wt_bce == rec["wt_bce"]
    assert args["depth-unaware"].BETA == 0 and args["depth-unaware"].wt_aff_fwd == rec["wt_aff_fwd"]
    no_aff = args["no-affinity"]
    assert [no_aff.wt_aff_fwd, no_aff.wt_aff_bwd, no_aff.wt_aff_pts] == [0, 0, 0] and no_aff.wt_bce == rec["wt_bce"]
    orig = args["original"]  # the preset's own settings, the demo's schedule
    assert (orig.preset, orig.batch_size, orig.lr, orig.affinity) == ("original", 1, 5e-5, "original")


def test_seeds_change_the_seed_and_folder_only(ablation):
    """--seeds K: seeds --seed, --seed + 1, ...; each run its own folder, the same data and flags."""
    a = ablation.parse_args(["--task", "rgb", "--seeds", "3", "--seed", "7", "--out", "/tmp/x", "--data_dir", "/tmp/d"])
    assert ablation.run_seeds(a) == [7, 8, 9]
    assert ablation.parse_args(["--task", "rgb", "--out", "/tmp/x"]).seeds == 3  # the default
    parsed = [
        config.parse_train_args("rgb", ablation.train_command(a, ablation.VARIANTS["2d"], s)[3:]) for s in (7, 8, 9)
    ]
    assert [p.seed for p in parsed] == [7, 8, 9]
    assert [p.exp for p in parsed] == [f"/tmp/x/2d/seed{s}" for s in (7, 8, 9)]
    for p in parsed[1:]:  # nothing but the seed and the folder differs
        assert {k: v for k, v in vars(p).items() if k not in ("seed", "exp")} == {
            k: v for k, v in vars(parsed[0]).items() if k not in ("seed", "exp")
        }
    metrics = ablation.metrics_command(a, ablation.VARIANTS["3d"], seed=9)
    assert metrics[metrics.index("--exp") + 1] == "/tmp/x/3d/seed9"
    for bad in (["--seeds", "0"], ["--seed", "-1"]):
        with pytest.raises(SystemExit):
            ablation.parse_args(["--task", "rgb"] + bad)


def _runs(table):
    """Fabricated run results: {variant: {seed: chamfer}} -> run dicts (colour = 10 x chamfer)."""
    return [
        dict(variant=v, seed=s, metrics=None if c is None else dict(chamfer=c, colour=10 * c))
        for v, by_seed in table.items()
        for s, c in by_seed.items()
    ]


def test_aggregate_three_seeds_gives_mean_range_and_paired_differences(ablation):
    runs = _runs(
        {
            "2d": {1: 0.10, 2: 0.12, 3: 0.14},
            "depth-unaware": {1: 0.11, 2: 0.15, 3: 0.13},  # paired diffs +0.01, +0.03, -0.01
            "3d": {1: 0.13, 2: 0.14, 3: 0.16, 4: 0.50},  # seed 4 has no 2d partner: not paired
            "no-affinity": {1: 0.11, 2: 0.14, 3: 0.24},
        }
    )  # paired diffs +0.01, +0.02, +0.10
    out = seeds.aggregate(runs, ["chamfer", "colour"], "2d")
    assert list(out) == ["2d", "depth-unaware", "3d", "no-affinity"]
    no_aff = out["no-affinity"]["diff"]["chamfer"]  # one sign in every pair: a finding, though the
    assert no_aff["finding"] is True and no_aff["mean"] < no_aff["max"] - no_aff["min"]  # range is wide
    two_d = out["2d"]["metrics"]["chamfer"]
    assert two_d["kind"] == "range" and two_d["n"] == 3 and two_d["std"] is None
    assert two_d["mean"] == pytest.approx(0.12) and (two_d["min"], two_d["max"]) == (0.10, 0.14)
    assert out["2d"]["diff"] is None
    du = out["depth-unaware"]["diff"]["chamfer"]
    assert du["mean"] == pytest.approx(0.01) and du["min"] == pytest.approx(-0.01) and du["max"] == pytest.approx(0.03)
    assert du["finding"] is False and du["pairs"] == [1, 2, 3]  # the range straddles 0
    assert out["depth-unaware"]["diff"]["colour"]["mean"] == pytest.approx(0.1)
    three = out["3d"]
    assert three["seeds"] == [1, 2, 3, 4]
    assert three["metrics"]["chamfer"]["kind"] == "std"  # 4 runs: the sample standard deviation
    assert three["metrics"]["chamfer"]["mean"] == pytest.approx(0.2325)
    # hand-computed: deviations -0.1025, -0.0925, -0.0725, 0.2675; squares 0.01050625 + 0.00855625 + 0.00525625
    # + 0.07155625 = 0.095875; divided by n - 1 = 3
    assert three["metrics"]["chamfer"]["std"] == pytest.approx((0.095875 / 3) ** 0.5)
    d3 = three["diff"]["chamfer"]  # +0.03, +0.02, +0.02 over seeds 1..3: all of one sign
    assert d3["pairs"] == [1, 2, 3] and d3["kind"] == "range" and d3["finding"] is True
    assert d3["mean"] == pytest.approx(0.07 / 3)
    assert (d3["min"], d3["max"]) == pytest.approx((0.02, 0.03))


def test_aggregate_four_pairs_uses_the_standard_deviation_and_skips_failed_runs(ablation):
    runs = _runs(
        {
            "2d": {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0, 5: 5.0},
            "x": {1: 2.0, 2: 2.0, 3: 5.0, 4: 5.0, 5: None},  # diffs +1, 0, +2, +1; seed 5 failed
            "y": {1: 1.5, 2: 1.0, 3: 4.5, 4: 3.0},
        }
    )  # diffs +0.5, -1, +1.5, -1
    out = seeds.aggregate(runs, ["chamfer"], "2d")
    x = out["x"]["diff"]["chamfer"]
    assert out["x"]["seeds"] == [1, 2, 3, 4] and x["pairs"] == [1, 2, 3, 4] and x["kind"] == "std"
    assert x["mean"] == pytest.approx(1.0) and x["std"] == pytest.approx((2 / 3) ** 0.5)  # (1+1+0+0)/3
    assert x["finding"] is True  # 1.0 > 0.816
    y = out["y"]["diff"]["chamfer"]
    assert y["mean"] == pytest.approx(0.0) and y["finding"] is False
    assert y["std"] == pytest.approx(((0.25 + 1 + 2.25 + 1) / 3) ** 0.5)
    assert out["2d"]["metrics"]["chamfer"]["std"] == pytest.approx(2.5**0.5)
    # the markdown rows: mean ± std, a signed difference with '*' where it is a finding
    lines = seeds.summary_lines(out, ["chamfer"], "2d")
    assert lines[2] == "| 2d | 5 | 3.0000 ± 1.5811 | - |"
    assert lines[3] == "| x | 4 | 3.5000 ± 1.7321 | +1.0000 ± 0.8165 * |"
    # without any reference run there is nothing to compare with
    assert seeds.aggregate(_runs({"x": {1: 1.0}}), ["chamfer"], "2d")["x"]["diff"] is None


def _small_graph(ablation, name):
    from rgb.task import TASK
    from utils.model import GraphSettings, build_graph

    args = _train_args(
        ablation,
        "rgb",
        name,
        ["--N_VIEWS", "2", "--N_PTS", "64", "--IMG_H", "16", "--IMG_W", "16", "--bottleneck", "8"],
    )
    tf.set_random_seed(1)
    return build_graph(GraphSettings.from_args(args, TASK), TASK, batch_size=2, n_gt_pts=32)


def test_3d_variant_has_no_2d_gradient_path(ablation):
    """'3d': the loss has no path to the projections at all, but the feature branch still learns
    from the 3D feature term. '2d': both projections feed the loss."""
    with tf.Graph().as_default():
        g = _small_graph(ablation, "2d")
        assert all(grad is not None for grad in tf.gradients(g.loss, [g.pred_mask, g.proj]))
    with tf.Graph().as_default(), tf.Session() as sess:
        g = _small_graph(ablation, "3d")
        assert tf.gradients(g.loss, [g.pred_mask, g.proj]) == [None, None]
        grad_feat = tf.gradients(g.loss, g.feat)[0]
        sess.run(tf.global_variables_initializer())
        rng = np.random.default_rng(0)
        batch = dict(
            image=rng.random((2, 16, 16, 3)),
            mask=np.ones((2, 2, 16, 16)),
            dist=np.zeros((2, 2, 16, 16)),
            az=rng.random((2, 2)),
            el=rng.random((2, 2)),
            pcl=rng.random((2, 32, 3)) - 0.5,
            rgb=rng.random((2, 2, 16, 16, 3)),
            pcl_rgb=rng.random((2, 32, 3)),
        )
        gf, t = sess.run([grad_feat, g.terms], g.feed(batch))
    assert np.abs(gf).max() > 0
    # the 2D terms are still computed (logged), but only the 3D ones and weight decay make the loss
    np.testing.assert_allclose(
        t["total"], t["chamfer_3d"] + t["feat_3d"] + config.RECOMMENDED["wt_decay"] * t["decay"], rtol=1e-5
    )
    assert t["bce"] > 0


def test_no_affinity_variant_drops_only_the_affinity_terms(ablation):
    with tf.Graph().as_default():
        g = _small_graph(ablation, "no-affinity")
        t = g.terms
        assert tf.gradients(g.loss, [t["aff_fwd"], t["aff_bwd"], t["aff_pts"]]) == [None, None, None]
        assert all(grad is not None for grad in tf.gradients(g.loss, [t["bce"], t["feat"], g.pred_mask]))


@pytest.mark.parametrize("impl", projection.IMPLS)
def test_depth_unaware_projection_is_the_unweighted_mean(impl, sess):
    """BETA 0 ('depth-unaware'): a pixel's feature is the plain mean of the points in its well;
    with the default beta the nearest point dominates. Oracle: brute force over pixels in numpy."""
    pix = np.array([[[2.2, 2.4, 1.0], [2.9, 1.6, 3.0], [1.5, 3.1, 0.5], [5.0, 5.0, 1.0]]])  # row, col, depth
    feat = np.array([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.9]]])
    h = w = 7
    expected = np.zeros((h, w, 2))
    nearest = np.zeros((h, w, 2))
    for r in range(h):
        for c in range(w):
            inside = [i for i in range(4) if abs(r - pix[0, i, 0]) <= 1 and abs(c - pix[0, i, 1]) <= 1]
            if inside:
                expected[r, c] = feat[0, inside].mean(axis=0)
                nearest[r, c] = feat[0, min(inside, key=lambda i: pix[0, i, 2])]
    assert expected[2, 2].tolist() == [0.5, 0.5]  # three points of different depths share pixel (2, 2)
    unaware, _ = projection.feature_projection(tf.constant(pix), tf.constant(feat), h, w, 1.0, 0.0, impl=impl)
    aware, _ = projection.feature_projection(tf.constant(pix), tf.constant(feat), h, w, 1.0, 100.0, impl=impl)
    unaware, aware = sess.run([unaware, aware])
    np.testing.assert_allclose(unaware[0], expected, atol=1e-6)
    np.testing.assert_allclose(aware[0, 2, 2], nearest[2, 2], atol=0.05)  # depth-aware: the nearest wins


@pytest.mark.slow
def test_two_variants_two_seeds_end_to_end_killed_and_resumed(ablation, tiny_data, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "ablation")
    argv = [
        "--task",
        "rgb",
        "--variants",
        "2d,3d",
        "--iters",
        "4",
        "--seeds",
        "2",
        "--seed",
        "5",
        "--data_dir",
        tiny_data,
        "--out",
        out,
        "--n_pictures",
        "1",
        "--copy_figure",
        str(tmp_path / "docs" / "fig.png"),
    ]
    runs = [(v, s) for v in ("2d", "3d") for s in (5, 6)]

    def folder(v, s):
        return os.path.join(out, v, f"seed{s}")

    # A first invocation is killed (Ctrl-C) when it starts training its fourth run (3d, seed 6).
    real_run_logged = ablation._run_logged

    def killed_at_3d_seed6(cmd, log_path):
        if log_path == os.path.join(folder("3d", 6), "train.log"):
            raise KeyboardInterrupt
        return real_run_logged(cmd, log_path)

    monkeypatch.setattr(ablation, "_run_logged", killed_at_3d_seed6)
    with pytest.raises(KeyboardInterrupt):
        ablation.main(argv)
    assert capsys.readouterr().out.count(": started (training 4 iterations)") == 4
    monkeypatch.setattr(ablation, "_run_logged", real_run_logged)
    logs = {r: os.path.getsize(os.path.join(folder(*r), "train.log")) for r in runs[:3]}
    snaps = {r: os.path.getmtime(os.path.join(folder(*r), "snapshots", "latest.json")) for r in runs[:3]}

    # The re-run trains only the missing run; the three finished ones are reused untouched.
    assert ablation.main(argv) == 0
    text = capsys.readouterr().out
    assert text.count("already trained (4 iterations) and evaluated; reused") == 3
    assert text.count(": started (training 4 iterations)") == 1 and "[4/4] 3d seed 6: started" in text
    assert {r: os.path.getsize(os.path.join(folder(*r), "train.log")) for r in runs[:3]} == logs
    assert {r: os.path.getmtime(os.path.join(folder(*r), "snapshots", "latest.json")) for r in runs[:3]} == snaps

    table = json.load(open(os.path.join(out, "table.json")))
    rows = table["variants"]
    assert [(r["variant"], r["seed"]) for r in rows] == runs and table["seeds"] == [5, 6]
    for r in rows:
        assert r["status"] == "ok" and r["iterations"] == 4, r
        args_json = json.load(open(os.path.join(folder(r["variant"], r["seed"]), "args.json")))
        assert args_json["seed"] == r["seed"] and os.path.abspath(args_json["data_dir"]) == tiny_data
        for k in ("chamfer", "emd", "colour"):
            assert np.isfinite(r["metrics"][k]), (r["variant"], k)
            assert np.isfinite(r["final_metrics"][k]), (r["variant"], k)  # the last snapshot too
    assert np.isfinite(table["baseline"]["metrics"]["chamfer"])
    assert 0 < table["floor"]["metrics"]["chamfer"] < table["baseline"]["metrics"]["chamfer"]
    value = {(r["variant"], r["seed"]): r["metrics"] for r in rows}
    assert value[("2d", 5)]["chamfer"] != value[("2d", 6)]["chamfer"]  # the seed changes the training
    # the summary against numpy on the runs' own metrics (two seeds: mean and range)
    for k in ("chamfer", "emd", "colour"):
        two = [value[("2d", s)][k] for s in (5, 6)]
        diffs = [value[("3d", s)][k] - value[("2d", s)][k] for s in (5, 6)]
        m = table["summary"]["2d"]["metrics"][k]
        assert (m["kind"], m["n"]) == ("range", 2) and m["mean"] == pytest.approx(np.mean(two))
        assert (m["min"], m["max"]) == (min(two), max(two))
        d = table["summary"]["3d"]["diff"][k]
        assert d["mean"] == pytest.approx(np.mean(diffs)) and d["pairs"] == [5, 6]
        assert (d["min"], d["max"]) == pytest.approx((min(diffs), max(diffs)))
        assert d["finding"] == (min(diffs) > 0 or max(diffs) < 0)
    md = open(os.path.join(out, "table.md")).read()
    # the seeded table, and the side-resolved one (the demo data records the hidden sides)
    assert md.count("\n| 2d | 2 | ") == 2 and md.count("\n| 3d | 2 | ") == 2
    assert table["group_keys"] == ["colour_hidden", "colour_visible", "colour_edge"]
    for k in table["group_keys"]:
        two = [value[("2d", s)][k] for s in (5, 6)]
        assert table["summary"]["2d"]["metrics"][k]["mean"] == pytest.approx(np.mean(two))
    assert md.count("\n| 2d | 5 | ok |") == 1 and md.count("\n| 3d | 6 | ok |") == 1  # the runs
    assert f"{np.mean([value[('2d', s)]['chamfer'] for s in (5, 6)]):.4f} [" in md
    assert "final chamfer" in md and "\n| floor: ground truth vs an independent resampling" in md
    assert os.path.getsize(os.path.join(out, "ablation_rgb.png")) > 10000
    assert os.path.isfile(tmp_path / "docs" / "fig.png")

    # A longer schedule resumes every run (the training entry point continues from its snapshot);
    # here the training process fails at once: each failure is reported, the next run still runs.
    calls = []

    def failing_train(args, variant, seed=None):
        calls.append((variant.name, seed))
        return [sys.executable, "-c", "import sys; print('first line'); print('boom: no luck'); sys.exit(3)"]

    monkeypatch.setattr(ablation, "train_command", failing_train)
    assert ablation.main([a if a != "4" else "6" for a in argv]) == 1
    text = capsys.readouterr().out
    assert sorted(calls) == runs and text.count("started (resuming at iteration 4 of 6)") == 4
    rows = json.load(open(os.path.join(out, "table.json")))["variants"]
    assert [r["status"] for r in rows] == ["failed: training exited with 3"] * 4
    assert rows[0]["error"] == "first line\nboom: no luck"
    assert "boom: no luck" in open(os.path.join(out, "table.md")).read()
