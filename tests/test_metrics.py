"""The medoid and the image-blind baselines of the evaluation, on hand-computed cases."""

import numpy as np

from utils import metrics

# Three clouds of 4 points (each listed point twice), already in the unit cube (longest side 1,
# centred), so scaling leaves them as written:
#   A: the segment x in {-0.5, 0.5};  B: the segment y in {-0.5, 0.5};  C: the square (+-0.5, +-0.5).
SEG_X = [[-0.5, 0, 0], [-0.5, 0, 0], [0.5, 0, 0], [0.5, 0, 0]]
SEG_Y = [[0, -0.5, 0], [0, -0.5, 0], [0, 0.5, 0], [0, 0.5, 0]]
SQUARE = [[-0.5, -0.5, 0], [-0.5, 0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0]]
# Chamfer (mean Euclidean nearest distance, forward + backward) by hand:
#   A-B: every point of either is sqrt(0.5^2 + 0.5^2) from the other's nearest -> 2 sqrt(0.5)
#   A-C and B-C: every point is 0.5 from the nearest point of the other -> 0.5 + 0.5 = 1
# Mean over the two others: A (sqrt(2) + 1) / 2, B the same, C 1: C is the medoid.
EXPECTED_MEANS = [(np.sqrt(2) + 1) / 2, (np.sqrt(2) + 1) / 2, 1.0]


def test_medoid_index_hand_computed():
    clouds = np.array([SEG_X, SEG_Y, SQUARE], np.float32)
    medoid, means = metrics.medoid_index(clouds)
    assert medoid == 2
    np.testing.assert_allclose(means, EXPECTED_MEANS, atol=1e-5)
    # Each cloud is scaled to the unit cube first: moving and growing one changes nothing.
    moved = clouds.copy()
    moved[0] = moved[0] * 3.0 + [1.0, -2.0, 0.5]
    medoid, means = metrics.medoid_index(moved)
    assert medoid == 2
    np.testing.assert_allclose(means, EXPECTED_MEANS, atol=1e-5)
    # Order does not matter, and the batched pair loop covers every pair (batch_size 1).
    medoid, means = metrics.medoid_index(clouds[[2, 0, 1]], batch_size=1)
    assert medoid == 0
    np.testing.assert_allclose(means, [1.0] + EXPECTED_MEANS[:2], atol=1e-5)


def test_rgb_baseline_is_the_medoid_painted_with_the_mean_colour():
    from rgb.task import TASK

    clouds = np.array([SEG_X, SEG_Y, SQUARE], np.float32)
    colours = np.zeros((3, 4, 3), np.float32)
    colours[0] = [1.0, 0.0, 0.0]  # red, green, blue clouds, then one white point
    colours[1] = [0.0, 1.0, 0.0]
    colours[2] = [0.0, 0.0, 1.0]
    colours[2, 0] = [1.0, 1.0, 1.0]
    # mean over the 12 points: red (4 + 1) / 12, green (4 + 1) / 12, blue (3 + 1) / 12
    mean = np.array([5, 5, 4]) / 12.0
    [(name, fn)] = TASK.baselines(clouds, colours, 2, 3)
    pred_xyz = np.zeros((2, 7, 3), np.float32)  # the prediction is ignored
    xyz, feat = fn(pred_xyz, np.zeros((2, 7, 3), np.float32))
    assert name == "medoid_baseline"
    np.testing.assert_array_equal(xyz, [SQUARE, SQUARE])
    np.testing.assert_allclose(feat, np.broadcast_to(mean, (2, 4, 3)), atol=1e-7)


def test_partseg_baselines_hand_computed():
    from partseg.task import TASK

    clouds = np.array([SEG_X, SEG_Y, SQUARE], np.float32)
    labels = np.array([[0, 0, 1, 1], [2, 2, 2, 1], [2, 0, 2, 2]])  # part 2 is the most frequent (6 of 12)
    baselines = dict(TASK.baselines(clouds, labels, 1, 3))
    assert list(baselines) == ["medoid_baseline", "majority_baseline"]
    pred_xyz = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
    pred_feat = np.full((2, 5, 3), 1 / 3, np.float32)
    xyz, feat = baselines["medoid_baseline"](pred_xyz, pred_feat)  # cloud 1 with its own labels
    np.testing.assert_array_equal(xyz, [SEG_Y, SEG_Y])
    np.testing.assert_array_equal(feat, [[[0, 0, 1], [0, 0, 1], [0, 0, 1], [0, 1, 0]]] * 2)
    xyz, feat = baselines["majority_baseline"](pred_xyz, pred_feat)  # predicted shape, part 2 everywhere
    np.testing.assert_array_equal(xyz, pred_xyz)
    np.testing.assert_array_equal(feat, np.broadcast_to([0, 0, 1], (2, 5, 3)))
