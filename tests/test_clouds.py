"""Point clouds in TensorBoard (utils/train/clouds.py): what a tiny training writes to its event files.

The oracle is the data set's own files, read here with numpy (the ground-truth cloud, its colours
or part labels), scaled to the unit cube and turned into the y-up frame by hand, and the network
run on the sample's render through the predict path (utils.eval.inference.Predictor)."""

import glob
import json
import os

import cv2
import numpy as np
import pytest

import tiny
from utils.common import visualize
from utils.common.tfv1 import tf
from utils.eval.inference import Predictor
from utils.task import task_from_ref
from utils.train import clouds

SYNSET_CHAIR = "03001627"


def read_events(log_dir):
    """{tag: {step: ndarray}} of every tensor summary in the event files of ``log_dir``, and
    {tag: description} from their metadata."""
    out, described = {}, {}
    for path in sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))):
        for event in tf.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("tensor"):
                    out.setdefault(value.tag, {})[event.step] = tf.make_ndarray(value.tensor)
                    if value.metadata.summary_description:
                        described[value.tag] = value.metadata.summary_description
    return out, described


def _unit_cube(xyz, clip=None):
    """The cloud scaled so its bounding box (measured on coordinates clipped to +-clip) is centred
    and its longest side is 1."""
    box = xyz if clip is None else np.clip(xyz, -clip, clip)
    lo, hi = box.min(axis=0), box.max(axis=0)
    return (xyz - (lo + hi) / 2) / (hi - lo).max()


def _y_up(xyz):
    """Renderer frame (world -x up) -> ShapeNet frame (y up): (x, y, z) -> (z, -x, -y), by hand."""
    return np.stack([xyz[:, 2], -xyz[:, 0], -xyz[:, 1]], axis=1)


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    """A tiny rgb and a tiny partseg run, validated at iterations 1 and 2."""
    root = tmp_path_factory.mktemp("clouds")
    return {
        task: tiny.train(task, tiny_data, str(root / task), 2, ["--save_n", "1", "--print_n", "1"])
        for task in ("rgb", "partseg")
    }


def _first_pairs(exp, n):
    with open(os.path.join(exp, "val_set.json")) as f:
        return [(str(m), int(v)) for m, v in json.load(f)["pairs"][:n]]


