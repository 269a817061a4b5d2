"""The public renderer API (utils/render): the batched camera, tensor beta, eager mode.

Oracles: numpy pinhole projections written here, hand-computed pixels, central differences,
and the same graph built in this (TF1-style) process compared with a TF2 eager subprocess.
The suite runs in graph mode (conftest.py), so every eager check runs in a subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from utils import render
from utils.common.tfv1 import tf
from utils.render import camera

import tf_ops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPLS = ["local", "fused"] if tf_ops.backend() == "compiled" else ["local"]


def _run_python(code, timeout=120):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# ----------------------------------------------------------------------------- camera
def _views(rng, n):
    """Views like the original data's: azimuth 0..360 deg, elevation -10..40 deg (radians), plus
    the corners of that range."""
    az = np.concatenate([rng.uniform(0, 2 * np.pi, n), [0.0, np.pi / 2, np.pi, 1.5 * np.pi]]).astype(np.float32)
    el = np.concatenate([rng.uniform(np.radians(-10), np.radians(40), n), np.radians([-10.0, 40.0, 0.0, 40.0])]).astype(
        np.float32
    )
    return az, el


@pytest.mark.parametrize("size", [(64, 64), (128, 96)])
def test_az_el_camera_is_bit_identical_to_the_original_camera(sess, rng, size):
    az, el = _views(rng, 12)
    xyz = rng.uniform(-0.5, 0.5, (len(az), 300, 3)).astype(np.float32)
    xyz[:, :3] = [[0.0, 0.0, 0.0], [0.1, 0.2, 2.5], [0.0, 0.0, 2.0]]  # centre; behind / at the camera
    h, w = size
    old = camera.project(tf.constant(xyz), tf.constant(az), tf.constant(el), h, w)
    new = render.Camera.from_az_el(tf.constant(az), tf.constant(el), h, w).project(tf.constant(xyz))
    old_v, new_v = sess.run([old, new])
    assert np.array_equal(old_v, new_v)  # exact, not allclose
    assert (old_v[..., 0] < -1000).any()  # the behind-the-camera rule was exercised


def _pinhole_np(xyz, rot, trans, f_r, f_c, c_r, c_c):
    """Independent numpy pinhole in the renderer's convention (x -> rows, y -> cols, -z forward)."""
    cam = np.einsum("ij,nj->ni", rot, xyz) + trans
    depth = -cam[:, 2]
    return np.stack([c_r + f_r * cam[:, 0] / depth, c_c + f_c * cam[:, 1] / depth, depth], -1)


def test_general_camera_matches_a_numpy_pinhole(sess, rng):
    from scipy.spatial.transform import Rotation

    rot = Rotation.random(3, random_state=1).as_matrix()
    trans = np.array([[0.1, -0.2, -3.0], [0.0, 0.3, -2.5], [-0.2, 0.0, -4.0]])
    f_r, f_c = np.array([100.0, 150.0, 90.0]), np.array([110.0, 140.0, 95.0])
    c_r, c_c = np.array([31.5, 40.0, 20.0]), np.array([30.0, 50.0, 25.0])
    xyz = rng.uniform(-0.5, 0.5, (3, 40, 3))
    cam = render.Camera(rot, trans, f_r, f_c, c_r, c_c, 64, 80)
    out = sess.run(cam.project(tf.constant(xyz, tf.float32)))
    for b in range(3):
        ref = _pinhole_np(xyz[b], rot[b], trans[b], f_r[b], f_c[b], c_r[b], c_c[b])
        np.testing.assert_allclose(out[b], ref, rtol=1e-5, atol=1e-4)


