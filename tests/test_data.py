"""Loaders and batch pipeline on a tiny generated data set; camera/renderer/loader consistency; bad data."""

import re
import shutil

import cv2
import numpy as np
import pytest

from utils import data
from utils.data import BatchPipeline, DataError, shapenet
from utils.datagen import demo_data

CHAIR = "03001627"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    demo_data.generate(out, categories=("chair", "airplane"), n_models=6, n_views=4, seed=11, workers=1, progress=False)
    return out


@pytest.fixture
def broken(tiny, tmp_path):
    """A private copy of the tiny set to damage."""
    dst = tmp_path / "data"
    shutil.copytree(tiny, dst)
    return dst


def _pipe(root, **kw):
    """A pipeline of the tiny set; ``task`` may be a task's name (its Task is looked up)."""
    from utils.task import as_task

    args = dict(batch_size=2, n_views=3, num_workers=0, task="rgb")
    args.update(kw)
    args["task"] = as_task(args["task"])
    return BatchPipeline(root, args.pop("category", "chair"), args.pop("split", "train"), **args)


def _tree(task):
    """The data tree (sub-folder) of a task named ``task``."""
    from utils.task import as_task

    return as_task(task).data_tree


# --------------------------------------------------------------------------- shapenet
def test_categories_and_axis_alignment():
    assert shapenet.synset_id("chair") == CHAIR and shapenet.synset_id("aero") == "02691156"
    assert shapenet.synset_id("02958343") == "02958343" and shapenet.category_name("03001627") == "chair"
    assert len({shapenet.synset_id(c) for c in list(shapenet.CATEGORY_TO_SYNSET)[:13]}) == 13
    with pytest.raises(ValueError, match="unknown ShapeNet category"):
        shapenet.synset_id("spaceship")
    p = np.array([[0.1, 0.2, 0.3]])
    # swap x/z, swap x/y, negate x and y (the original's steps) -> (-y, -z, x)
    np.testing.assert_allclose(shapenet.preprocess_pcl_gt(p), [[-0.2, -0.3, 0.1]])
    np.testing.assert_allclose(shapenet.undo_preprocess_pcl_gt(shapenet.preprocess_pcl_gt(p)), p)
    back = shapenet.undo_preprocess_pcl_gt(np.float32([[-0.2, -0.3, 0.1]]))
    assert back.dtype == np.float32 and back.tolist() == np.float32([[0.1, 0.2, 0.3]]).tolist()  # exact
    np.testing.assert_allclose(p @ shapenet.ALIGN.T, shapenet.preprocess_pcl_gt(p))
    assert np.isclose(np.linalg.det(shapenet.ALIGN), 1.0)


# --------------------------------------------------------------------------- listing
def test_list_models_and_parts(tiny):
    train = data.list_models(tiny, "chair", "train")
    val = data.list_models(tiny, CHAIR, "val", tree=_tree("partseg"))
    test = data.list_models(tiny, "chair", "test")
    assert len(train) + len(val) + len(test) == 6 and not set(train) & set(val)
    assert data.n_parts(tiny, "chair") == 4 and data.part_names(tiny, "car") == ["body", "roof", "hood", "wheel"]
    assert data.n_parts(tiny, "lamp") == 4  # from the ShapeNet part-annotation table
    assert data.has_dataset(tiny, "chair") and not data.has_dataset(tiny, "car")


# --------------------------------------------------------------------------- batches
@pytest.mark.parametrize("task", ["rgb", "partseg"])
def test_batch_shapes_dtypes_ranges(tiny, task):
    with _pipe(tiny, task=task, batch_size=3, n_views=2, num_workers=2) as p:
        b = next(p)
    B, V, H, W, N = 3, 2, 64, 64, 1024
    expect = dict(
        image=((B, H, W, 3), np.float32),
        input_az=((B,), np.float32),
        input_el=((B,), np.float32),
        mask=((B, V, H, W), np.float32),
        dist=((B, V, H, W), np.float32),
        az=((B, V), np.float32),
        el=((B, V), np.float32),
        pcl=((B, N, 3), np.float32),
        views=((B, V), np.int32),
        input_view=((B,), np.int32),
        valid=((B,), np.bool_),
    )
    if task == "rgb":
        expect.update(rgb=((B, V, H, W, 3), np.float32), pcl_rgb=((B, N, 3), np.float32))
    else:
        expect.update(labels=((B, V, H, W), np.int32), pcl_labels=((B, N), np.int32))
    assert set(b) == set(expect) | {"model_id"}
    for key, (shape, dtype) in expect.items():
        assert b[key].shape == shape and b[key].dtype == dtype, key
    assert b["model_id"].shape == (B,) and b["model_id"].dtype.kind == "U"
    assert 0 <= b["image"].min() and b["image"].max() <= 1 and b["image"].max() > 0.1
    assert set(np.unique(b["mask"])) == {0.0, 1.0}
    assert np.all((b["dist"] == 0) == (b["mask"] == 1)) and b["dist"].max() > 1
    assert np.all(np.abs(b["az"]) <= 2 * np.pi) and np.all(np.abs(b["el"]) <= np.radians(40) + 1e-6)
    assert np.abs(b["pcl"]).max() < 0.5
    if task == "rgb":
        assert 0 <= b["rgb"].min() and b["rgb"].max() <= 1
        assert np.all(b["rgb"][b["mask"] == 0] == 0) and 0 <= b["pcl_rgb"].min() and b["pcl_rgb"].max() <= 1
    else:
        assert np.array_equal(b["labels"] > 0, b["mask"] > 0)
        assert b["pcl_labels"].min() == 0 and b["pcl_labels"].max() <= 3


