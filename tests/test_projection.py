"""Projections: known answers, local == dense (values and gradients), finite differences,
a cube's silhouette against its analytic outline, and the local path's memory footprint."""

import numpy as np
import pytest
from scipy.spatial import Delaunay

from utils.common.tfv1 import tf
from utils.render import camera
from utils.render import projection as proj

from tf_ops import params

IMPLS = list(proj.IMPLS)
FUSED_OPS = {"DifferMaskProjection", "DifferFeatureProjection"}  # tf_ops/projection/projection_op.cc


@pytest.fixture(autouse=True)
def fused_means_the_compiled_ops(request, fresh_graph):
    """A test run with impl='fused' must have built the compiled kernels, not the local graph ops
    'fused' falls back to without the library (which would test 'local' twice)."""
    yield
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    if params.get("impl") == "fused":
        ops = {op.type for op in fresh_graph.get_operations()}
        assert ops & FUSED_OPS, f"impl='fused' built none of {sorted(FUSED_OPS)}: the compiled library is missing"


def _f32(x):
    return tf.constant(np.asarray(x, np.float32))


# ----------------------------------------------------------------------------- API
def test_unknown_impl_is_rejected():
    pix = tf.zeros([1, 2, 3])
    for fn, args in [
        (proj.mask_projection, (pix, 8, 8)),
        (proj.feature_projection, (pix, tf.zeros([1, 2, 3]), 8, 8)),
        (proj.part_projection, (pix, tf.zeros([1, 2, 2]), 8, 8)),
    ]:
        with pytest.raises(ValueError, match=r"impl.*local.*dense"):
            fn(*args, impl="fast")


def test_gaussian_window_truncates_below_cutoff():
    """The window rule (tf_ops.params, shared by 'local' and 'fused')."""
    for sigma_sq in [0.1, 0.4, 0.5, 2.0]:
        k = params.gaussian_half_width(sigma_sq)
        # the nearest pixel left out is k + 0.5 px away along one axis
        assert np.exp(-((k + 0.5) ** 2) / (2 * sigma_sq)) < params.GAUSS_CUTOFF
        assert np.exp(-((k - 0.5) ** 2) / (2 * sigma_sq)) >= params.GAUSS_CUTOFF  # and no larger
    assert params.gaussian_half_width(0.4) == 3


def test_well_window_holds_the_well_and_no_more_rows_than_needed(rng):
    """Rows floor(r)-K .. floor(r)+K, K = well_half_width(radius), hold every pixel row within the
    radius (brute force over coordinates, integral and half-integral ones included)."""
    coords = np.concatenate([rng.uniform(-3, 3, 200), np.arange(-3, 3.01, 0.5)])
    for radius in [0.0, 0.5, 1.0, 1.3, 2.0, 2.7]:
        k = params.well_half_width(radius)
        needed = 0
        for r in coords:
            rows = np.arange(np.floor(r) - 10, np.floor(r) + 11)
            in_well = rows[np.abs(rows - r) <= radius]
            assert np.all(np.abs(in_well - np.floor(r)) <= k), (radius, r)
            needed = max([needed] + list(np.abs(in_well - np.floor(r))))
        assert needed == k, (radius, needed)  # and no wider


# ----------------------------------------------------------------------------- known answers
@pytest.mark.parametrize("impl", IMPLS)
def test_point_at_image_centre_lights_centre_pixel(sess, impl):
    pix = camera.project(tf.zeros([1, 1, 3]), tf.constant([0.4]), tf.constant([-0.2]), 64, 64)
    colour = np.array([[[0.2, 0.5, 0.9]]], np.float32)
    mask = proj.mask_projection(pix, 64, 64, impl=impl)
    rgb, cov = proj.feature_projection(pix, _f32(colour), 64, 64, impl=impl)
    m, f, c = sess.run([mask, rgb, cov])
    assert np.unravel_index(np.argmax(m[0]), (64, 64)) == (32, 32)
    np.testing.assert_allclose(m[0, 32, 32], np.tanh(1.0), atol=1e-6)
    np.testing.assert_allclose(m[0, 32, 33], np.tanh(np.exp(-1 / 0.8)), atol=1e-6)
    np.testing.assert_allclose(f[0, 32, 32], colour[0, 0], atol=1e-6)
    expected = np.zeros((64, 64), np.float32)
    expected[31:34, 31:34] = 1.0  # |d| <= 1 px inclusive: the 3x3 block
    np.testing.assert_array_equal(c[0], expected)
    np.testing.assert_allclose(f[0][expected == 0], 0.0)


