"""The validation set that chooses the best snapshot, and the metrics' floor row.

Oracles: counting (every model once before any model twice, distinct pairs, sizes), the
experiment's own record compared across runs that differ in --batch_size and across a resume,
a brute-force numpy Chamfer on unit-cube-scaled clouds, and the second sampling of a surface
replaced by the ground truth itself.
"""

import json
import os
import re
import shutil
from collections import Counter

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import tiny
from utils.common.tfv1 import tf
from utils.data.val_set import choose_pairs
from utils.task import task_from_ref


def _unit_cube(pcl, clip=None):
    box = pcl if clip is None else np.clip(pcl, -clip, clip)
    lo, hi = box.min(0), box.max(0)
    return (pcl - (lo + hi) / 2) / (hi - lo).max()


def _chamfer_np(gt, pred, squared=False, clip=None):
    d = cdist(_unit_cube(np.asarray(gt, np.float64)), _unit_cube(np.asarray(pred, np.float64), clip))
    d = d**2 if squared else d
    return d.min(1).mean() + d.min(0).mean()


@pytest.mark.parametrize("n_samples", [5, 20, 35, 200, 0, 1000])
def test_balanced_set_size_follows_val_samples_and_covers_every_model(n_samples):
    n_views = [10] * 20
    pairs = choose_pairs(n_views, n_samples, seed=3)
    expected = 200 if n_samples in (0, 1000) else n_samples
    assert len(pairs) == expected and len(set(pairs)) == expected
    assert all(0 <= m < 20 and 0 <= v < 10 for m, v in pairs)
    counts = Counter(m for m, _ in pairs)
    if expected >= 20:  # every model before any model twice: counts differ by at most one
        assert len(counts) == 20 and max(counts.values()) - min(counts.values()) <= 1
        assert sorted(m for m, _ in pairs[:20]) == list(range(20))
    else:
        assert len(counts) == expected
    # a prefix: a larger set contains the smaller one, and the seed decides the views
    assert choose_pairs(n_views, 50, seed=3)[: min(expected, 50)] == pairs[: min(expected, 50)]
    assert choose_pairs(n_views, 20, seed=4) != choose_pairs(n_views, 20, seed=3)


def test_every_10th_set_is_a_tenth_of_the_pairs():
    n_views = [10] * 20 + [4]  # 204 pairs
    pairs = choose_pairs(n_views, 0, seed=1, selection="every_10th")
    assert len(pairs) == 21 and len(set(pairs)) == 21  # ceil(204 / 10)
    assert len(choose_pairs(n_views, 7, seed=1, selection="every_10th")) == 7
    assert choose_pairs(n_views, 0, seed=1, selection="every_10th") == pairs
    with pytest.raises(ValueError, match="val selection"):
        choose_pairs(n_views, 0, seed=1, selection="every_5th")


def _argv(exp, data, iters, batch_size, extra=()):
    return tiny.train_argv(
        exp,
        data,
        iters,
        "--batch_size",
        str(batch_size),
        "--print_n",
        "2",
        "--save_n",
        "2",
        "--save_model_n",
        "2",
        "--N_PTS",
        "64",
        "--bottleneck",
        "8",
        *extra,
    )


