"""tf_ops fused projections and pixel_nearest: against the float64 numpy references of
tf_ops/reference.py (dense, written differently from the kernels) and against the graph-op
implementations of utils/render/projection.py (local, dense); gradients against the references and
finite differences; independence of the CPU thread count; the fallback without the library;
bad input. (tests/test_projection.py runs its known-answer tests on 'fused' too.)"""

import os
import warnings

import numpy as np
import pytest

from utils import losses
from utils.common.tfv1 import tf
from utils.render import camera
from utils.render import projection as proj

import tf_ops
from tf_ops import build, reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGMA_SQ, RADIUS, BETA = 0.4, 1.0, 100.0


@pytest.fixture(scope="module", autouse=True)
def compiled_ops():
    build.build(quiet=True)
    if tf_ops.backend() != "compiled":
        pytest.fail(f"compiled tf_ops not in use: {tf_ops.load_error()}")


def scene(rng, batch, n_pts, h, w):
    """float32 (B, N, 3) projected points covering the hard cases: uniform in and around the
    image, integral coordinates (pixel centres: well ties at distance exactly 1, window edges),
    half-integral ones (round-half-to-even of the Gaussian window), points behind the camera
    (camera.OFF_IMAGE) and far off-image, and groups of points sharing a well AND a depth
    (softmax ties)."""
    pix = np.empty((batch, n_pts, 3))
    pix[..., 0] = rng.uniform(-4, h + 4, (batch, n_pts))
    pix[..., 1] = rng.uniform(-4, w + 4, (batch, n_pts))
    pix[..., 2] = rng.uniform(0.5, 3.0, (batch, n_pts))
    if n_pts < 10:
        pix[:, ::2, :2] = np.round(pix[:, ::2, :2])
        return pix.astype(np.float32)
    k = n_pts // 10
    pix[:, :k, :2] = rng.integers(-2, min(h, w) + 2, (batch, k, 2))
    pix[:, k : 2 * k, :2] = rng.integers(-2, min(h, w) + 2, (batch, k, 2)) + 0.5
    pix[:, 2 * k : 2 * k + 2, :2] = camera.OFF_IMAGE
    pix[:, 2 * k : 2 * k + 2, 2] = camera.MIN_DEPTH
    pix[:, 2 * k + 2, :2] = [3e4, -2e4]
    ties = np.arange(2 * k + 3, 3 * k + 3)
    src = rng.integers(0, n_pts, len(ties))
    pix[:, ties, :2] = pix[:, src, :2] + rng.uniform(-0.3, 0.3, (batch, len(ties), 2))
    pix[:, ties, 2] = 1.25  # exactly representable: equal logits
    return pix.astype(np.float32)


def run_fused(sess, pix, feat, h, w, w_mask, w_map, dtype=tf.float32):
    """Fused forward outputs and the gradients of sum(w_mask * mask) and sum(w_map * feat_map)."""
    p = tf.constant(pix, dtype)
    f = tf.constant(feat, dtype)
    mask = tf_ops.mask_projection(p, h, w, SIGMA_SQ)
    fmap, cov = tf_ops.feature_projection(p, f, h, w, RADIUS, BETA)
    g_mask = tf.gradients(tf.reduce_sum(mask * tf.constant(w_mask, dtype)), p)[0]
    g_pix, g_feat = tf.gradients(tf.reduce_sum(fmap * tf.constant(w_map, dtype)), [p, f])
    return sess.run(dict(mask=mask, fmap=fmap, cov=cov, g_mask=g_mask, g_pix=g_pix, g_feat=g_feat))


def assert_grad_close(got, want, rel, what):
    scale = np.abs(want).max()
    assert np.all(np.isfinite(got)), what
    np.testing.assert_allclose(got, want, rtol=0, atol=rel * max(scale, 1e-12), err_msg=what)