@pytest.mark.parametrize("impl", IMPLS)
def test_known_point_lands_on_hand_computed_pixel(sess, impl):
    # az = 90 deg maps world (x, y, z) to camera (x, -z, y); then z_cam = 0.3 - 2 = -1.7, so
    # depth 1.7, row = 32 + 120 * 0.17 / 1.7 = 44, col = 32 + 120 * (-0.255) / 1.7 = 14.
    xyz = _f32([[[0.17, 0.3, 0.255]]])
    pix = camera.project(xyz, tf.constant([np.pi / 2], tf.float32), tf.zeros([1]), 64, 64)
    mask = proj.mask_projection(pix, 64, 64, impl=impl)
    rgb, cov = proj.feature_projection(pix, _f32([[[1.0, 0.0, 0.0]]]), 64, 64, impl=impl)
    p, m, f, c = sess.run([pix, mask, rgb, cov])
    np.testing.assert_allclose(p[0, 0], [44.0, 14.0, 1.7], atol=1e-4)
    assert np.unravel_index(np.argmax(m[0]), (64, 64)) == (44, 14)
    assert m[0, 44, 14] > 0.76 and m[0, 14, 44] < 1e-6
    np.testing.assert_allclose(f[0, 44, 14], [1, 0, 0], atol=1e-6)
    assert c[0, 44, 14] == 1 and c[0, 14, 44] == 0 and c.sum() <= 9


@pytest.mark.parametrize("impl", IMPLS)
def test_nearest_point_on_a_ray_wins(sess, impl):
    az, el, h, w = 0.6, 0.3, 64, 64
    origins, dirs = camera.pixel_rays_np(az, el, h, w)
    k = 20 * w + 40  # pixel (20, 40)
    near, far = origins[k] + 1.5 * dirs[k], origins[k] + 2.5 * dirs[k]
    colours = _f32([[[1, 0, 0], [0, 0, 1]]])  # first point red, second blue
    out = []
    for pts in ([near, far], [far, near]):
        pix = camera.project(_f32([pts]), tf.constant([az], tf.float32), tf.constant([el], tf.float32), h, w)
        rgb, _ = proj.feature_projection(pix, colours, h, w, beta=100.0, impl=impl)
        out.append(rgb[0, 20, 40])
    red, blue = sess.run(out)
    np.testing.assert_allclose(red, [1, 0, 0], atol=1e-3)
    np.testing.assert_allclose(blue, [0, 0, 1], atol=1e-3)


@pytest.mark.parametrize("impl", IMPLS)
def test_part_projection_background_channel(sess, impl):
    pix = _f32([[[10.0, 10.0, 2.0], [10.4, 10.6, 1.0], [3.0, 20.0, 2.0]]])
    probs = _f32([[[0.7, 0.2, 0.1], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]]])
    parts, cov = proj.part_projection(pix, probs, 24, 24, impl=impl)
    p, c = sess.run([parts, cov])
    assert p.shape == (1, 24, 24, 4)
    np.testing.assert_allclose(p[..., 0], 1.0 - c)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(p[0, 3, 20], [0, 0.1, 0.1, 0.8], atol=1e-6)
    np.testing.assert_allclose(p[0, 11, 11], [0, 0, 1, 0], atol=1e-3)  # the nearer point
    np.testing.assert_allclose(p[0, 9, 9], [0, 0.7, 0.2, 0.1], atol=1e-6)  # only the first
    assert p[0, 0, 0, 0] == 1 and c[0, 0, 0] == 0


# ----------------------------------------------------------------------------- local == fused == dense
def _scene(rng, batch, n_pts, size):
    """World cloud seen from ``batch`` random views, plus hand-placed pixel-space points.

    Returns xyz (B, n, 3), az, el (B,), and extra pixel points (B, 40, 3): near the borders,
    outside the image, exactly on integer coordinates (ties at the well radius), behind the
    camera.
    """
    xyz = rng.uniform(-0.6, 0.6, (batch, n_pts, 3)).astype(np.float32)
    xyz[:, :3] = [[0.0, 0.0, 2.5], [0.1, 0.2, 3.0], [0.0, 0.0, 1.9995]]  # behind / at camera
    az = rng.uniform(0, 2 * np.pi, batch).astype(np.float32)
    el = rng.uniform(-1.0, 1.0, batch).astype(np.float32)
    extra = np.empty((batch, 40, 3), np.float32)
    extra[..., 2] = rng.uniform(0.5, 3.0, (batch, 40))
    edge = np.concatenate([rng.uniform(-4.5, 1.5, 10), rng.uniform(size - 2.5, size + 3.5, 10)])
    extra[:, :20, 0] = rng.permutation(edge)
    extra[:, :20, 1] = rng.uniform(-5, size + 5, 20)
    extra[:, 20:30, 0] = rng.uniform(-5, size + 5, 10)
    extra[:, 20:30, 1] = rng.permutation(edge)[:10]
    extra[:, 30:38, :2] = rng.integers(-1, size + 1, (8, 2))  # integral: well ties
    extra[:, 38:, :2] = [[-1e4, -1e4], [3e4, 2e4]]
    return xyz, az, el, extra


