"""Demo-data generator: layout, reproducibility, renderer/cloud agreement, safe writing."""

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from utils.data import shapenet
from utils.datagen import demo_data, shapes
from utils.datagen.mesh_render import BOUND_RADIUS, DEPTH_FAR, DEPTH_NEAR
from utils.datagen.sampling import farthest_point_sampling

TINY = dict(categories=("chair", "airplane"), n_models=4, n_views=3, img_size=64, seed=5, progress=False)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    demo_data.generate(out, workers=1, **TINY)
    return out


def _tree(root):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file() and p.name != demo_data.INFO_FILE
    }


def test_layout(tiny):
    info = json.loads((tiny / demo_data.INFO_FILE).read_text())
    assert info["n_models"] == 4 and info["categories"] == {"chair": "03001627", "airplane": "02691156"}
    assert not [p for p in tiny.iterdir() if p.name.startswith(".demo_tmp")]
    for syn in ("03001627", "02691156"):
        ids = []
        for split in ("train", "val", "test"):
            npy = np.load(tiny / "splits" / f"{syn}_{split}_list.npy", allow_pickle=False)
            txt = (tiny / "partseg" / "splits" / f"{syn}_{split}_list.txt").read_text().split()
            assert list(npy) == txt and len(txt) >= 1
            ids += txt
        assert sorted(ids) == sorted(os.listdir(tiny / "ShapeNet_rendered" / syn))
        for mid in ids:
            for tree in (tiny / "ShapeNet_rendered", tiny / "partseg" / "ShapeNet_rendered"):
                d = tree / syn / mid
                files = ["view.txt"] + [f"{kind}_{k}.png" for kind in ("render", "depth") for k in range(3)]
                assert sorted(os.listdir(d)) == sorted(files)
                angles = np.loadtxt(d / "view.txt")
                assert angles.shape == (3, 2)
                assert np.all((angles[:, 0] >= 0) & (angles[:, 0] < 360))
                assert np.all((angles[:, 1] >= -10) & (angles[:, 1] <= 40))
            pcl = np.load(tiny / "ShapeNet_pcl" / syn / mid / "pcl_1024_fps_trimesh.npy")
            col = np.load(tiny / "ShapeNet_pcl" / syn / mid / "pcl_1024_fps_trimesh_colors.npy")
            lab = np.load(tiny / "partseg" / "ShapeNet_pcl" / syn / mid / "pointcloud_labels.npy")
            assert pcl.shape == (1024, 3) and pcl.dtype == np.float32
            assert col.shape == (1024, 6) and np.array_equal(col[:, :3], pcl)
            assert col[:, 3:].min() >= 0 and col[:, 3:].max() <= 1
            assert lab.shape == (1024,) and lab.min() >= 1 and lab.max() <= 4
            assert np.linalg.norm(pcl, axis=1).max() <= BOUND_RADIUS + 1e-4
            assert len(np.unique(pcl, axis=0)) == 1024  # farthest point sampling picks distinct points


def test_label_maps_agree_with_masks(tiny):
    syn = "03001627"
    for mid in os.listdir(tiny / "ShapeNet_rendered" / syn):
        folder = tiny / "ShapeNet_rendered" / syn / mid
        for k in range(3):
            depth = cv2.imread(str(folder / f"depth_{k}.png"), cv2.IMREAD_UNCHANGED)
            rgb = cv2.imread(str(folder / f"render_{k}.png"))
            lab = np.load(tiny / "partseg" / "ShapeNet_labels" / syn / mid / f"labels_{k}.npy")
            fg = depth < 254
            assert lab.shape == (64, 64) and np.array_equal(lab > 0, fg)
            assert np.all(rgb[~fg] == 0) and np.all(rgb[fg].max(axis=1) > 0)
            # the object never touches the image border (bounding sphere of radius 0.46)
            assert not (fg[0].any() or fg[-1].any() or fg[:, 0].any() or fg[:, -1].any())


def test_visible_points_have_the_pixel_colour_and_label(project_np):
    """Flat rendering: where a point is the visible surface, the pixel shows its colour and part."""
    model = demo_data.make_model("car", 2, seed=1, n_views=3)
    pcl = shapenet.preprocess_pcl_gt(model["pcl"])
    for v, (az, el) in enumerate(np.radians(model["views"])):
        pix = project_np(pcl, az, el, 64, 64)
        r, c = np.round(pix[:, 0]).astype(int), np.round(pix[:, 1]).astype(int)
        coded = (pix[:, 2] - DEPTH_NEAR) / (DEPTH_FAR - DEPTH_NEAR) * 253
        visible = np.abs(model["depth"][v][r, c] - coded) <= 2  # about 0.015 world units
        assert visible.sum() > 100
        same_label = model["labels"][v][r, c][visible] == model["point_labels"][visible]
        same_colour = np.all(np.abs(model["rgb"][v][r, c][visible] / 255.0 - model["colours"][visible]) < 1e-6, axis=1)
        assert same_label.mean() > 0.95 and same_colour.mean() > 0.95


def test_every_part_appears():
    for cat, n in (("chair", 4), ("airplane", 4), ("car", 4)):
        seen = set()
        for i in range(12):
            parts = shapes.BUILDERS[cat](np.random.default_rng([i, 9]))
            seen |= {label for _, label, _ in parts}
        assert seen == set(range(1, n + 1)), cat


