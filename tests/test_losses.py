"""2D losses against brute-force numpy implementations of the same formulas (16x16)."""

import numpy as np
import pytest

from utils import losses
from utils.common.tfv1 import tf
from utils.data.distance_map import gt_distance_transform
from utils.render import projection as proj

H = W = 16


def _blobs(rng, batch):
    """Random ground-truth masks (B, H, W) in {0, 1}: a rectangle plus scattered pixels."""
    masks = np.zeros((batch, H, W), np.float32)
    for b in range(batch):
        r0, c0 = rng.integers(0, 8, 2)
        masks[b, r0 : r0 + rng.integers(3, 8), c0 : c0 + rng.integers(3, 8)] = 1
        masks[b][rng.uniform(size=(H, W)) < 0.03] = 1
    return masks


def _brute_sq_dist(queries, targets):
    """(Q, 2), (T, 2) -> (Q,) min squared distance from each query to the targets."""
    d = ((queries[:, None, :] - targets[None, :, :]) ** 2).sum(-1)
    return d.min(1)


def _pixels():
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], -1).astype(np.float64)


# ----------------------------------------------------------------------------- distance transform
def test_gt_distance_transform_matches_brute_force(rng):
    masks = _blobs(rng, 3)
    masks[2] = 0  # no foreground at all
    dist = gt_distance_transform(masks)
    assert dist.dtype == np.float32 and dist.shape == masks.shape
    for b in range(2):
        fg = _pixels()[masks[b].ravel() > 0.5]
        np.testing.assert_allclose(dist[b].ravel(), _brute_sq_dist(_pixels(), fg), atol=1e-4)
    np.testing.assert_array_equal(dist[2], H * H + W * W)
    # extra leading axes (batch, views) and a single image give the same numbers
    np.testing.assert_array_equal(gt_distance_transform(masks[:2].reshape(1, 2, H, W))[0], dist[:2])
    np.testing.assert_array_equal(gt_distance_transform(masks[1]), dist[1])
    with pytest.raises(ValueError):
        gt_distance_transform(np.zeros(5))


# ----------------------------------------------------------------------------- affinity
def test_affinity_fwd_matches_brute_force(sess, rng):
    gt = _blobs(rng, 3)
    pred = rng.uniform(size=(3, H, W)).astype(np.float32)
    expected = np.mean([pred[b].ravel() * _brute_sq_dist(_pixels(), _pixels()[gt[b].ravel() > 0.5]) for b in range(3)])
    got = sess.run(losses.affinity_fwd(tf.constant(pred), tf.constant(gt_distance_transform(gt))))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # A prediction inside the ground truth costs nothing.
    assert sess.run(losses.affinity_fwd(tf.constant(gt), tf.constant(gt_distance_transform(gt)))) == 0


def _affinity_bwd_np(pix, gt, cap):
    """Loss and its gradient w.r.t. pix (row/col), brute force."""
    batch = pix.shape[0]
    loss, grad = 0.0, np.zeros_like(pix, np.float64)
    grid = _pixels()
    for b in range(batch):
        d = ((grid[:, None, :] - pix[b][None, :, :2]) ** 2).sum(-1)  # (H*W, N)
        nearest = d.argmin(1)
        dmin = d.min(1)
        fg = gt[b].ravel() > 0.5
        loss += np.minimum(dmin, cap)[fg].sum()
        for p in np.nonzero(fg & (dmin < cap))[0]:
            grad[b, nearest[p], :2] += 2 * (pix[b, nearest[p], :2] - grid[p])
    n = batch * H * W
    return loss / n, grad / n


def test_affinity_bwd_matches_brute_force(sess, rng):
    batch, n_pts = 3, 40
    gt = _blobs(rng, batch)
    pix = np.stack(
        [
            rng.uniform(-6, H + 6, (batch, n_pts)),
            rng.uniform(-6, W + 6, (batch, n_pts)),
            rng.uniform(1, 3, (batch, n_pts)),
        ],
        -1,
    ).astype(np.float32)
    pix[:, :5, :2] = -1e4  # behind the camera (camera.OFF_IMAGE)
    pix[2, :, :2] = [60.0, -70.0]  # batch 2: every point far off-image, one spot
    pix[2, :3, :2] = -1e4
    pix_t = tf.constant(pix)
    loss = losses.affinity_bwd(pix_t, tf.constant(gt))
    got, grad = sess.run([loss, tf.gradients(loss, pix_t)[0]])
    cap = H * H + W * W
    expected, expected_grad = _affinity_bwd_np(pix.astype(np.float64), gt, cap)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, atol=1e-6, rtol=1e-4)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[:, :5], 0)  # points behind the camera are never nearest
    np.testing.assert_array_equal(grad[..., 2], 0)  # depth plays no part
    # batch 2 saturates at the cap: the far cloud contributes a bounded amount, no gradient
    np.testing.assert_array_equal(grad[2], 0)
    per_batch = [_affinity_bwd_np(pix[b : b + 1].astype(np.float64), gt[b : b + 1], cap)[0] for b in range(3)]
    np.testing.assert_allclose(per_batch[2], cap * gt[2].mean(), rtol=1e-6)