@pytest.mark.parametrize("size,batch", [(32, 1), (32, 3), (64, 1), (64, 3)])
def test_local_and_fused_equal_dense(sess, rng, size, batch):
    _compare_with_dense(sess, rng, size, batch)


def test_local_equals_dense_with_segment_sum_scatter(sess, rng, monkeypatch):
    """The scatter-add used when a GPU is visible (unsorted_segment_sum) agrees as well."""
    monkeypatch.setattr(proj, "_gpu_visible", lambda: True)
    _compare_with_dense(sess, rng, 32, 3)
    op_types = {op.type for op in sess.graph.get_operations()}
    assert "UnsortedSegmentSum" in op_types and "DenseBincount" not in op_types


def _compare_with_dense(sess, rng, size, batch):
    xyz_np, az, el, extra = _scene(rng, batch, 300, size)
    xyz = tf.constant(xyz_np)
    extra_t = tf.constant(extra)
    pix = tf.concat([camera.project(xyz, tf.constant(az), tf.constant(el), size, size), extra_t], 1)
    n_all = pix.shape[1]
    feat = tf.constant(rng.uniform(0, 1, (batch, n_all, 3)).astype(np.float32))
    probs = tf.constant(rng.dirichlet(np.ones(4), (batch, n_all)).astype(np.float32))
    w_mask = tf.constant(rng.normal(size=(batch, size, size)).astype(np.float32))
    w_rgb = tf.constant(rng.normal(size=(batch, size, size, 3)).astype(np.float32))
    w_part = tf.constant(rng.normal(size=(batch, size, size, 5)).astype(np.float32))
    outs = {}
    for impl in IMPLS:
        mask = proj.mask_projection(pix, size, size, impl=impl)
        rgb, cov = proj.feature_projection(pix, feat, size, size, impl=impl)
        part, _ = proj.part_projection(pix, probs, size, size, impl=impl)
        loss_m = tf.reduce_sum(mask * w_mask)
        loss_f = tf.reduce_sum(rgb * w_rgb) + tf.reduce_sum(part * w_part)
        outs[impl] = dict(
            mask=mask,
            rgb=rgb,
            cov=cov,
            part=part,
            g_mask=tf.gradients(loss_m, [xyz, extra_t]),
            g_feat=tf.gradients(loss_f, [xyz, extra_t, feat, probs]),
        )
    res = sess.run(outs)
    den = res["dense"]
    assert den["cov"].sum() > 0.2 * batch * size * size  # the scene does cover the image
    assert 0.1 < den["mask"].mean() < 0.9
    assert {op.type for op in sess.graph.get_operations()} & FUSED_OPS  # 'fused' is the compiled op
    for impl in ("local", "fused"):  # each against the original's dense formulation
        for key in ["mask", "rgb", "cov", "part"]:
            np.testing.assert_allclose(res[impl][key], den[key], atol=1e-4, rtol=0, err_msg=f"{impl} {key}")
        for key in ["g_mask", "g_feat"]:
            for g_impl, g_den in zip(res[impl][key], den[key]):
                assert np.all(np.isfinite(g_impl)) and np.all(np.isfinite(g_den))
                scale = np.abs(g_den).max()
                assert scale > 0
                np.testing.assert_allclose(g_impl, g_den, rtol=1e-3, atol=1e-3 * scale, err_msg=f"{impl} {key}")