def test_generation_is_deterministic(tiny, tmp_path):
    """Same seed: the same bytes, whatever the number of worker processes; another seed differs."""
    again = tmp_path / "again"
    demo_data.generate(again, workers=2, **TINY)
    assert _tree(again) == _tree(tiny)
    other = tmp_path / "other"
    demo_data.generate(other, workers=1, **dict(TINY, seed=6, categories=("chair",), n_models=1))
    a = (other / "ShapeNet_pcl" / "03001627" / "chair_0000" / "pcl_1024_fps_trimesh.npy").read_bytes()
    b = (tiny / "ShapeNet_pcl" / "03001627" / "chair_0000" / "pcl_1024_fps_trimesh.npy").read_bytes()
    assert a != b


def test_refuses_to_overwrite_and_force_replaces(tmp_path):
    kw = dict(TINY, categories=("car",), n_models=1, n_views=1)
    demo_data.generate(tmp_path, workers=1, **kw)
    with pytest.raises(FileExistsError):
        demo_data.generate(tmp_path, workers=1, **kw)
    assert (
        demo_data.main(
            [
                "--out",
                str(tmp_path),
                "--categories",
                "car",
                "--n_models",
                "1",
                "--n_views",
                "1",
                "--quiet",
                "--workers",
                "1",
            ]
        )
        == 2
    )
    demo_data.generate(tmp_path, workers=1, force=True, **dict(kw, n_models=2))
    assert len(os.listdir(tmp_path / "ShapeNet_rendered" / "02958343")) == 2


def test_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = demo_data.make_model
    monkeypatch.setattr(demo_data, "make_model", failing)
    with pytest.raises(KeyboardInterrupt):
        demo_data.generate(tmp_path, workers=1, **dict(TINY, n_models=2, n_views=1))
    assert os.listdir(tmp_path) == []


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="no demo shapes"):
        demo_data.generate(tmp_path, categories=("lamp",), n_models=1, progress=False)
    with pytest.raises(SystemExit) as exc:
        demo_data.main(["--help"])
    assert exc.value.code == 0


def test_script_runs_without_path_hacks(tmp_path):
    out = tmp_path / "cli"
    res = subprocess.run(
        [
            sys.executable,
            str(REPO / "data" / "make_demo_data.py"),
            "--out",
            str(out),
            "--categories",
            "chair,car",
            "--n_models",
            "1",
            "--n_views",
            "1",
            "--quiet",
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert (out / "ShapeNet_rendered" / "02958343" / "car_0000" / "render_0.png").is_file()
    assert (out / demo_data.INFO_FILE).is_file()


def test_farthest_point_sampling_spreads_points():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(0, 0.01, (500, 3)), [[1.0, 0, 0], [0, 1.0, 0]]])
    idx = farthest_point_sampling(pts, 3, np.random.default_rng(1))
    assert len(set(idx.tolist())) == 3 and {500, 501} <= set(idx.tolist())


def test_shading_and_supersampling_options():
    flat = demo_data.make_model("chair", 1, seed=2, n_views=2)
    shaded = demo_data.make_model("chair", 1, seed=2, n_views=2, shading=True)
    centre_only = demo_data.make_model("chair", 1, seed=2, n_views=2, supersample=1)
    assert np.array_equal(flat["labels"], shaded["labels"]) and np.array_equal(flat["pcl"], shaded["pcl"])
    fg = flat["labels"] > 0
    assert np.all(shaded["rgb"][fg] <= flat["rgb"][fg]) and not np.array_equal(shaded["rgb"], flat["rgb"])
    # one ray per pixel sees a subset of the coverage mask, and the same colour where the centre ray hits
    small = centre_only["labels"] > 0
    assert np.all(fg[small]) and small.sum() < fg.sum()
    assert np.array_equal(centre_only["rgb"][small], flat["rgb"][small])


def test_temporary_folder_of_a_killed_run_is_removed(tmp_path):
    """kill -9 leaves the generator's hidden working folder; the next run removes it, but not the
    working folder of a generator that is still running (its lock is held)."""
    out = tmp_path / "demo"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "utils.datagen.demo_data",
            "--out",
            str(out),
            "--categories",
            "chair",
            "--n_models",
            "200",
            "--n_views",
            "2",
            "--workers",
            "1",
            "--quiet",
        ]
    )
    try:  # wait until its first models are written (200 models: it is far from done then)
        while proc.poll() is None and not list(out.glob(".demo_tmp_*/ShapeNet_rendered/*/*/view.txt")):
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    stale = list(out.glob(".demo_tmp_*"))
    assert len(stale) == 1 and any(stale[0].rglob("*.png"))
    live = out / ".demo_tmp_999999999_running"
    live.mkdir()
    fd = os.open(live / demo_data.TMP_OWNER, os.O_WRONLY | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a running generator holds it
    try:
        demo_data.generate(out, workers=1, **TINY)
        assert not stale[0].exists() and live.is_dir()
        assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [live.name]
    finally:
        os.close(fd)


def test_default_output_is_the_repositorys_data_folder():
    """``python data/make_demo_data.py`` writes where the loaders and run_demo.sh look: <repo>/data."""
    repo = Path(__file__).resolve().parents[1]
    assert demo_data.DEFAULT_OUT == repo / "data" and (repo / "data" / "make_demo_data.py").is_file()


def test_ensure_demo_data_finds_an_existing_data_set(tiny_data):
    """scripts/ensure_demo_data.sh (run_demo.sh's data step) sees the data set of either task and
    makes nothing; it would otherwise try to generate over it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for task in ("rgb", "partseg"):
        proc = subprocess.run(
            ["bash", os.path.join(root, "scripts", "ensure_demo_data.sh"), "chair", task],
            capture_output=True,
            text=True,
            env=dict(os.environ, DIFFER_DATA_DIR=str(tiny_data)),
        )
        assert proc.returncode == 0 and "using the data set already in" in proc.stdout, (
            task,
            proc.stdout + proc.stderr,
        )