def test_opencv_camera_by_hand(sess):
    # K: fx 100, fy 80, cx 30, cy 20; R = I, t = (0, 0, 5): the camera 5 units before the origin.
    # X = (0.5, -0.25, 0) -> (0.5, -0.25, 5): u (column) = 100 * 0.5 / 5 + 30 = 40,
    # v (row) = 80 * -0.25 / 5 + 20 = 16, depth 5. X = (0, 0, -6) lies behind the camera.
    # Second camera: R rotates 90 deg about z (x_cam = -Y, y_cam = X), t = (0, 0, 4):
    # X = (0.4, 0.2, 0) -> (-0.2, 0.4, 4): u = 100 * -0.2 / 4 + 30 = 25, v = 80 * 0.4 / 4 + 20 = 28.
    K = np.array([[100.0, 0, 30.0], [0, 80.0, 20.0], [0, 0, 1]])
    R = np.stack([np.eye(3), [[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]])
    t = np.array([[0.0, 0, 5], [0, 0, 4]])
    xyz = np.array([[[0.5, -0.25, 0.0], [0.0, 0.0, -6.0]], [[0.4, 0.2, 0.0], [0.0, 0.0, 0.0]]], np.float32)
    out = sess.run(render.Camera.from_opencv(K, R, t, 48, 64).project(tf.constant(xyz)))
    np.testing.assert_allclose(out[0, 0], [16.0, 40.0, 5.0], atol=1e-5)
    np.testing.assert_allclose(out[1, 0], [28.0, 25.0, 4.0], atol=1e-5)
    np.testing.assert_allclose(out[1, 1], [20.0, 30.0, 4.0], atol=1e-5)  # the origin: principal point
    assert out[0, 1, 0] == camera.OFF_IMAGE and out[0, 1, 1] == camera.OFF_IMAGE  # behind: today's rule


def test_camera_broadcasts_one_cloud_to_every_view(sess, rng):
    az, el = _views(rng, 3)
    xyz = rng.uniform(-0.5, 0.5, (50, 3)).astype(np.float32)
    cam = render.Camera.from_az_el(az, el, 64, 64)
    one, tiled = sess.run([cam.project(xyz), cam.project(np.repeat(xyz[None], len(az), 0))])
    assert one.shape == (len(az), 50, 3) and np.array_equal(one, tiled)


def test_camera_rejects_bad_shapes():
    with pytest.raises(ValueError, match="rotation must have shape"):
        render.Camera(np.eye(3), np.zeros((1, 3)), 1.0, 1.0, 0.0, 0.0, 8, 8)
    with pytest.raises(ValueError, match="img_h and img_w"):
        render.Camera(np.eye(3)[None], np.zeros((1, 3)), 1.0, 1.0, 0.0, 0.0, 0, 8)


# ----------------------------------------------------------------------------- tensor beta
def _crowded_pix(rng, batch=2, n=40, size=6):
    """Points crowded into a small image so wells hold several points of different depths."""
    row = rng.uniform(0.5, size - 1.5, (batch, n))
    col = rng.uniform(0.5, size - 1.5, (batch, n))
    depth = rng.uniform(1.5, 2.5, (batch, n))
    return np.stack([row, col, depth], -1)


@pytest.mark.parametrize("impl", ["auto", "local", "dense"])
def test_tensor_beta_gradient_matches_finite_differences(sess, rng, impl, finite_difference):
    pix = _crowded_pix(rng)
    feat = rng.uniform(0, 1, (2, 40, 3))
    weights = rng.normal(size=(2, 6, 6, 3))
    beta = tf.placeholder(tf.float64, [])
    out, _ = render.feature_projection(tf.constant(pix), tf.constant(feat), 6, 6, beta=beta, impl=impl)
    loss = tf.reduce_sum(out * weights)
    grad = tf.gradients(loss, beta)[0]
    for b0 in (0.0, 7.0, 30.0):
        g = sess.run(grad, {beta: b0})
        ref = finite_difference(sess, loss, beta, np.array(b0), eps=1e-5)
        assert abs(ref) > 1e-4  # the loss does depend on beta here
        np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("impl", IMPLS)
def test_tensor_beta_gives_the_values_of_a_number_beta(sess, rng, impl):
    pix, feat = _crowded_pix(rng), rng.uniform(0, 1, (2, 40, 3))
    by_number = render.feature_projection(pix, feat, 6, 6, beta=37.0, impl=impl)
    by_tensor = render.feature_projection(pix, feat, 6, 6, beta=tf.constant(37.0, tf.float64), impl=impl)
    per_view = render.feature_projection(pix, feat, 6, 6, beta=tf.constant([[37.0], [0.0]], tf.float64), impl=impl)
    depth_blind = render.feature_projection(pix, feat, 6, 6, beta=0.0, impl=impl)
    a, b, c, d = sess.run([by_number[0], by_tensor[0], per_view[0], depth_blind[0]])
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c[0], a[0], rtol=1e-12, atol=1e-12)  # (B, 1) beta: one per view
    np.testing.assert_allclose(c[1], d[1], rtol=1e-12, atol=1e-12)
    assert not np.allclose(a[1], d[1])  # beta matters on these crowded wells