# ----------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("impl", IMPLS)
def test_gradients_finite_in_degenerate_cases(sess, impl):
    # batch 0: everything behind the camera or far away; batch 1: all points on one spot
    # (identical depths, huge logits); batch 2: depth at the camera's clamp.
    xyz = tf.constant(
        np.array(
            [
                [[0, 0, 2.5], [0.1, 0.1, 5.0], [50.0, 0, 0], [0, -80.0, 0]],
                [[0.1, 0.1, 0.1]] * 4,
                [[0, 0, 1.9999], [0, 0, 1.99], [0.01, 0, 1.999], [0.3, 0.3, 0.3]],
            ],
            np.float32,
        )
    )
    feat = tf.constant(np.random.default_rng(1).uniform(size=(3, 4, 3)).astype(np.float32))
    pix = camera.project(xyz, tf.zeros([3]), tf.zeros([3]), 32, 32)
    mask = proj.mask_projection(pix, 32, 32, impl=impl)
    rgb, cov = proj.feature_projection(pix, feat, 32, 32, impl=impl)
    loss = tf.reduce_sum(tf.square(mask - 0.3)) + tf.reduce_sum(tf.square(rgb - 0.5))
    vals = sess.run([mask, rgb, cov] + tf.gradients(loss, [xyz, feat]))
    for v in vals:
        assert np.all(np.isfinite(v))
    assert vals[2][0].sum() == 0 and vals[0][0].max() < 1e-6  # nothing visible in batch 0


@pytest.mark.parametrize("impl", IMPLS)
def test_gradients_match_finite_differences(sess, rng, impl, finite_difference):
    size, n_pts = 10, 6
    pix0 = np.stack([rng.uniform(1.0, 8.0, n_pts), rng.uniform(1.0, 8.0, n_pts), rng.uniform(1.0, 2.0, n_pts)], -1)[
        None
    ]  # float64
    pix0[0, 1, :2] = pix0[0, 0, :2] + [0.3, -0.2]  # overlapping wells: softmax in play
    feat0 = rng.uniform(size=(1, n_pts, 2))
    pix = tf.placeholder(tf.float64, pix0.shape)
    feat = tf.placeholder(tf.float64, feat0.shape)
    w_mask = tf.constant(rng.normal(size=(1, size, size)))
    w_rgb = tf.constant(rng.normal(size=(1, size, size, 2)))
    mask = proj.mask_projection(pix, size, size, sigma_sq=0.4, impl=impl)
    rgb, _ = proj.feature_projection(pix, feat, size, size, beta=3.0, impl=impl)
    assert mask.dtype == tf.float64 and rgb.dtype == tf.float64
    loss_m = tf.reduce_sum(mask * w_mask)
    loss_f = tf.reduce_sum(rgb * w_rgb)
    g_mask = tf.gradients(loss_m, pix)[0]
    g_pix, g_feat = tf.gradients(loss_f, [pix, feat])
    fd_sess = _FeedSession(sess, {feat: feat0})
    got = sess.run([g_mask, g_pix, g_feat], {pix: pix0, feat: feat0})
    np.testing.assert_allclose(got[0], finite_difference(fd_sess, loss_m, pix, pix0), atol=1e-6)
    np.testing.assert_allclose(got[1], finite_difference(fd_sess, loss_f, pix, pix0), atol=1e-6)
    fd_sess = _FeedSession(sess, {pix: pix0})
    np.testing.assert_allclose(got[2], finite_difference(fd_sess, loss_f, feat, feat0), atol=1e-6)
    assert np.abs(got[1][..., 2]).max() > 1e-3  # depth gets a gradient through the softmax
    np.testing.assert_array_equal(got[1][..., :2], 0.0)  # the well is a hard indicator


class _FeedSession:
    """Adds fixed feeds to every ``run`` (the other input of a two-input finite difference)."""

    def __init__(self, sess, feeds):
        self.sess, self.feeds = sess, feeds

    def run(self, fetch, feed):
        return self.sess.run(fetch, {**self.feeds, **feed})


# ----------------------------------------------------------------------------- silhouette
def _cube_surface(side, per_edge):
    """Uniform samples of a cube's surface: the centres of a per_edge x per_edge grid of cells
    on each of the six faces (each point stands for its cell, as in midpoint quadrature)."""
    t = (np.arange(per_edge) + 0.5) / per_edge * side - side / 2
    u, v = [a.ravel() for a in np.meshgrid(t, t, indexing="ij")]
    faces = []
    for axis in range(3):
        for sign in (-1, 1):
            pts = np.empty((u.size, 3))
            pts[:, axis] = sign * side / 2
            pts[:, (axis + 1) % 3], pts[:, (axis + 2) % 3] = u, v
            faces.append(pts)
    return np.concatenate(faces).astype(np.float32)