def test_ground_truth_points_project_inside_the_masks(tiny, project_np):
    """Renderer, camera and loaders agree: >= 98% of GT points land in the mask of every view."""
    for category in ("chair", "airplane"):
        for split in ("train", "val", "test"):
            with _pipe(
                tiny, category=category, split=split, batch_size=1, n_views=4, view_mode="fixed", shuffle=False
            ) as p:
                for step in range(p.n_models):
                    b = p.get_batch(step)
                    for v in range(4):
                        pix = project_np(b["pcl"][0], b["az"][0, v], b["el"][0, v], 64, 64)
                        r, c = np.round(pix[:, 0]).astype(int), np.round(pix[:, 1]).astype(int)
                        ok = (r >= 0) & (r < 64) & (c >= 0) & (c < 64)
                        inside = np.zeros(len(r), bool)
                        inside[ok] = b["mask"][0, v][r[ok], c[ok]] > 0.5
                        assert inside.mean() >= 0.98, (b["model_id"][0], v, inside.mean())


def test_input_image_is_its_view(tiny):
    with _pipe(tiny, n_views=1, use_input_view=True, batch_size=3) as p:
        b = p.get_batch(2)
    assert np.array_equal(b["views"][:, 0], b["input_view"])
    np.testing.assert_array_equal(b["rgb"][:, 0], b["image"] * b["mask"][:, 0, ..., None])
    np.testing.assert_allclose(b["az"][:, 0], b["input_az"])


def test_view_modes(tiny):
    with _pipe(tiny, view_mode="fixed", n_views=6) as p:  # 4 views on disk: wraps like the original
        assert p.get_batch(0)["views"].tolist() == [[0, 1, 2, 3, 0, 1]] * 2
    with _pipe(tiny, view_mode="random", n_views=4) as p:
        views = np.concatenate([p.get_batch(s)["views"] for s in range(5)])
        assert all(sorted(row) == [0, 1, 2, 3] for row in views.tolist())  # distinct when possible
        assert len({tuple(row) for row in views.tolist()}) > 1
    with _pipe(tiny, view_mode="random", n_views=3, use_input_view=True) as p:
        b = p.get_batch(1)
        assert np.array_equal(b["views"][:, 0], b["input_view"])
        assert all(len(set(row)) == 3 for row in b["views"].tolist())