def test_sigma_sq_must_be_a_number():
    with pytest.raises(ValueError, match="sigma_sq must be a Python number > 0"):
        render.mask_projection(tf.zeros([1, 2, 3]), 8, 8, sigma_sq=tf.constant(0.4))


def test_features_have_zero_gradient_wrt_row_and_column(sess, rng):
    pix = tf.constant(_crowded_pix(rng))
    out, _ = render.feature_projection(pix, rng.uniform(0, 1, (2, 40, 3)), 6, 6, beta=tf.constant(50.0, tf.float64))
    g = sess.run(tf.gradients(tf.reduce_sum(out * rng.normal(size=(2, 6, 6, 3))), pix)[0])
    assert np.all(g[..., :2] == 0) and np.any(g[..., 2] != 0)


# ----------------------------------------------------------------------------- eager mode
EAGER_SCRIPT = """
    import numpy as np
    import utils.render as render
    import tensorflow as tf
    out = dict(eager_after_import=tf.executing_eagerly(), eager_outside_functions=
               tf.compat.v1.executing_eagerly_outside_functions())
    import utils.common.tfv1, utils.losses, utils.metrics  # below the renderer: no switch either
    out["eager_after_more_imports"] = tf.executing_eagerly()
    d = np.load({inputs!r})
    xyz, feat, az, el = (tf.Variable(d[k]) for k in ("xyz", "feat", "az", "el"))
    beta = tf.Variable(40.0)
    res = {{}}
    for impl in {impls!r}:
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                pix = render.Camera.from_az_el(az, el, 16, 16).project(xyz)
                mask = render.mask_projection(pix, 16, 16, 0.4, impl=impl)
                rgb, cov = render.feature_projection(pix, feat, 16, 16, beta=beta, impl=impl)
                rgb2, _ = render.feature_projection(pix, feat, 16, 16, beta=40.0, impl=impl)
                loss = (tf.reduce_sum(mask * d["w_mask"]) + tf.reduce_sum(rgb * d["w_rgb"])
                        + tf.reduce_sum(rgb2 * d["w_rgb"]))
            return [mask, rgb, rgb2] + tape.gradient(loss, [xyz, feat, beta])
        for name, v in zip(("mask", "rgb", "rgb2", "g_xyz", "g_feat", "g_beta"), step()):
            res[impl + "_" + name] = v.numpy()
    np.savez({outputs!r}, **res)
    out["switch_first"], out["switch_again"] = utils.common.tfv1.use_graph_mode(), utils.common.tfv1.use_graph_mode()
    out["eager_after_switch"] = tf.executing_eagerly()
    import json
    print(json.dumps(out))
"""


def _scene(rng, n_views=3, n=120):
    return dict(
        xyz=rng.uniform(-0.4, 0.4, (n_views, n, 3)).astype(np.float32),
        feat=rng.uniform(0, 1, (n_views, n, 3)).astype(np.float32),
        az=rng.uniform(0, 2 * np.pi, n_views).astype(np.float32),
        el=rng.uniform(-0.2, 0.6, n_views).astype(np.float32),
        w_mask=rng.normal(size=(n_views, 16, 16)).astype(np.float32),
        w_rgb=rng.normal(size=(n_views, 16, 16, 3)).astype(np.float32),
    )