@pytest.mark.slow
def test_rgb_run_writes_predicted_and_ground_truth_clouds(runs, tiny_data):
    exp = runs["rgb"]
    events, described = read_events(os.path.join(exp, "logs", "val"))
    pairs = _first_pairs(exp, clouds.CLOUD_SAMPLES)
    assert len(pairs) == 4
    mesh_tags = {t for t in events if t.startswith("clouds/")}
    expected = {
        f"clouds/{k}_{m}_view{v}/{which}_{part}"
        for k, (m, v) in enumerate(pairs)
        for which in ("prediction", "ground_truth")
        for part in ("VERTEX", "COLOR")
    }
    assert mesh_tags == expected
    pcl_dir = os.path.join(tiny_data, "ShapeNet_pcl", SYNSET_CHAIR)
    render_dir = os.path.join(tiny_data, "ShapeNet_rendered", SYNSET_CHAIR)
    with Predictor(exp, task_from_ref("rgb"), "latest", batch_size=4) as pred:
        assert pred.step == 2
        images = np.stack(
            [
                cv2.cvtColor(cv2.imread(os.path.join(render_dir, m, f"render_{v}.png")), cv2.COLOR_BGR2RGB) / 255.0
                for m, v in pairs
            ]
        )
        xyz, feat = pred.predict(images)
    for k, (m, v) in enumerate(pairs):
        gt = f"clouds/{k}_{m}_view{v}/ground_truth"
        # the ground truth once (the first validation of the process), the prediction at every validation
        assert sorted(events[gt + "_VERTEX"]) == [1] and sorted(
            events[f"clouds/{k}_{m}_view{v}/prediction_VERTEX"]
        ) == [
            1,
            2,
        ]
        # ground truth: the data set's file (stored y up), in the unit cube; its colours as stored
        want = _unit_cube(np.load(os.path.join(pcl_dir, m, "pcl_1024_fps_trimesh.npy")).astype(np.float64))
        got = events[gt + "_VERTEX"][1]
        assert got.shape == (1, 1024, 3) and got.dtype == np.float32
        np.testing.assert_allclose(got[0], want, atol=1e-5)
        colours = np.load(os.path.join(pcl_dir, m, "pcl_1024_fps_trimesh_colors.npy"))[:, 3:]
        np.testing.assert_array_equal(events[gt + "_COLOR"][1][0], np.round(colours * 255).astype(np.uint8))
        # prediction at the last validation: the network on that render, as predict runs it
        pred_xyz = events[f"clouds/{k}_{m}_view{v}/prediction_VERTEX"][2][0]
        np.testing.assert_allclose(pred_xyz, _y_up(_unit_cube(xyz[k].astype(np.float64), clip=0.5)), atol=1e-4)
        pred_rgb = events[f"clouds/{k}_{m}_view{v}/prediction_COLOR"][2][0]
        assert np.abs(pred_rgb.astype(int) - np.clip(feat[k], 0, 1) * 255).max() <= 0.51 + 1e-3
        assert "y up" in described[f"clouds/{k}_{m}_view{v}/prediction_VERTEX"]
    log = open(os.path.join(exp, "log.txt")).read()
    assert "the clouds for TensorBoard" in log and "finished: 2 iterations" in log


@pytest.mark.slow
def test_partseg_run_colours_the_clouds_by_part(runs, tiny_data):
    exp = runs["partseg"]
    events, _ = read_events(os.path.join(exp, "logs", "val"))
    pairs = _first_pairs(exp, clouds.CLOUD_SAMPLES)
    labels_dir = os.path.join(tiny_data, "partseg", "ShapeNet_pcl", SYNSET_CHAIR)
    for k, (m, v) in enumerate(pairs):
        labels = np.load(os.path.join(labels_dir, m, "pointcloud_labels.npy")).astype(int)  # 1-based
        colours = events[f"clouds/{k}_{m}_view{v}/ground_truth_COLOR"][1][0]
        assert len(np.unique(labels)) > 1
        np.testing.assert_array_equal(colours, np.round(visualize.PART_COLOURS[labels - 1] * 255).astype(np.uint8))
        predicted = events[f"clouds/{k}_{m}_view{v}/prediction_COLOR"][2][0]
        palette = np.round(visualize.PART_COLOURS * 255).astype(np.uint8)
        assert all((palette == c).all(axis=1).any() for c in predicted)  # every point a part colour


def test_without_tensorboard_training_goes_on_and_says_why(monkeypatch):
    """A user's own environment without the tensorboard package: no clouds, one reason, nothing run."""
    import sys
    import types

    monkeypatch.setitem(sys.modules, "tensorboard.plugins.mesh", None)  # makes the import fail
    vg = types.SimpleNamespace(ph={"image": tf.placeholder(tf.float32, [32, 64, 64, 3])})
    batch = dict(
        valid=np.ones(32, bool),
        image=np.zeros((32, 64, 64, 3), np.float32),
        model_id=np.array(["m"] * 32),
        input_view=np.zeros(32, np.int32),
        pcl=np.random.default_rng(0).uniform(-0.5, 0.5, (32, 8, 3)),
        pcl_rgb=np.zeros((32, 8, 3), np.float32),
    )
    summaries = clouds.CloudSummaries(task_from_ref("rgb"), vg, batch)
    assert summaries.n == 0 and "tensorboard" in summaries.note and "requirements.txt" in summaries.note
    assert summaries.write(sess=None, writer=None, step=1) == 0.0