def _same(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_determinism_and_resume(tiny):
    """Batch `step` is a function of (seed, step): prefetching, resuming and a fresh pipeline agree."""
    with _pipe(tiny, seed=3, num_workers=2, prefetch=3) as p:
        run = [next(p) for _ in range(7)]
    with _pipe(tiny, seed=3, num_workers=2, start_step=4) as p:
        resumed = [next(p) for _ in range(3)]
    with _pipe(tiny, seed=3) as p:
        direct = p.get_batch(5)
        assert p.steps_per_epoch == 2 and p.n_models == 4 and not hasattr(p, "__len__")
    assert all(_same(a, b) for a, b in zip(run[4:], resumed)) and _same(run[5], direct)
    with _pipe(tiny, seed=4) as p:
        assert not _same(p.get_batch(5), direct)
    # every epoch visits each model once (4 models, batches of 2)
    for e in range(3):
        ids = np.concatenate([run[2 * e]["model_id"], run[2 * e + 1]["model_id"]])
        assert sorted(ids) == sorted(data.list_models(tiny, "chair", "train"))


def test_single_pass_evaluation_order_and_padding(tiny):
    models = data.list_models(tiny, "chair", "train")
    with _pipe(tiny, batch_size=3, shuffle=False, repeat=False, num_workers=2) as p:
        batches = list(p)
    assert len(batches) == 2
    assert batches[0]["valid"].tolist() == [True] * 3 and batches[1]["valid"].tolist() == [True, False, False]
    assert [*batches[0]["model_id"], batches[1]["model_id"][0]] == models
    assert batches[1]["model_id"].tolist() == [models[3]] * 3  # padded with the last sample
    with _pipe(tiny, batch_size=3, shuffle=False, repeat=False, all_input_views=True) as p:
        assert p.n_samples == 16 and p.n_models == 4 and p.steps_per_epoch == 6
        b = p.get_batch(0)
        assert b["input_view"].tolist() == [0, 1, 2] and len(set(b["model_id"])) == 1


# --------------------------------------------------------------------------- bad data
def _model_dir(root, tree="ShapeNet_rendered", split="train"):
    mid = data.list_models(root, "chair", split)[0]
    return root / tree / CHAIR / mid


def test_missing_split_file(broken):
    (broken / "splits" / f"{CHAIR}_val_list.npy").unlink()
    with pytest.raises(DataError, match=f"{CHAIR}_val_list"):
        data.list_models(broken, "chair", "val")


def test_split_file_as_text_and_empty(broken):
    ids = data.list_models(broken, "chair", "train")
    (broken / "splits" / f"{CHAIR}_train_list.npy").unlink()
    (broken / "splits" / f"{CHAIR}_train_list.txt").write_text("\n".join(ids) + "\n")
    assert data.list_models(broken, "chair", "train") == ids
    (broken / "splits" / f"{CHAIR}_train_list.txt").write_text("\n")
    with pytest.raises(DataError, match="split list is empty"):
        data.list_models(broken, "chair", "train")


def test_pickled_split_file_is_refused(broken):
    path = broken / "splits" / f"{CHAIR}_test_list.npy"
    np.save(path, np.array(["a", None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="cannot load as a plain .npy"):
        data.list_models(broken, "chair", "test")


def test_empty_or_missing_category(broken):
    shutil.rmtree(broken / "ShapeNet_pcl" / CHAIR)
    with pytest.raises(DataError, match=f"ShapeNet_pcl/{CHAIR} is missing"):
        data.list_models(broken, "chair", "train")
    for d in (broken / "ShapeNet_rendered" / CHAIR).iterdir():
        shutil.rmtree(d)
    with pytest.raises(DataError, match=f"ShapeNet_rendered/{CHAIR} is empty"):
        data.list_models(broken, "chair", "train")


def test_missing_model_folder(broken):
    d = _model_dir(broken, "ShapeNet_pcl")
    shutil.rmtree(d)
    with pytest.raises(DataError, match=re.escape(str(d))):
        _pipe(broken)


def test_model_folder_missing_a_file_reported_through_the_threads(broken):
    mids = data.list_models(broken, "chair", "train")
    (broken / "ShapeNet_rendered" / CHAIR / mids[-1] / "depth_2.png").unlink()
    with _pipe(broken, view_mode="fixed", shuffle=False, num_workers=2) as p:
        with pytest.raises(DataError, match="missing file .*depth_2.png"):
            for _ in range(4):
                next(p)


def test_unreadable_image(broken):
    (_model_dir(broken) / "depth_0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="depth_0.png: cannot decode"):
        _pipe(broken, view_mode="fixed", shuffle=False)


def test_wrong_sized_image(broken):
    d = _model_dir(broken)
    for k in range(4):
        cv2.imwrite(str(d / f"render_{k}.png"), np.zeros((32, 48, 3), np.uint8))
    with pytest.raises(DataError, match=r"render_\d.png: expected a 64x64 image, got 32x48"):
        _pipe(broken, shuffle=False)


def test_npy_with_wrong_shape(broken):
    path = _model_dir(broken, "ShapeNet_pcl") / "pcl_1024_fps_trimesh.npy"
    np.save(path, np.zeros((1000, 3), np.float32))
    with pytest.raises(DataError, match=r"pcl_1024_fps_trimesh.npy: expected shape \(1024, 3\), got \(1000, 3\)"):
        _pipe(broken, shuffle=False)


@pytest.mark.parametrize(
    "task, tree, name, array, message",
    [
        (
            "rgb",
            "ShapeNet_pcl",
            "pcl_1024_fps_trimesh_colors.npy",
            np.zeros((1024, 3), np.float32),
            r"colors.npy: expected shape \(1024, 6\), got \(1024, 3\)",
        ),
        (
            "partseg",
            "partseg/ShapeNet_pcl",
            "pointcloud_labels.npy",
            np.zeros(1024, np.int32),
            "pointcloud_labels.npy: expected 1-based part labels",
        ),
        (
            "partseg",
            "partseg/ShapeNet_labels",
            "labels_0.npy",
            np.zeros((64, 65), np.uint8),
            r"labels_0.npy: expected shape \(64, 64\), got \(64, 65\)",
        ),
        (
            "partseg",
            "partseg/ShapeNet_labels",
            "labels_1.npy",
            np.zeros((64, 64), np.float32),
            "labels_1.npy: expected dtype kind",
        ),
    ],
)
def test_bad_arrays(broken, task, tree, name, array, message):
    mid = data.list_models(broken, "chair", "train", _tree(task))[0]
    np.save(broken / tree / CHAIR / mid / name, array)
    with pytest.raises(DataError, match=message):
        _pipe(broken, task=task, view_mode="fixed", shuffle=False)


def test_bad_view_file(broken):
    (_model_dir(broken) / "view.txt").write_text("12.5\n")
    with pytest.raises(DataError, match="view.txt: expected one 'azimuth elevation' line"):
        _pipe(broken, shuffle=False)


@pytest.mark.parametrize(
    "text, message",
    [
        ("10 20\n30 20\n50 20\n", r"view.txt: 3 view line\(s\), but .* also holds render_3.png"),  # 4 renders
        ("10 20\n30 20\n50 20\n70 20\n90 20\n", "view.txt: lists 5 views, but render_4.png is missing"),
        ("10 20\nnan 20\n50 20\n70 20\n", r"view.txt: view 1 has a non-finite angle \(\[nan, 20.0\]\)"),
        ("10 20\n30 inf\n50 20\n70 20\n", "view.txt: view 1 has a non-finite angle"),
    ],
)
def test_view_file_must_match_the_renders_with_finite_angles(broken, text, message):
    (_model_dir(broken) / "view.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        _pipe(broken, shuffle=False)


@pytest.mark.parametrize(
    "tree, name, make, message",
    [
        (
            "partseg/ShapeNet_labels",
            "labels_0.npy",
            lambda a: np.where(a > 0, 5, 0).astype(a.dtype),
            r"labels_0.npy: found label 5; expected 0 \(background\) .. 4",
        ),
        (
            "partseg/ShapeNet_pcl",
            "pointcloud_labels.npy",
            lambda a: np.where(np.arange(len(a)) == 7, 9, a).astype(a.dtype),
            r"pointcloud_labels.npy: found part label 9; expected 1 .. 4",
        ),
    ],
)
def test_part_labels_out_of_range(broken, tree, name, make, message):
    mid = data.list_models(broken, "chair", "train", _tree("partseg"))[0]
    path = broken / tree / CHAIR / mid / name
    np.save(path, make(np.load(path)))
    with pytest.raises(DataError, match=message):
        _pipe(broken, task="partseg", view_mode="fixed", shuffle=False)


def test_labels_beyond_the_trained_number_of_parts(tiny):
    """The demo chairs have 4 parts; a model trained with --n_cls 3 must not take them silently."""
    with pytest.raises(DataError, match=r"found (part )?label 4; expected .*\.\. 3"):
        _pipe(tiny, task="partseg", view_mode="fixed", shuffle=False, n_cls=3)


@pytest.mark.parametrize("bad_id", ["../../x", "/etc", "a/b", "..", ".", "a\\b"])
def test_split_ids_must_be_plain_folder_names(broken, bad_id):
    ids = data.list_models(broken, "chair", "train")
    (broken / "splits" / f"{CHAIR}_train_list.npy").unlink()
    (broken / "splits" / f"{CHAIR}_train_list.txt").write_text("\n".join(ids[:1] + [bad_id]) + "\n")
    with pytest.raises(DataError, match=f"model id {re.escape(repr(bad_id))} is not a plain folder name"):
        data.list_models(broken, "chair", "train")


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataError, match=f"data directory {re.escape(str(tmp_path / 'nope'))} does not exist"):
        data.list_models(tmp_path / "nope", "chair", "train")
    (tmp_path / "rgb_only").mkdir()
    with pytest.raises(DataError, match="has no partseg/ folder"):
        data.list_models(tmp_path / "rgb_only", "chair", "train", tree=_tree("partseg"))
