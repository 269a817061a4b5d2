"""The ablation script (benchmarks/ablation.py): its variants' flags, what they change in the graph,
and one tiny end-to-end run with a re-run that must not retrain."""
import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from utils.train import config
from utils.render import projection
from utils.tfv1 import tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation", os.path.join(ROOT, "benchmarks", "ablation.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_args(ablation, task, name, extra=()):
    """The Namespace the training subprocess of variant ``name`` would parse."""
    a = ablation.parse_args(["--task", task, "--iters", "123", "--seed", "7", "--out", "/tmp/x", "--data_dir", "/tmp/d"])
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
        assert a.data_dir == "/tmp/d" and a.exp == os.path.join("/tmp/x", name)
    rec = config.RECOMMENDED
    two_d = args["2d"]
    assert (two_d.preset, two_d.USE_3D_LOSS, two_d.BETA, two_d.batch_size) == ("recommended", False, rec["BETA"], 8)
    assert min(two_d.wt_bce, two_d.wt_aff_fwd, two_d.wt_aff_bwd, two_d.wt_aff_pts, getattr(two_d, feat_wt)) > 0
    three_d = args["3d"]
    assert three_d.USE_3D_LOSS and three_d.wt_3d > 0
    assert [three_d.wt_bce, three_d.wt_aff_fwd, three_d.wt_aff_bwd, three_d.wt_aff_pts,
            getattr(three_d, feat_wt)] == [0, 0, 0, 0, 0]
    assert args["2d+3d"].USE_3D_LOSS and args["2d+3d"].wt_bce == rec["wt_bce"]
    assert args["depth-unaware"].BETA == 0 and args["depth-unaware"].wt_aff_fwd == rec["wt_aff_fwd"]
    no_aff = args["no-affinity"]
    assert [no_aff.wt_aff_fwd, no_aff.wt_aff_bwd, no_aff.wt_aff_pts] == [0, 0, 0] and no_aff.wt_bce == rec["wt_bce"]
    orig = args["original"]  # the preset's own settings, the demo's schedule
    assert (orig.preset, orig.batch_size, orig.lr, orig.affinity) == ("original", 1, 5e-5, "original")


def _small_graph(ablation, name):
    from rgb.task import TASK
    from utils.model import build_graph
    args = _train_args(ablation, "rgb", name, ["--N_VIEWS", "2", "--N_PTS", "64", "--IMG_H", "16", "--IMG_W", "16",
                                               "--bottleneck", "8"])
    tf.set_random_seed(1)
    return build_graph(args, TASK, batch_size=2, n_gt_pts=32)


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
        batch = dict(image=rng.random((2, 16, 16, 3)), mask=np.ones((2, 2, 16, 16)), dist=np.zeros((2, 2, 16, 16)),
                     az=rng.random((2, 2)), el=rng.random((2, 2)), pcl=rng.random((2, 32, 3)) - 0.5,
                     rgb=rng.random((2, 2, 16, 16, 3)), pcl_rgb=rng.random((2, 32, 3)))
        gf, t = sess.run([grad_feat, g.terms], g.feed(batch))
    assert np.abs(gf).max() > 0
    # the 2D terms are still computed (logged), but only the 3D ones and weight decay make the loss
    np.testing.assert_allclose(t["total"], t["chamfer_3d"] + t["feat_3d"] + config.RECOMMENDED["wt_decay"] * t["decay"],
                               rtol=1e-5)
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
def test_two_variants_end_to_end_and_rerun_does_not_retrain(ablation, tiny_data, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "ablation")
    argv = ["--task", "rgb", "--variants", "2d,3d", "--iters", "4", "--data_dir", tiny_data, "--out", out,
            "--n_pictures", "1", "--copy_figure", str(tmp_path / "docs" / "fig.png")]
    assert ablation.main(argv) == 0
    first = capsys.readouterr().out
    table = json.load(open(os.path.join(out, "table.json")))
    assert [r["variant"] for r in table["variants"]] == ["2d", "3d"]
    for r in table["variants"]:
        assert r["status"] == "ok" and r["iterations"] == 4, r
        for k in ("chamfer", "emd", "colour"):
            assert np.isfinite(r["metrics"][k]), (r["variant"], k)
            assert np.isfinite(r["final_metrics"][k]), (r["variant"], k)  # the last snapshot too
    assert np.isfinite(table["baseline"]["metrics"]["chamfer"])
    assert 0 < table["floor"]["metrics"]["chamfer"] < table["baseline"]["metrics"]["chamfer"]
    md = open(os.path.join(out, "table.md")).read()
    assert md.count("\n| 2d |") == 1 and md.count("\n| 3d |") == 1
    assert "final chamfer" in md and "\n| floor: ground truth vs an independent resampling" in md
    assert os.path.getsize(os.path.join(out, "ablation_rgb.png")) > 10000
    assert os.path.isfile(tmp_path / "docs" / "fig.png")
    assert first.count(": started (training 4 iterations)") == 2 and first.count(": finished in ") == 2

    # Re-run: nothing is trained or evaluated again (no new log lines, snapshots untouched).
    logs = {v: os.path.getsize(os.path.join(out, v, name)) for v in ("2d", "3d") for name in ("train.log", "metrics.log")}
    snaps = {v: os.path.getmtime(os.path.join(out, v, "snapshots", "latest.json")) for v in ("2d", "3d")}
    assert ablation.main(argv) == 0
    assert capsys.readouterr().out.count("already trained (4 iterations) and evaluated; reused") == 2
    assert {v: os.path.getsize(os.path.join(out, v, name))
            for v in ("2d", "3d") for name in ("train.log", "metrics.log")} == logs
    assert {v: os.path.getmtime(os.path.join(out, v, "snapshots", "latest.json")) for v in ("2d", "3d")} == snaps

    # A longer schedule resumes both (the training entry point continues from its snapshot); here
    # the training process fails at once: each failure is reported, the next variant still runs.
    calls = []

    def failing_train(args, variant):
        calls.append(variant.name)
        return [sys.executable, "-c", "import sys; print('first line'); print('boom: no luck'); sys.exit(3)"]
    monkeypatch.setattr(ablation, "train_command", failing_train)
    assert ablation.main([a if a != "4" else "6" for a in argv]) == 1
    text = capsys.readouterr().out
    assert calls == ["2d", "3d"] and text.count("started (resuming at iteration 4 of 6)") == 2
    rows = json.load(open(os.path.join(out, "table.json")))["variants"]
    assert [r["status"] for r in rows] == ["failed: training exited with 3"] * 2
    assert rows[0]["error"] == "first line\nboom: no luck"
    assert "boom: no luck" in open(os.path.join(out, "table.md")).read()