def test_eager_and_graph_give_the_same_values_and_gradients_and_import_keeps_eager_mode(sess, rng, tmp_path):
    scene = _scene(rng)
    np.savez(tmp_path / "in.npz", **scene)
    stdout = _run_python(
        EAGER_SCRIPT.format(inputs=str(tmp_path / "in.npz"), outputs=str(tmp_path / "out.npz"), impls=IMPLS)
    )
    flags = json.loads(stdout.strip().splitlines()[-1])
    assert flags == dict(
        eager_after_import=True,
        eager_outside_functions=True,
        eager_after_more_imports=True,
        switch_first=True,
        switch_again=False,
        eager_after_switch=False,
    )  # use_graph_mode switches
    eager = np.load(tmp_path / "out.npz")
    # the same computation as a TF1-style graph in this process
    xyz, feat = tf.constant(scene["xyz"]), tf.constant(scene["feat"])
    beta = tf.constant(40.0)
    for impl in IMPLS:
        pix = render.Camera.from_az_el(scene["az"], scene["el"], 16, 16).project(xyz)
        mask = render.mask_projection(pix, 16, 16, 0.4, impl=impl)
        rgb, _ = render.feature_projection(pix, feat, 16, 16, beta=beta, impl=impl)
        rgb2, _ = render.feature_projection(pix, feat, 16, 16, beta=40.0, impl=impl)
        loss = (
            tf.reduce_sum(mask * scene["w_mask"])
            + tf.reduce_sum(rgb * scene["w_rgb"])
            + tf.reduce_sum(rgb2 * scene["w_rgb"])
        )
        graph = sess.run([mask, rgb, rgb2] + tf.gradients(loss, [xyz, feat, beta]))
        for name, g in zip(("mask", "rgb", "rgb2", "g_xyz", "g_feat", "g_beta"), graph):
            e = eager[f"{impl}_{name}"]
            assert np.any(g != 0), (impl, name)
            # float32: sums of many terms, accumulated in another order by tf.function's graph
            np.testing.assert_allclose(e, g, rtol=1e-4, atol=1e-4 * np.abs(g).max(), err_msg=f"{impl} {name}")


# ----------------------------------------------------------------------------- the tutorial
FIT_STEPS, FIT_FACTOR = 300, 1.5


def test_fit_example_reduces_chamfer(tiny_data, tmp_path):
    """examples/fit_cloud_to_views.py on a tiny case: the Chamfer distance to the GT falls by at
    least FIT_FACTOR from the initial ball in FIT_STEPS steps (measured: 0.191 -> 0.107, 1.8x; with
    the renderer's gradients cut the fit stays near the ball)."""
    out = tmp_path / "fit.json"
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [
        sys.executable,
        os.path.join(ROOT, "examples", "fit_cloud_to_views.py"),
        "--data_dir",
        tiny_data,
        "--split",
        "train",
        "--n_views",
        "4",
        "--n_pts",
        "256",
        "--steps",
        str(FIT_STEPS),
        "--lr",
        "0.01",
        "--log_every",
        "100",
        "--figure",
        str(tmp_path / "fit.png"),
        "--json",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["initial_chamfer"] / res["chamfer"] >= FIT_FACTOR, res
    assert (tmp_path / "fit.png").stat().st_size > 1000
    assert "chamfer" in proc.stdout and "step   300" in proc.stdout


@pytest.fixture
def fit():
    """The fit of the tutorial (examples/fit_cloud_to_views.py is its door)."""
    from utils import fit

    return fit


def test_fit_example_help_and_missing_data(fit, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        fit.main(["--help"])
    assert stop.value.code == 0 and "--losses" in capsys.readouterr().out
    assert fit.main(["--data_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no chair data in {tmp_path}" in err and "make_demo_data.py" in err
    with pytest.raises(SystemExit):
        fit.main(["--steps", "0"])
    assert "--steps must be >= 1" in capsys.readouterr().err


def test_fit_example_chamfer_matches_brute_force(fit, rng):
    """The fit's Chamfer (utils.metrics through tf_ops) against a brute-force numpy computation of the metric."""
    a, b = rng.uniform(-1, 1, (60, 3)), rng.uniform(-0.5, 2, (45, 3))

    def unit(p):
        lo, hi = p.min(0), p.max(0)
        return (p - (lo + hi) / 2) / (hi - lo).max()

    d = np.linalg.norm(unit(a)[:, None] - unit(b)[None], axis=-1)
    total, fwd, bwd = fit.chamfer(a, b)
    np.testing.assert_allclose(
        [fwd, bwd, total], [d.min(1).mean(), d.min(0).mean(), d.min(1).mean() + d.min(0).mean()], rtol=1e-5
    )  # float32
