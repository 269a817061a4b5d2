"""Camera: graph functions against hand-computed values and an independent numpy camera (conftest)."""

import numpy as np

from utils.common.tfv1 import tf
from utils.render import camera


def test_origin_projects_to_image_centre(sess):
    xyz = tf.zeros([1, 1, 3])
    out = sess.run(camera.project(xyz, tf.constant([0.7]), tf.constant([-0.3]), 64, 64))
    np.testing.assert_allclose(out[0, 0], [32.0, 32.0, 2.0], atol=1e-5)


def test_known_point_by_hand(sess):
    # az = 0, el = 0: no rotation; (0.25, -0.1, 0) sits at depth 2.
    # row = 32 + 120 * 0.25 / 2 = 47, col = 32 + 120 * (-0.1) / 2 = 26.
    out = sess.run(camera.project(tf.constant([[[0.25, -0.1, 0.0]]]), tf.zeros([1]), tf.zeros([1]), 64, 64))
    np.testing.assert_allclose(out[0, 0], [47.0, 26.0, 2.0], atol=1e-4)
    # el = 90 deg rotates z to -x... here x -> -z: the point moves towards the camera.
    out = sess.run(
        camera.project(tf.constant([[[0.5, 0.0, 0.0]]]), tf.zeros([1]), tf.constant([np.pi / 2], tf.float32), 64, 64)
    )
    np.testing.assert_allclose(out[0, 0], [32.0, 32.0, 2.5], atol=1e-4)


def test_intrinsics_scale_with_image_size(sess):
    xyz = tf.constant([[[0.25, -0.1, 0.0]]])
    out = sess.run(camera.project(xyz, tf.zeros([1]), tf.zeros([1]), 128, 96))
    np.testing.assert_allclose(out[0, 0, :2], [64 + 240 * 0.125, 48 + 180 * -0.05], atol=1e-4)


def test_graph_and_numpy_twin_match_an_independent_camera(sess, rng, project_np):
    """Both the graph camera and the module's numpy twin against the oracle written apart from them."""
    xyz = rng.uniform(-0.6, 0.6, (3, 50, 3)).astype(np.float32)
    az = rng.uniform(0, 2 * np.pi, 3).astype(np.float32)
    el = rng.uniform(-0.5, 0.5, 3).astype(np.float32)
    out = sess.run(camera.project(tf.constant(xyz), tf.constant(az), tf.constant(el), 64, 48))
    for b in range(3):
        oracle = project_np(xyz[b], az[b], el[b], 64, 48)
        np.testing.assert_allclose(out[b], oracle, atol=1e-3)
        np.testing.assert_allclose(camera.project_np(xyz[b], az[b], el[b], 64, 48), oracle, atol=1e-5)


def test_points_behind_camera_do_not_wrap_or_nan(sess):
    # With distance 2, a point at z = +3 (after rotation) lies behind the camera.
    xyz = tf.constant([[[0.3, 0.2, 3.0], [0.0, 0.0, 2.0], [0.1, 0.1, 0.0]]])
    proj = camera.project(xyz, tf.zeros([1]), tf.zeros([1]), 64, 64)
    out, grad = sess.run([proj, tf.gradients(tf.reduce_sum(proj), xyz)[0]])
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))
    assert out[0, 0, 0] < -1000 and out[0, 1, 0] < -1000  # far off-image, not mirrored in
    assert 0 <= out[0, 2, 0] < 64


def test_pixel_rays_hit_projected_points():
    az, el = 1.1, 0.4
    origins, dirs = camera.pixel_rays_np(az, el, 64, 64)
    # The point 1.7 units along the ray of pixel (10, 50) projects back onto that pixel.
    k = 10 * 64 + 50
    p = origins[k] + 1.7 * dirs[k]
    np.testing.assert_allclose(camera.project_np(p[None], az, el, 64, 64)[0, :2], [10, 50], atol=1e-6)