# ------------------------------------------------------------------------ against numpy
@pytest.mark.parametrize(
    "batch,n_pts,h,w", [(1, 1, 1, 1), (2, 7, 5, 9), (3, 300, 32, 32), (2, 1000, 29, 64), (1, 16384, 128, 128)]
)
def test_fused_projections_match_numpy_reference(sess, rng, batch, n_pts, h, w):
    pix = scene(rng, batch, n_pts, h, w)
    feat = rng.uniform(size=(batch, n_pts, 3)).astype(np.float32)
    w_mask = rng.normal(size=(batch, h, w)).astype(np.float32)
    w_map = rng.normal(size=(batch, h, w, 3)).astype(np.float32)
    got = run_fused(sess, pix, feat, h, w, w_mask, w_map)
    for b in range(batch):
        np.testing.assert_allclose(got["mask"][b], reference.mask_projection(pix[b], h, w, SIGMA_SQ), rtol=0, atol=1e-5)
        fmap, cov = reference.feature_projection(pix[b], feat[b], h, w, RADIUS, BETA)
        np.testing.assert_allclose(got["fmap"][b], fmap, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(got["cov"][b], cov)
        assert_grad_close(
            got["g_mask"][b], reference.mask_projection_grad(pix[b], h, w, SIGMA_SQ, w_mask[b]), 1e-4, "mask gradient"
        )
        g_pix, g_feat = reference.feature_projection_grad(pix[b], feat[b], h, w, RADIUS, BETA, w_map[b])
        assert_grad_close(got["g_pix"][b], g_pix, 1e-4, "feature gradient w.r.t. pix")
        assert_grad_close(got["g_feat"][b], g_feat, 1e-4, "feature gradient w.r.t. feat")
    if n_pts >= 300:  # the scene exercises what it claims to
        assert 0.05 < got["cov"].mean() < 0.99 and np.abs(got["g_pix"][..., 2]).max() > 0


def test_fused_float64_matches_numpy_reference_tightly(sess, rng):
    pix = scene(rng, 2, 200, 24, 20).astype(np.float64)
    feat = rng.uniform(size=(2, 200, 4))
    w_mask, w_map = rng.normal(size=(2, 24, 20)), rng.normal(size=(2, 24, 20, 4))
    got = run_fused(sess, pix, feat, 24, 20, w_mask, w_map, tf.float64)
    assert got["mask"].dtype == np.float64 and got["g_feat"].dtype == np.float64
    for b in range(2):
        fmap, _ = reference.feature_projection(pix[b], feat[b], 24, 20, RADIUS, BETA)
        np.testing.assert_allclose(got["fmap"][b], fmap, rtol=0, atol=1e-12)
        g_pix, g_feat = reference.feature_projection_grad(pix[b], feat[b], 24, 20, RADIUS, BETA, w_map[b])
        assert_grad_close(got["g_pix"][b], g_pix, 1e-10, "pix")
        assert_grad_close(got["g_feat"][b], g_feat, 1e-10, "feat")
        # the mask drops the Gaussian tail beyond the window (< 1e-6 of the peak per axis)
        np.testing.assert_allclose(got["mask"][b], reference.mask_projection(pix[b], 24, 20, SIGMA_SQ), atol=2e-6)


# ------------------------------------------------------------------ against local and dense
def _graph_impls(sess, rng, impls, batch, n_pts, size):
    pix_np = scene(rng, batch, n_pts, size, size)
    pix = tf.constant(pix_np)
    feat = tf.constant(rng.uniform(size=(batch, n_pts, 3)).astype(np.float32))
    probs = tf.constant(rng.dirichlet(np.ones(4), (batch, n_pts)).astype(np.float32))
    w_mask = tf.constant(rng.normal(size=(batch, size, size)).astype(np.float32))
    w_rgb = tf.constant(rng.normal(size=(batch, size, size, 3)).astype(np.float32))
    w_part = tf.constant(rng.normal(size=(batch, size, size, 5)).astype(np.float32))
    outs = {}
    for impl in impls:
        mask = proj.mask_projection(pix, size, size, SIGMA_SQ, impl=impl)
        rgb, cov = proj.feature_projection(pix, feat, size, size, RADIUS, BETA, impl=impl)
        part, _ = proj.part_projection(pix, probs, size, size, RADIUS, BETA, impl=impl)
        outs[impl] = dict(
            mask=mask,
            rgb=rgb,
            cov=cov,
            part=part,
            g_mask=tf.gradients(tf.reduce_sum(mask * w_mask), pix)[0],
            g_feat=tf.gradients(tf.reduce_sum(rgb * w_rgb) + tf.reduce_sum(part * w_part), [pix, feat, probs]),
        )
    return sess.run(outs)


@pytest.mark.parametrize("batch,n_pts,size", [(3, 300, 32), (1, 1024, 64), (1, 57, 13)])
def test_fused_equals_dense_and_local(sess, rng, batch, n_pts, size):
    """The issue's bar: fused vs dense values within 1e-5, gradients within 1e-4 relative."""
    res = _graph_impls(sess, rng, ["dense", "local", "fused"], batch, n_pts, size)
    fused = res["fused"]
    for ref in ("dense", "local"):
        for key in ("mask", "rgb", "cov", "part"):
            np.testing.assert_allclose(fused[key], res[ref][key], rtol=0, atol=1e-5, err_msg=f"{key} vs {ref}")
        assert_grad_close(fused["g_mask"], res[ref]["g_mask"], 1e-4, f"mask gradient vs {ref}")
        for g_f, g_r in zip(fused["g_feat"], res[ref]["g_feat"]):
            assert_grad_close(g_f, g_r, 1e-4, f"feature gradients vs {ref}")


def test_fused_equals_local_at_128_with_16384_points(sess, rng):
    """Too big for dense (the numpy reference covers it in test_fused_projections_match_numpy_reference)."""
    res = _graph_impls(sess, rng, ["local", "fused"], 1, 16384, 128)
    for key in ("mask", "rgb", "cov", "part"):
        np.testing.assert_allclose(res["fused"][key], res["local"][key], rtol=0, atol=1e-5, err_msg=key)
    assert_grad_close(res["fused"]["g_mask"], res["local"]["g_mask"], 1e-4, "mask gradient")
    for g_f, g_l in zip(res["fused"]["g_feat"], res["local"]["g_feat"]):
        assert_grad_close(g_f, g_l, 1e-4, "feature gradients")


def test_fused_gradients_match_finite_differences_near_window_edges(sess, rng, finite_difference):
    """float64, points near (not on) the places where the windows change, overlapping wells."""
    size, n_pts = 9, 7
    pix0 = np.stack([rng.uniform(0.6, 7.4, n_pts), rng.uniform(0.6, 7.4, n_pts), rng.uniform(0.8, 2.0, n_pts)], -1)
    pix0[1, :2] = pix0[0, :2] + [0.4, -0.3]
    pix0[2, :2] = [4.49, 3.51]  # just off a rounding boundary / just inside a well edge
    pix0 = pix0[None]
    feat = tf.constant(rng.uniform(size=(1, n_pts, 2)))
    pix = tf.placeholder(tf.float64, pix0.shape)
    mask = tf_ops.mask_projection(pix, size, size, SIGMA_SQ)
    fmap, _ = tf_ops.feature_projection(pix, feat, size, size, RADIUS, 2.0)
    loss = tf.reduce_sum(mask * tf.constant(rng.normal(size=(1, size, size)))) + tf.reduce_sum(
        fmap * tf.constant(rng.normal(size=(1, size, size, 2)))
    )
    got = sess.run(tf.gradients(loss, pix)[0], {pix: pix0})
    np.testing.assert_allclose(got, finite_difference(sess, loss, pix, pix0), atol=1e-6)
    assert np.abs(got[..., 2]).max() > 1e-3 and np.abs(got[..., :2]).max() > 1e-2


def test_empty_and_degenerate_inputs(sess):
    zero_pts = tf_ops.mask_projection(tf.zeros([2, 0, 3]), 4, 5)
    fmap, cov = tf_ops.feature_projection(tf.zeros([2, 0, 3]), tf.zeros([2, 0, 3]), 4, 5)
    m, f, c = sess.run([zero_pts, fmap, cov])
    assert m.shape == (2, 4, 5) and f.shape == (2, 4, 5, 3) and not m.any() and not f.any() and not c.any()
    # non-finite coordinates touch no pixel; NaN does not poison the others
    pix = tf.constant([[[2.0, 2.0, 1.0], [np.nan, 1.0, 1.0], [np.inf, 2.0, 1.0], [1.0, 1.0, np.nan]]])
    feat = tf.constant(np.eye(4, 3, dtype=np.float32)[None])
    mask = tf_ops.mask_projection(pix, 5, 5)
    fmap, cov = tf_ops.feature_projection(pix, feat, 5, 5)
    grads = tf.gradients(tf.reduce_sum(mask) + tf.reduce_sum(fmap), [pix, feat])
    m, f, c, gp, gf = sess.run([mask, fmap, cov] + grads)
    for v in (m, f, gp, gf):
        assert np.all(np.isfinite(v))
    finite_pts = np.array([[2.0, 2.0, 1.0], [1.0, 1.0, 1.0]])  # the mask ignores depth
    np.testing.assert_allclose(m[0], reference.mask_projection(finite_pts, 5, 5, SIGMA_SQ), atol=1e-6)
    np.testing.assert_array_equal(c[0, 1:4, 1:4], 1)  # the NaN-depth point has no logit: only point 0
    assert c.sum() == 9 and np.all(f[0, 1:4, 1:4] == [1, 0, 0])
    np.testing.assert_array_equal(gp[0, 1:3], 0)


# ------------------------------------------------------------------------ pixel_nearest
def nearest_scene(rng, batch, n_pts, h, w):
    pts = np.stack(
        [
            rng.uniform(-10, h + 10, (batch, n_pts)),
            rng.uniform(-10, w + 10, (batch, n_pts)),
            rng.uniform(1, 2, (batch, n_pts)),
        ],
        -1,
    )
    k = max(1, n_pts // 8)
    # integral and half-integral coordinates: exact ties between points, points on cell borders
    pts[:, :k, :2] = rng.integers(-3, min(h, w) + 3, (batch, k, 2)) + rng.choice([0.0, 0.5], (batch, k, 2))
    if n_pts >= 8:
        pts[:, k : k + 2, :2] = camera.OFF_IMAGE
        pts[:, k + 2, :2] = [h + 40.0, -30.0]  # beyond the margin cells, within the cap
    return pts.astype(np.float32)


def check_nearest(idx, pts, query, cap):
    """idx is a nearest point (reference distance) wherever the reference finds one within the cap;
    indices equal where the nearest point is unique."""
    ref_idx, ref_d = reference.pixel_nearest(pts, query, cap)
    np.testing.assert_array_equal(idx < 0, ref_idx < 0)
    hit = idx >= 0
    p64 = pts.astype(np.float64)
    rows, cols = np.nonzero(hit)
    d = (rows - p64[idx[hit], 0]) ** 2 + (cols - p64[idx[hit], 1]) ** 2
    np.testing.assert_allclose(d, ref_d[hit], rtol=1e-12, atol=0)
    return np.mean(idx[hit] == ref_idx[hit]) if hit.any() else 1.0


@pytest.mark.parametrize(
    "batch,n_pts,h,w",
    [(1, 1, 1, 1), (2, 5, 3, 7), (3, 64, 16, 16), (4, 1024, 64, 64), (1, 300, 17, 53), (1, 16384, 128, 128)],
)
def test_pixel_nearest_matches_brute_force(sess, rng, batch, n_pts, h, w):
    pts = nearest_scene(rng, batch, n_pts, h, w)
    query = (rng.uniform(size=(batch, h, w)) < 0.6).astype(np.float32)
    cap = float(h * h + w * w)
    pts_t = tf.constant(pts)
    dist, idx = tf_ops.pixel_nearest(pts_t, query, cap)
    g_dist = rng.normal(size=(batch, h, w)).astype(np.float32)
    dist, idx, grad = sess.run([dist, idx, tf.gradients(tf.reduce_sum(tf.minimum(dist, cap) * g_dist), pts_t)[0]])
    assert idx.dtype == np.int32 and idx.shape == (batch, h, w) and dist.dtype == np.float32
    for b in range(batch):
        assert check_nearest(idx[b], pts[b], query[b], cap) > 0.99
        # dist: the squared distance to the returned point, +inf where none; gradient 2 g (point - pixel)
        rows, cols = np.nonzero(idx[b] >= 0)
        near = pts[b].astype(np.float64)[idx[b][rows, cols]]
        np.testing.assert_allclose(dist[b][rows, cols], (near[:, 0] - rows) ** 2 + (near[:, 1] - cols) ** 2, rtol=1e-6)
        assert np.all(np.isinf(dist[b][idx[b] < 0]))
        want = np.zeros((n_pts, 3))
        g = 2 * g_dist[b][rows, cols]
        np.add.at(want[:, 0], idx[b][rows, cols], g * (near[:, 0] - rows))
        np.add.at(want[:, 1], idx[b][rows, cols], g * (near[:, 1] - cols))
        np.testing.assert_allclose(grad[b], want, rtol=1e-5, atol=1e-5 * max(np.abs(want).max(), 1.0))


def test_pixel_nearest_ties_cap_and_degenerate_clouds(sess):
    h = w = 12
    query = np.ones((1, h, w), np.float32)
    # two points mirrored around pixel row 5 (distance exactly 1): the smaller index wins
    pts = np.array([[[6.0, 4.0, 1], [4.0, 4.0, 1]]], np.float32)
    assert sess.run(tf_ops.pixel_nearest(pts, query)[1])[0, 5, 4] == 0
    pts = np.array([[[4.0, 4.0, 1], [6.0, 4.0, 1]]], np.float32)
    assert sess.run(tf_ops.pixel_nearest(pts, query)[1])[0, 5, 4] == 0
    # the cap: 3.5 px away is beyond a cap of 12 px^2, 3 px is within (inclusive)
    pts = np.array([[[0.0, 0.0, 1]]], np.float32)
    idx = sess.run(tf_ops.pixel_nearest(pts, query, max_dist_sq=9.0)[1])
    assert idx[0, 3, 0] == 0 and idx[0, 0, 3] == 0 and idx[0, 3, 1] == -1 and idx[0, 2, 2] == 0
    # the query mask
    q = np.zeros((1, h, w), np.float32)
    q[0, 2, 3] = 1
    idx = sess.run(tf_ops.pixel_nearest(pts, q)[1])
    assert idx[0, 2, 3] == 0 and (idx == -1).sum() == h * w - 1
    # every point far away in one spot (the search falls back to scanning all points), NaN points,
    # no usable point at all, no point at all
    far = np.full((2, 300, 3), [-25.0, 70.0, 1.0], np.float32)
    far[:, ::7] = np.nan
    far[1] = np.nan
    idx = sess.run(tf_ops.pixel_nearest(far, np.ones((2, h, w), np.float32), 1e4)[1])
    assert check_nearest(idx[0], far[0], np.ones((h, w)), 1e4) == 1.0  # first index of the spot
    assert np.all(idx[1] == -1)
    dist, none = sess.run(tf_ops.pixel_nearest(np.zeros((1, 0, 3), np.float32), query))
    assert np.all(none == -1) and np.all(np.isinf(dist))


def test_affinity_bwd_matches_brute_force_at_demo_size(sess, rng):
    """utils.losses.affinity_bwd (pixel_nearest + gather) = numpy brute force, value and gradient."""
    batch, n_pts, size = 4, 1024, 64
    pix = nearest_scene(rng, batch, n_pts, size, size)
    pix[..., :2] = 0.3 * pix[..., :2] + 0.35 * size  # a cloud smaller than the silhouette
    gt = np.zeros((batch, size, size), np.float32)
    gt[:, 10:50, 14:46] = 1
    gt[1] = rng.uniform(size=(size, size)) < 0.5
    pix_t = tf.constant(pix)
    loss = losses.affinity_bwd(pix_t, tf.constant(gt))
    got, grad = sess.run([loss, tf.gradients(loss, pix_t)[0]])
    cap = 2.0 * size * size
    want, want_grad = 0.0, np.zeros(pix.shape)
    for b in range(batch):
        idx, d = reference.pixel_nearest(pix[b], gt[b], np.inf)
        fg = gt[b] > 0
        want += np.minimum(d[fg], cap).sum()
        rows, cols = np.nonzero(fg & (d < cap))
        j = idx[rows, cols]
        np.add.at(want_grad[b, :, 0], j, 2 * (pix[b, j, 0].astype(np.float64) - rows))
        np.add.at(want_grad[b, :, 1], j, 2 * (pix[b, j, 1].astype(np.float64) - cols))
    n = batch * size * size
    np.testing.assert_allclose(got, want / n, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad / n, rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------------ determinism
_THREADS_SCRIPT = r"""
import sys
import numpy as np
import tf_ops
from utils.common.tfv1 import tf, use_graph_mode
use_graph_mode()
data = np.load(sys.argv[1])
p, f = tf.constant(data["pix"]), tf.constant(data["feat"])
h, w = data["query"].shape[1:]
mask = tf_ops.mask_projection(p, h, w, 0.4)
fmap, cov = tf_ops.feature_projection(p, f, h, w, 1.0, 100.0)
dist, idx = tf_ops.pixel_nearest(p, data["query"])
loss = (tf.reduce_sum(mask * data["w_mask"]) + tf.reduce_sum(fmap * data["w_map"])
        + tf.reduce_sum(tf.minimum(dist, 50.0)))
# the first session of a process sizes TensorFlow's (process-wide) intra-op thread pool
config = tf.ConfigProto(intra_op_parallelism_threads=int(sys.argv[2]), inter_op_parallelism_threads=1)
with tf.Session(config=config) as s:
    out = s.run([mask, fmap, cov, dist, idx] + tf.gradients(loss, [p, f]))
np.savez(sys.argv[3], *out)
"""


def test_cpu_kernels_do_not_depend_on_the_thread_count(rng, tmp_path):
    """Bitwise-identical outputs and gradients with 1 and 4 intra-op threads, each in its own
    process (TensorFlow sizes its thread pool once per process). The forward kernels then split
    the images into different bands of rows; each pixel is still summed over its points in
    index order."""
    import subprocess
    import sys

    pix = scene(rng, 3, 2000, 40, 40)
    np.savez(
        tmp_path / "in.npz",
        pix=pix,
        feat=rng.uniform(size=(3, 2000, 3)).astype(np.float32),
        query=(rng.uniform(size=(3, 40, 40)) < 0.5).astype(np.float32),
        w_mask=rng.normal(size=(3, 40, 40)).astype(np.float32),
        w_map=rng.normal(size=(3, 40, 40, 3)).astype(np.float32),
    )
    results = []
    for threads in (1, 4):
        out = tmp_path / f"out{threads}.npz"
        proc = subprocess.run(
            [sys.executable, "-c", _THREADS_SCRIPT, str(tmp_path / "in.npz"), str(threads), str(out)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        with np.load(out) as data:
            results.append([data[k] for k in sorted(data.files, key=lambda k: int(k.split("_")[1]))])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------ fallback, API
def test_missing_library_falls_back_to_local_with_one_warning(rng):
    # no exact ties here: the fallback's nearest-point query may break them differently
    pix_np = np.stack(
        [rng.uniform(-3, 23, (2, 200)), rng.uniform(-3, 23, (2, 200)), rng.uniform(1, 3, (2, 200))], -1
    ).astype(np.float32)
    feat_np = rng.uniform(size=(2, 200, 3)).astype(np.float32)
    gt = (rng.uniform(size=(2, 20, 20)) < 0.4).astype(np.float32)

    def build_and_run():
        graph = tf.Graph()
        with graph.as_default():
            p = tf.constant(pix_np)
            mask = proj.mask_projection(p, 20, 20, impl="fused")
            fmap, _ = proj.feature_projection(p, tf.constant(feat_np), 20, 20, impl="fused")
            aff = losses.affinity_bwd(p, tf.constant(gt))
            fetch = [mask, fmap, aff] + tf.gradients(tf.reduce_sum(mask) + tf.reduce_sum(fmap) + aff, p)
            types = {op.type for op in graph.get_operations()}
            with tf.Session(graph=graph) as s:
                return s.run(fetch), types

    compiled, types = build_and_run()
    assert {"DifferMaskProjection", "DifferFeatureProjection", "DifferPixelNearest"} <= types
    assert proj.resolve_impl("auto") == proj.resolve_impl("fused") == "fused"
    tf_ops.LOADER.reset(lib_path=os.path.join(ROOT, "tf_ops", "build", "no-such-lib.so"))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fell_back, types = build_and_run()
            assert proj.resolve_impl("auto") == proj.resolve_impl("fused") == "local"
        msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(msgs) == 1 and "not found" in msgs[0] and "utils.render.projection" in msgs[0], msgs
        assert not any(t.startswith("Differ") for t in types)
    finally:
        tf_ops.LOADER.reset()
    for a, b in zip(compiled, fell_back):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_bad_input_raises_clear_errors(sess):
    with pytest.raises(ValueError, match="pix must have shape"):
        tf_ops.mask_projection(tf.zeros([2, 5, 2]), 8, 8)
    with pytest.raises(ValueError, match="pix must have shape"):
        tf_ops.feature_projection(tf.zeros([5, 3]), tf.zeros([5, 3]), 8, 8)
    with pytest.raises(ValueError, match="same batch size and number of points"):
        tf_ops.feature_projection(tf.zeros([2, 5, 3]), tf.zeros([2, 4, 3]), 8, 8)
    with pytest.raises(ValueError, match="sigma_sq"):
        tf_ops.mask_projection(tf.zeros([2, 5, 3]), 8, 8, sigma_sq=0.0)
    with pytest.raises(ValueError, match="img_h and img_w"):
        tf_ops.mask_projection(tf.zeros([2, 5, 3]), 0, 8)
    with pytest.raises(ValueError, match="well_radius"):
        tf_ops.feature_projection(tf.zeros([2, 5, 3]), tf.zeros([2, 5, 3]), 8, 8, well_radius=-1.0)
    with pytest.raises(ValueError, match="points must have shape"):
        tf_ops.pixel_nearest(tf.zeros([2, 5, 1]), tf.zeros([2, 4, 4]))
    with pytest.raises(ValueError, match="same batch size"):
        tf_ops.pixel_nearest(tf.zeros([2, 5, 3]), tf.zeros([3, 4, 4]))
    with pytest.raises(ValueError, match="max_dist_sq"):
        tf_ops.pixel_nearest(tf.zeros([2, 5, 3]), tf.zeros([2, 4, 4]), max_dist_sq=-1.0)
    # unknown static shapes: checked by the kernels at run time
    p = tf.placeholder(tf.float32, None)
    f = tf.placeholder(tf.float32, None)
    with pytest.raises(tf.errors.InvalidArgumentError, match="pix must have shape"):
        sess.run(tf_ops.mask_projection(p, 8, 8), {p: np.zeros((2, 5, 4))})
    fmap, _ = tf_ops.feature_projection(p, f, 8, 8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="feat must have shape"):
        sess.run(fmap, {p: np.zeros((2, 5, 3)), f: np.zeros((2, 6, 3))})
    with pytest.raises(tf.errors.InvalidArgumentError, match="query must have shape"):
        sess.run(tf_ops.pixel_nearest(p, f)[1], {p: np.zeros((2, 5, 3)), f: np.zeros((3, 4, 4))})
    with pytest.raises(ValueError, match="impl must be one of"):
        proj.resolve_impl("fast")