def test_affinity_bwd_zero_when_every_gt_pixel_holds_a_point(sess):
    gt = np.zeros((1, H, W), np.float32)
    gt[0, 4:9, 6:12] = 1
    rows, cols = np.nonzero(gt[0])
    pix = np.stack([rows, cols, np.full(rows.size, 2.0)], -1)[None].astype(np.float32)
    assert sess.run(losses.affinity_bwd(tf.constant(pix), tf.constant(gt))) == 0
    # custom cap
    far = np.full((1, 3, 3), [40.0, 40.0, 2.0], np.float32)
    got = sess.run(losses.affinity_bwd(tf.constant(far), tf.constant(gt), max_dist_sq=100.0))
    np.testing.assert_allclose(got, 100.0 * gt.mean(), rtol=1e-6)


# ----------------------------------------------------------------------------- pixel losses
def test_mask_bce_matches_numpy_and_is_finite_at_the_ends(sess, rng):
    gt = _blobs(rng, 2)
    pred = rng.uniform(size=(2, H, W)).astype(np.float32)
    pred[0, 0, :4] = [0.0, 1.0, 0.0, 1.0]
    gt[0, 0, :4] = [0.0, 1.0, 1.0, 0.0]
    lo = np.float32(losses.BCE_CLIP)
    pc = np.clip(pred, lo, np.float32(1) - lo).astype(np.float64)  # the clip happens in float32
    expected = np.mean(-gt * np.log(pc) - (1 - gt) * np.log(1 - pc))
    pred_t = tf.constant(pred)
    loss = losses.mask_bce(pred_t, tf.constant(gt))
    got, grad = sess.run([loss, tf.gradients(loss, pred_t)[0]])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert np.all(np.isfinite(grad))


def test_mask_bce_finite_when_projection_saturates(sess):
    """Regression: many points on one pixel make tanh exactly 1.0 in float32; the
    original's log|1 - p + eps| then became log 0 after TF reordered it -> NaN."""
    from utils.render import projection

    pix = tf.placeholder(tf.float32, [2, 300, 3])
    pred = projection.mask_projection(pix, H, W, 0.4)
    gt = np.zeros((2, H, W), np.float32)
    gt[:, 2:5, 2:5] = 1.0
    loss = losses.mask_bce(pred, tf.constant(gt))
    grad = tf.gradients(loss, pix)[0]
    pts = np.concatenate([np.full((2, 300, 2), H / 2.0), np.full((2, 300, 1), 2.0)], -1)
    p, value, g = sess.run([pred, loss, grad], {pix: pts})
    assert p.max() == 1.0  # saturated, the case that used to give NaN
    assert np.isfinite(value) and np.all(np.isfinite(g))
    assert value > 1.0  # the saturated pixels are wrong (gt 0 there): a large, finite loss


def test_rgb_l2_is_mean_squared_error(sess, rng):
    a, b = rng.uniform(size=(2, 2, H, W, 3)).astype(np.float32)
    np.testing.assert_allclose(
        sess.run(losses.rgb_l2(tf.constant(a), tf.constant(b))), np.mean((a - b) ** 2), rtol=1e-5
    )


def test_part_cross_entropy_matches_numpy(sess, rng):
    probs = rng.dirichlet(np.ones(4), (2, H, W)).astype(np.float32)
    probs[0, 0, 0] = [0, 1, 0, 0]  # probability 0 on the true class: finite, large
    labels = rng.integers(0, 4, (2, H, W)).astype(np.int32)
    labels[0, 0, 0] = 0
    picked = np.take_along_axis(probs, labels[..., None], -1)[..., 0].astype(np.float64)
    expected = np.mean(-np.log(picked + 1e-8))
    probs_t = tf.constant(probs)
    loss = losses.part_cross_entropy(probs_t, tf.constant(labels))
    got, grad = sess.run([loss, tf.gradients(loss, probs_t)[0]])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert np.all(np.isfinite(grad))


def test_part_cross_entropy_on_a_rendered_label_image(sess):
    # Two points with certain labels 1 and 2, the rest background: a near-zero loss against
    # the label image the projection implies, a large one against a wrong labelling.
    pix = tf.constant([[[4.0, 4.0, 2.0], [10.0, 11.0, 2.0]]])
    probs = tf.constant([[[1.0, 0.0], [0.0, 1.0]]])
    parts, _ = proj.part_projection(pix, probs, H, W)
    labels = np.zeros((1, H, W), np.int32)
    labels[0, 3:6, 3:6] = 1
    labels[0, 9:12, 10:13] = 2
    good = losses.part_cross_entropy(parts, tf.constant(labels))
    bad = losses.part_cross_entropy(parts, tf.constant(np.where(labels > 0, 3 - labels, 0)))
    g, b = sess.run([good, bad])
    assert g < 1e-6 and b > 1.0


def test_affinity_points_hand_computed_and_pulls_stray_points(sess):
    gt = np.zeros((1, 16, 16), np.float32)
    gt[0, 4:8, 4:8] = 1
    dist = gt_distance_transform(gt)
    # (10, 5): 3 px below the square; (5.5, 5.5): inside; (5, 30): 15 px right of the image,
    # whose nearest column (15) is 8 px from the square; the last point is behind the camera.
    pix = tf.constant([[[10.0, 5.0, 2.0], [5.5, 5.5, 2.0], [5.0, 30.0, 2.0], [3.0, 3.0, 1e-3]]])
    loss = losses.affinity_points(pix, tf.constant(dist))
    value, grad = sess.run([loss, tf.gradients(loss, pix)[0]])
    np.testing.assert_allclose(value, (3 + 0 + 23) / 3, rtol=1e-5)
    assert grad[0, 0, 0] > 0 and grad[0, 2, 1] > 0  # descent moves both stray points back
    np.testing.assert_allclose(grad[0, 1], 0.0)
    np.testing.assert_allclose(grad[0, 3], 0.0)