def _record(exp):
    with open(os.path.join(exp, "val_set.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_validation_set_is_the_same_across_resume_and_batch_size(tiny_data, tmp_path):
    """The recorded set depends on --val_samples and the seed only: a resumed run keeps it, a run with
    another --batch_size chooses the same pairs, and each validation scores exactly those samples."""
    from rgb import train_rgb

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert train_rgb.main(_argv(a, tiny_data, 2, 2, ["--val_samples", "3"])) == 2
    first = _record(a)
    assert first["n_samples"] == len(first["pairs"]) == 3  # the tiny set's val split: 1 model x 4 views
    assert len({tuple(p) for p in first["pairs"]}) == 3
    assert train_rgb.main(_argv(a, tiny_data, 4, 2, ["--val_samples", "3"])) == 4  # resume
    assert _record(a)["pairs"] == first["pairs"]
    log = open(os.path.join(a, "log.txt")).read()
    assert "resumed at iteration 2" in log
    assert re.findall(r"val @ (\d+): chamfer [\d.]+ ± [\d.na]+ \(s\.e\., (\d+) samples", log) == [
        ("2", "3"),
        ("4", "3"),
    ]
    assert train_rgb.main(_argv(b, tiny_data, 2, 1, ["--val_samples", "3"])) == 2  # another batch size
    assert _record(b)["pairs"] == first["pairs"]


@pytest.mark.slow
@pytest.mark.parametrize("squared", [False, True])
def test_validation_scores_are_brute_force_chamfer_on_the_recorded_pairs(tiny_data, tmp_path, squared):
    """The validation pass (own batches of 32, the last padded) scores every recorded pair once, with the
    reported metric's definition (unit cube, no clip, fwd + bwd distances) or, --val_chamfer squared,
    the original's mean squared distances."""
    from rgb.task import TASK
    from utils.data import BatchPipeline
    from utils.experiment import Experiment
    from utils.train import config, loop

    exp = Experiment(str(tmp_path / "exp"))
    try:
        args = config.parse_train_args(
            "rgb",
            _argv(
                exp.root, tiny_data, 1, 3, ["--val_samples", "3"] + (["--val_chamfer", "squared"] if squared else [])
            ),
        )
        trainer = loop._Trainer(TASK.resolve_args(args), TASK, exp)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            scores = trainer.validation_scores(sess)
            data = BatchPipeline.from_args(
                args,
                task_from_ref("rgb"),
                "val",
                pairs=trainer.val_pairs,
                batch_size=1,
                n_views=1,
                view_mode="fixed",
                shuffle=False,
                repeat=False,
            )
            expected = []
            for k, (mid, view) in enumerate(trainer.val_pairs):
                batch = data.get_batch(k)
                assert (str(batch["model_id"][0]), int(batch["input_view"][0])) == (mid, view)
                xyz = sess.run(trainer.vg.xyz, {trainer.vg.ph["image"]: np.repeat(batch["image"], 32, axis=0)})
                expected.append(_chamfer_np(batch["pcl"][0], xyz[0], squared=squared))
            data.close()
        for pipeline in (trainer.train_data, trainer.val_data, trainer.val_set_data):
            pipeline.close()
    finally:
        exp.release()
    assert len(scores["chamfer"]) == 3
    np.testing.assert_allclose(scores["chamfer"], expected, rtol=2e-4)


# ----------------------------------------------------------------------------- the floor row
@pytest.mark.parametrize("task_name", ["rgb", "partseg"])
def test_floor_of_a_cloud_against_itself_is_zero_and_against_a_resampling_is_small(task_name, tiny_data, tmp_path):
    """The floor method returns each sample's second sampling: with the second sampling replaced by
    the ground truth itself its Chamfer (brute force) is 0; with the generator's own it is positive
    and below the image-blind baseline's (the training medoid) on every test sample."""
    import importlib

    from utils import metrics
    from utils.data import BatchPipeline, tree_dirs
    from utils.data.layout import PCL_FILE, RESAMPLE_PCL_FILE
    from utils.eval.evaluate import floor_method

    task = importlib.import_module(f"{task_name}.task").TASK

    def pipeline(data_dir, split):
        return BatchPipeline(
            data_dir,
            "chair",
            split,
            task=task,
            batch_size=4,
            n_views=1,
            view_mode="fixed",
            shuffle=False,
            repeat=False,
            all_input_views=True,
            num_workers=0,
        )

    with pipeline(tiny_data, "train") as train:
        batches = [train.get_batch(k) for k in range(train.steps_per_epoch)]
    clouds = np.concatenate([b["pcl"][b["valid"]] for b in batches])
    medoid = clouds[metrics.medoid_index(clouds)[0]]
    with pipeline(tiny_data, "test") as test:
        batch = test.get_batch(0)
        floor = floor_method(test, task)
        xyz, feat = floor(dict(batch, _n_cls=4))
    assert xyz.shape == batch["pcl"].shape and feat.shape[:2] == batch["pcl"].shape[:2]
    for i in range(len(xyz)):
        value = _chamfer_np(batch["pcl"][i], xyz[i])
        assert 0 < value < _chamfer_np(batch["pcl"][i], medoid), (i, value)
    if task_name == "rgb":  # the floor's features are the second sampling's colours
        assert feat.min() >= 0 and feat.max() <= 1

    # The same surface sampled twice alike: the second sampling replaced by the ground truth.
    copy = str(tmp_path / "data")
    shutil.copytree(tiny_data, copy)
    pcl_dir = tree_dirs(copy, task.data_tree)["pcl"]
    for root, _, files in os.walk(pcl_dir):
        if PCL_FILE in files:
            shutil.copyfile(os.path.join(root, PCL_FILE), os.path.join(root, RESAMPLE_PCL_FILE))
    with pipeline(copy, "test") as test:
        xyz, _ = floor_method(test, task)(dict(batch, _n_cls=4))
    for i in range(len(xyz)):
        assert _chamfer_np(batch["pcl"][i], xyz[i]) == 0.0
    # Data without a second sampling (the authors' ShapeNet clouds): no floor, and the metrics say so.
    for root, _, files in os.walk(pcl_dir):
        if RESAMPLE_PCL_FILE in files:
            os.remove(os.path.join(root, RESAMPLE_PCL_FILE))
    with pipeline(copy, "test") as test:
        assert floor_method(test, task) is None