@pytest.mark.parametrize("impl", IMPLS)
def test_cube_silhouette_matches_analytic_outline(sess, impl):
    side, size = 0.6, 64
    # 1734 points, ~2 px apart on a face seen head-on. Denser clouds dilate the silhouette
    # (the splat reaches ~1 px past the outline), sparser ones leave holes; an edge of one
    # pixel all around costs ~8% IoU for this 36 px cube, so 0.95 means sub-pixel agreement.
    cloud = _cube_surface(side, 17)
    views = [(0.5, 0.3), (2.2, -0.7), (0.8, 0.8)]
    az = np.array([a for a, _ in views], np.float32)
    el = np.array([e for _, e in views], np.float32)
    pix = camera.project(
        tf.constant(np.repeat(cloud[None], len(views), 0)), tf.constant(az), tf.constant(el), size, size
    )
    masks = sess.run(proj.mask_projection(pix, size, size, sigma_sq=0.4, impl=impl))
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * side / 2
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    centres = np.stack([rows.ravel(), cols.ravel()], -1)
    for b, (a, e) in enumerate(views):
        outline = camera.project_np(corners, a, e, size, size)[:, :2]
        truth = (Delaunay(outline).find_simplex(centres) >= 0).reshape(size, size)
        pred = masks[b] > 0.5
        iou = (pred & truth).sum() / (pred | truth).sum()
        assert iou >= 0.95, (b, iou)


# ----------------------------------------------------------------------------- memory
def test_local_graph_has_no_points_by_pixels_tensor(fresh_graph):
    """Every tensor of the local graph (forward and backward) is far smaller than B*N*H*W."""
    batch, n_pts, h, w = 2, 37, 29, 31  # distinct primes: a (B,N,H,W) shape cannot hide
    pix = tf.placeholder(tf.float32, [batch, n_pts, 3])
    feat = tf.placeholder(tf.float32, [batch, n_pts, 5])
    mask = proj.mask_projection(pix, h, w)
    rgb, _ = proj.feature_projection(pix, feat, h, w)
    part, _ = proj.part_projection(pix, feat, h, w)
    tf.gradients(tf.reduce_sum(mask) + tf.reduce_sum(rgb) + tf.reduce_sum(part), [pix, feat])
    limit = batch * n_pts * h * w // 4
    sizes = []
    for op in fresh_graph.get_operations():
        for t in op.outputs:
            shape = t.shape
            if shape.rank is None:
                continue
            dims = shape.as_list()
            assert not (n_pts in dims and h in dims and w in dims), (op.name, dims)
            known = [d for d in dims if d is not None]
            sizes.append(int(np.prod(known)) if known else 1)
            assert sizes[-1] < limit, (op.name, dims)
    assert max(sizes) >= batch * n_pts * 49  # sanity: the window tensors were seen


# ----------------------------------------------------------------------------- benchmark
def test_benchmark_runs_the_requested_configurations_and_tabulates_them(capsys, monkeypatch):
    """benchmarks/bench_projection.py (no timing asserted): a worker runs the configuration it is
    given; the table has fused (the default) beside local and dense, pairs each local and fused row
    with the dense one of its size, skips dense
    configurations over the memory limit and prints the ratios of the workers' numbers."""
    import json

    from benchmarks import bench_projection as bench

    assert bench.main(["--worker", "local", "32", "16", "--repeats", "5"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {k: res[k] for k in ("impl", "n_pts", "size", "repeats")} == dict(impl="local", n_pts=32, size=16, repeats=5)
    assert res["peak_source"] in ("VmHWM", "ru_maxrss")

    runs = []

    def fake_worker(impl, n_pts, size, args):  # canned numbers: dense 10x slower, 8x the memory
        runs.append((impl, n_pts, size))
        return dict(
            impl=impl,
            n_pts=n_pts,
            size=size,
            time_s=0.5 if impl == "dense" else 0.05,
            mem_bytes=(8 if impl == "dense" else 1) * 2**20,
            peak_source="VmHWM",
        )

    monkeypatch.setattr(bench, "_run_config", fake_worker)
    assert bench.main(["--max-dense-gb", "8"]) == 0
    table = capsys.readouterr().out
    # dense needs 16 projections * N * size^2 * 85 bytes: 5.3 GiB at 1024 points, 64x64; 21 GiB at 4x that
    assert runs == [c for c in bench.CONFIGS if c[0] != "dense" or c[1:] == (1024, 64)]
    assert {c[0] for c in bench.CONFIGS[: bench.QUICK]} == {"dense", "local", "fused"}
    assert "| local | 1024 | 64x64 | 50.0 | 1.0 | 10x faster, 8x less memory |" in table
    assert "| fused | 1024 | 64x64 | 50.0 | 1.0 | 10x faster, 8x less memory |" in table
    assert "| dense | 4096 | 64x64 | skipped: needs ~21 GB (> --max-dense-gb 8) | | |" in table
    assert "| local | 4096 | 64x64 | 50.0 | 1.0 |  |" in table  # no dense row of its size: no ratio
