"""Using a trained model on your own images (utils/eval/inference.py, rgb|partseg/predict_*.py).

A tiny experiment per task is trained for two iterations on the shared tiny data set; the tests
predict on images of other sizes and kinds, read the PLYs back with trimesh, compare with what
the metrics path computes for the same data-set image, and load the exported SavedModel in a
fresh process that imports nothing but TensorFlow and numpy.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import trimesh

import tiny
from utils.data import tree_dirs
from utils.eval import inference
from utils.task import task_from_ref

SYNSET_CHAIR = "03001627"


def _train(task, data, exp, iters=2):
    """The tiny configuration (tests/tiny.py) at the default network size (1024 points)."""
    extra = ["--N_PTS", "1024", "--bottleneck", "128", "--lr", "1e-3", "--seed", "5"]
    return tiny.train(task, data, exp, iters, extra + (["--skipconn"] if task == "rgb" else []))


@pytest.fixture(scope="module")
def rgb_exp(tiny_data, tmp_path_factory):
    return _train("rgb", tiny_data, str(tmp_path_factory.mktemp("pred") / "rgb"))


@pytest.fixture(scope="module")
def partseg_exp(tiny_data, tmp_path_factory):
    return _train("partseg", tiny_data, str(tmp_path_factory.mktemp("pred") / "partseg"))


def _render_dir(data, task, model_id):
    return os.path.join(tree_dirs(data, task_from_ref(task).data_tree)["rendered"], SYNSET_CHAIR, model_id)


def _test_models(data, task="rgb"):
    path = os.path.join(data, "partseg" if task == "partseg" else "", "splits", f"{SYNSET_CHAIR}_test_list.txt")
    if os.path.isfile(path):
        return open(path).read().split()
    return [str(m) for m in np.load(path[:-4] + ".npy")]


def _ply(path):
    """(xyz float (N, 3), rgb uint8 (N, 3), raw vertex record array) of a PLY file, via trimesh."""
    cloud = trimesh.load(path)
    assert isinstance(cloud, trimesh.PointCloud)
    return np.asarray(cloud.vertices), np.asarray(cloud.colors)[:, :3], cloud.metadata["_ply_raw"]["vertex"]["data"]


def _rgba_version(render_path, out_path, rng):
    """The 64x64 render, upscaled 2x (nearest) into a 128-row x 160-column RGBA PNG: opaque where
    the object is, transparent elsewhere (with random colours under alpha = 0), 16 transparent
    columns on each side. Cropped to the centre square, composited on black and shrunk back,
    this is exactly the render again (the demo renders' background is black)."""
    bgr = cv2.imread(render_path, cv2.IMREAD_COLOR)
    big = np.kron(bgr, np.ones((2, 2, 1), np.uint8))
    fg = big.max(axis=-1) > 0
    rgba = rng.integers(0, 256, (128, 160, 4)).astype(np.uint8)
    rgba[..., 3] = 0
    rgba[:, 16:144, :3][fg] = big[fg]
    rgba[:, 16:144, 3][fg] = 255
    assert cv2.imwrite(out_path, rgba)
    return out_path


@pytest.mark.slow
def test_predict_rgb_images_folder_rgba_corrupt_and_metrics_path(rgb_exp, tiny_data, tmp_path, capsys):
    from rgb import metrics_rgb, predict_rgb

    model_id = _test_models(tiny_data)[0]
    rdir = _render_dir(tiny_data, "rgb", model_id)
    renders = [os.path.join(rdir, f"render_{k}.png") for k in range(4)]

    # --- the metrics path: the model's cloud for the first test sample (network frame)
    mout = str(tmp_path / "metrics")
    metrics_rgb.main(
        [
            "--exp",
            rgb_exp,
            "--snapshot",
            "latest",
            "--eval_set",
            "test",
            "--out",
            mout,
            "--batch_size",
            "3",
            "--baseline_models",
            "2",
            "--save_ply",
            "--n_pictures",
            "1",
        ]
    )
    # (every input view is a sample; the pictures take each model's first: view 0, render_0.png)
    m_xyz, m_rgb, _ = _ply(os.path.join(mout, "ply", f"test_000_{model_id}_view0_pred.ply"))

    # --- inputs: a folder with two images of different sizes (one RGBA) and a corrupt file
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(renders[0], folder / "chair.png")
    _rgba_version(renders[0], str(folder / "chair_rgba.png"), np.random.default_rng(0))
    (folder / "broken.png").write_bytes(b"this is not a PNG file")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    out = tmp_path / "out"
    res = predict_rgb.main(
        [
            "--exp",
            rgb_exp,
            "--snapshot",
            "latest",
            str(folder),
            *renders[1:],
            str(tmp_path / "missing.jpg"),
            "--out",
            str(out),
            "--npy",
            "--frame",
            "network",
            "--fit",
            "crop",  # as the metrics path sees it (the RGBA's alpha would be fitted)
            "--batch_size",
            "2",
            "--no_progress",
        ]
    )
    err = capsys.readouterr().err
    assert str(folder / "broken.png") in err and str(tmp_path / "missing.jpg") in err
    assert sorted(p for p, _ in res["errors"]) == sorted([str(folder / "broken.png"), str(tmp_path / "missing.jpg")])
    assert len(res["outputs"]) == 2 + 3 and res["images_per_s"] > 0
    for name in ("chair", "chair_rgba"):
        assert os.path.isfile(out / f"{name}.png") and not os.path.exists(out / f"{name}.gif")

    # --- the PLY as trimesh reads it: N points, the predicted colours, the predicted coordinates
    xyz = {n: np.load(out / f"{n}_xyz.npy") for n in ("chair", "chair_rgba", "render_1", "render_2", "render_3")}
    feat = np.load(out / "chair_features.npy")
    p_xyz, p_rgb, _ = _ply(str(out / "chair.ply"))
    assert p_xyz.shape == (1024, 3) and feat.shape == (1024, 3)
    np.testing.assert_allclose(p_xyz, xyz["chair"], atol=1e-6)
    assert np.all(np.abs(p_rgb.astype(np.float64) - 255 * np.clip(feat, 0, 1)) <= 0.5 + 1e-4)

    # --- the RGBA image (other size, transparent background with junk colours) gives the same cloud
    np.testing.assert_allclose(xyz["chair_rgba"], xyz["chair"], atol=1e-5)

    # --- the metrics path's cloud for view 0 is the prediction for render_0.png ("chair")
    dists = sorted((np.abs(xyz[n] - m_xyz).max(), n) for n in ("chair", "render_1", "render_2", "render_3"))
    assert dists[0][1] == "chair" and dists[0][0] < 1e-5, dists
    assert dists[1][0] > 1e-3, dists  # the views are told apart: the match is not a coincidence
    _, best_rgb, _ = _ply(str(out / "chair.ply"))
    assert np.abs(best_rgb.astype(int) - m_rgb.astype(int)).max() <= 1


@pytest.mark.slow
def test_predict_partseg_labels_in_ply(partseg_exp, tiny_data, tmp_path):
    from partseg import predict_partseg
    from partseg.task import TASK

    model_id = _test_models(tiny_data, "partseg")[0]
    src = os.path.join(_render_dir(tiny_data, "partseg", model_id), "render_0.png")
    img = cv2.imread(src)
    photo = tmp_path / "photo.jpg"  # a JPEG of another size
    assert cv2.imwrite(str(photo), cv2.resize(img, (96, 96), interpolation=cv2.INTER_CUBIC))
    out = tmp_path / "out"
    res = predict_partseg.main(
        ["--exp", partseg_exp, "--snapshot", "best", str(photo), "--out", str(out), "--npy", "--gif", "--no_progress"]
    )
    assert not res["errors"]
    p_xyz, p_rgb, raw = _ply(str(out / "photo.ply"))
    probs = np.load(out / "photo_features.npy")
    assert p_xyz.shape == (1024, 3) and probs.shape == (1024, 4)
    labels = np.asarray(raw["label"])
    np.testing.assert_array_equal(labels, probs.argmax(axis=1))
    assert labels.min() >= 0 and labels.max() < 4
    # one colour per part: points with the same label share a colour, different labels differ
    colours = {int(k): {tuple(c) for c in p_rgb[labels == k]} for k in np.unique(labels)}
    assert all(len(c) == 1 for c in colours.values())
    assert len({next(iter(c)) for c in colours.values()}) == len(colours)
    # default frame: the data set's (ShapeNet, y up): network (a, b, c) -> (c, -a, -b)
    np.testing.assert_allclose(np.load(out / "photo_xyz.npy"), p_xyz, atol=1e-6)  # .npy follow --frame too
    with inference.Predictor(partseg_exp, TASK, "best", batch_size=1) as pred:
        a, b, c = pred.predict(inference.load_image(str(photo), 64, 64)[None])[0][0].T
    np.testing.assert_allclose(p_xyz, np.stack([c, -a, -b], axis=1), atol=1e-5)
    assert os.path.getsize(out / "photo.gif") > 0 and os.path.getsize(out / "photo.png") > 0


@pytest.mark.slow
def test_savedmodel_loads_without_this_code(rgb_exp, tmp_path):
    from rgb.task import TASK

    rng = np.random.default_rng(1)
    images = rng.random((3, 64, 64, 3), dtype=np.float32)
    with inference.Predictor(rgb_exp, TASK, "latest", batch_size=2) as pred:
        xyz, feat = pred.predict(images)
        export = pred.export(str(tmp_path / "saved"), dict(background_rgb=[0, 0, 0]))
        with pytest.raises(FileExistsError, match="already exists"):
            pred.export(export)
    info = json.load(open(os.path.join(export, "assets.extra", "differ.json")))
    assert info["task"] == "rgb" and info["IMG_H"] == 64 and info["N_PTS"] == 1024
    assert info["background_rgb"] == [0, 0, 0]
    np.save(tmp_path / "images.npy", images)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "f = m.signatures['serving_default']\n"
        "out = f(image=tf.constant(np.load(sys.argv[2])))\n"
        "np.savez(sys.argv[3], xyz=out['xyz'].numpy(), features=out['features'].numpy())\n"
        "mine = [k for k in sys.modules if k.split('.')[0] in ('utils', 'rgb', 'partseg', 'tf_ops')]\n"
        "assert not mine, mine\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run(
        [sys.executable, "-c", script, export, str(tmp_path / "images.npy"), str(tmp_path / "out.npz")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "reference variable" not in proc.stderr  # resource variables: TF2 loads them cleanly
    got = np.load(tmp_path / "out.npz")
    assert got["xyz"].shape == (3, 1024, 3)
    np.testing.assert_allclose(got["xyz"], xyz, atol=1e-5)
    np.testing.assert_allclose(got["features"], feat, atol=1e-5)


def test_wrong_task_and_bad_flags(rgb_exp, capsys):
    from partseg.task import TASK

    with pytest.raises(ValueError, match="trained for 'rgb'.*predict_rgb"):
        inference.Predictor(rgb_exp, TASK)
    with pytest.raises(SystemExit):
        inference.predict_parser("rgb").parse_args(["--exp", "x", "--background", "300,0,0"])
    assert "R,G,B" in capsys.readouterr().err
    assert "plain background" in inference.predict_parser("rgb").format_help()


# ---------------------------------------------------------------- image handling, hand-computed
def test_rgba_is_composited_on_the_background():
    img = np.zeros((2, 2, 4), np.float32)
    img[..., 0] = 1.0  # red ...
    img[..., 3] = [[1.0, 0.5], [0.0, 0.25]]  # ... with these alphas
    out = inference.to_network_input(img, 2, 2, background=(0.0, 0.0, 1.0))
    np.testing.assert_allclose(out[..., 0], [[1.0, 0.5], [0.0, 0.25]])
    np.testing.assert_allclose(out[..., 2], [[0.0, 0.5], [1.0, 0.75]])
    np.testing.assert_allclose(out[..., 1], 0.0)


def test_crop_pad_and_resize():
    wide = np.arange(4 * 8, dtype=np.float32).reshape(4, 8, 1).repeat(3, axis=-1) / 100
    np.testing.assert_array_equal(inference.to_network_input(wide, 4, 4, "crop"), wide[:, 2:6])
    tall = wide.transpose(1, 0, 2)  # 8 x 4
    np.testing.assert_array_equal(inference.to_network_input(tall, 4, 4, "crop"), tall[2:6])
    padded = inference.to_network_input(wide[:2], 4, 4, "pad", background=(0.5, 0.5, 0.5))  # 2 x 8 -> 8 x 8 -> 4 x 4
    np.testing.assert_allclose(padded[0], 0.5)  # rows from the padding only
    np.testing.assert_allclose(padded[-1], 0.5)
    # the middle rows average one image row with one padding row (2x2 area averaging)
    np.testing.assert_allclose(padded[1, 0, 0], (0.5 * 2 + wide[0, 0, 0] + wide[0, 1, 0]) / 4, atol=1e-6)
    up = inference.to_network_input(np.full((3, 3, 3), 0.25, np.float32), 64, 64)
    assert up.shape == (64, 64, 3) and np.allclose(up, 0.25)


def test_read_image_kinds_and_errors(tmp_path):
    bgr = np.zeros((5, 7, 3), np.uint8)
    bgr[..., 2] = 255  # OpenCV stores BGR: this is pure red
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    np.testing.assert_allclose(inference.read_image(str(tmp_path / "red.png"))[0, 0], [1, 0, 0])
    grey16 = np.full((4, 4), 65535 // 5, np.uint16)
    cv2.imwrite(str(tmp_path / "grey16.png"), grey16)
    got = inference.read_image(str(tmp_path / "grey16.png"))
    assert got.shape == (4, 4, 3) and np.allclose(got, 0.2, atol=1e-4)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("hello")
    for name in ("empty.png", "text.jpg", "absent.png"):
        with pytest.raises(inference.ImageError, match=str(tmp_path / name)):
            inference.read_image(str(tmp_path / name))
    files, errors = inference.find_images([str(tmp_path), str(tmp_path / "absent")])
    assert [os.path.basename(f) for f in files] == ["empty.png", "grey16.png", "red.png", "text.jpg"]
    assert errors == [(str(tmp_path / "absent"), "no such file or folder")]
    assert inference.output_names(["a/x.png", "b/x.png", "x.jpg", "y.png"]) == ["x", "x_2", "x_3", "y"]


def _exif_jpeg(path, rgb, orientation):
    """A JPEG of the pixels ``rgb`` (uint8 (h, w, 3)) tagged with EXIF ``orientation`` (written with Pillow)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.slow
def test_exif_rotated_jpeg_predicts_the_same_cloud_as_the_upright_image(rgb_exp, tiny_data, tmp_path, capsys):
    """A phone's photo: the pixels stored sideways, EXIF orientation 6 (turn 90 degrees clockwise to
    view). Its cloud is the one of the upright picture, written as a PNG from the JPEG's decoded
    pixels turned by hand (upright[r, c] = stored[h - 1 - c, r]); the sideways pixels give another."""
    from rgb import predict_rgb

    render = os.path.join(_render_dir(tiny_data, "rgb", _test_models(tiny_data)[0]), "render_0.png")
    upright = cv2.imread(render)[..., ::-1]
    upright = np.ascontiguousarray(np.pad(upright, ((0, 0), (16, 16), (0, 0))))  # 64 x 96: not square
    _exif_jpeg(tmp_path / "phone.jpg", np.ascontiguousarray(np.rot90(upright)), 6)  # stored turned left
    stored = cv2.imread(str(tmp_path / "phone.jpg"), cv2.IMREAD_UNCHANGED)  # the pixels as stored (BGR)
    h, w = stored.shape[:2]
    assert (h, w) == (96, 64)
    r, c = np.mgrid[:w, :h]
    assert cv2.imwrite(str(tmp_path / "upright.png"), stored[h - 1 - c, r])
    assert cv2.imwrite(str(tmp_path / "sideways.png"), stored)
    clouds = {}
    for name in ("phone.jpg", "upright.png", "sideways.png"):  # one image per run: the same batch position
        out = tmp_path / name.replace(".", "_")
        args = ["--exp", rgb_exp, "--snapshot", "latest", str(tmp_path / name), "--out", str(out)]
        res = predict_rgb.main(args + ["--npy", "--no_sheet", "--no_progress"])
        assert not res["errors"]
        clouds[name] = np.load(out / f"{name.split('.')[0]}_xyz.npy")
    np.testing.assert_array_equal(clouds["phone.jpg"], clouds["upright.png"])
    assert np.abs(clouds["sideways.png"] - clouds["upright.png"]).max() > 1e-3  # the orientation matters


def test_read_image_applies_every_exif_orientation(tmp_path):
    """All eight EXIF orientations, in PNG (lossless) and JPEG, against Pillow's ImageOps.exif_transpose
    (an independent implementation of what a photo viewer shows)."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (5, 7, 3)).astype(np.uint8)
    for o in range(1, 9):
        for ext in ("png", "jpg"):
            path = tmp_path / f"o{o}.{ext}"
            exif = Image.Exif()
            exif[0x0112] = o
            Image.fromarray(stored).save(path, quality=100, exif=exif.tobytes())
            want = np.asarray(ImageOps.exif_transpose(Image.open(path))).astype(np.float32) / 255
            got = inference.read_image(str(path))
            assert got.shape == want.shape == ((5, 7, 3) if o <= 4 else (7, 5, 3)), (o, ext)
            if ext == "png":
                np.testing.assert_array_equal(got, want, err_msg=f"orientation {o}")
            else:  # two JPEG decoders: a few levels apart at most, never another orientation
                assert np.abs(got - want).max() <= 8 / 255, (o, ext)


def test_large_inputs_are_reduced_with_a_note_or_refused(tmp_path):
    """Over MAX_SIDE px a side: reduced on reading, with a note (a flat colour stays that colour);
    over MAX_PIXELS: refused from the header, before anything is decoded."""
    wide = np.zeros((300, 5000, 3), np.uint8)
    wide[...] = (10, 200, 90)  # BGR
    cv2.imwrite(str(tmp_path / "wide.png"), wide)
    notes = []
    img = inference.read_image(str(tmp_path / "wide.png"), notes)
    assert img.shape == (round(300 * 4096 / 5000), 4096, 3)  # 246 x 4096
    np.testing.assert_array_equal(img[0, 0], np.float32([90, 200, 10]) / 255)
    assert np.all(img == img[0, 0])
    assert notes == [
        f"{tmp_path / 'wide.png'}: 5000x300 px, reduced to 4096x246 px "
        "(inputs over 4096 px a side are reduced before use)"
    ]
    data = bytearray(cv2.imencode(".png", np.zeros((2, 2), np.uint8))[1].tobytes())
    data[16:24] = (12000).to_bytes(4, "big") + (9000).to_bytes(4, "big")  # the header says 12000 x 9000
    (tmp_path / "huge.png").write_bytes(bytes(data))
    with pytest.raises(inference.ImageError, match=r"huge\.png: 12000x9000 px \(108 megapixels\), more than the 100"):
        inference.read_image(str(tmp_path / "huge.png"))


WRONG_INPUTS = """
import json, sys
import numpy as np
import tensorflow as tf

f = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
cases = {
    "good": np.zeros((2, 64, 64, 3), np.float32),
    "larger": np.zeros((2, 128, 128, 3), np.float32),
    "no batch axis": np.zeros((64, 64, 3), np.float32),
    "rgba": np.zeros((1, 64, 64, 4), np.float32),
    "uint8": np.zeros((1, 64, 64, 3), np.uint8),
    "float64": np.zeros((1, 64, 64, 3), np.float64),
}
out = {}
for name, x in cases.items():
    try:
        out[name] = ["clouds", int(f(image=tf.constant(x))["xyz"].shape[0])]
    except Exception as err:
        out[name] = [type(err).__name__, str(err)]
print(json.dumps(out))
print("survived")
"""


@pytest.mark.slow
def test_savedmodel_and_predict_refuse_wrong_inputs_clearly(rgb_exp, tmp_path):
    """The exported signature fixes rank, size and dtype: a (2, 128, 128, 3) batch (which gave 8
    clouds), an image without its batch axis (which aborted the process in a oneDNN check), 4
    channels, uint8, float64 each raise an error saying what was expected, in a process that goes
    on; Predictor.predict checks the same in Python."""
    from rgb.task import TASK

    with inference.Predictor(rgb_exp, TASK, "latest", batch_size=2) as pred:
        export = pred.export(str(tmp_path / "saved"))
        for images, match in [
            (np.zeros((2, 128, 128, 3), np.float32), r"got shape \(2, 128, 128, 3\); resize it first"),
            (np.zeros((64, 64, 3), np.float32), r"got shape \(64, 64, 3\); one image: add a batch axis"),
            (np.zeros((1, 64, 64, 4), np.float32), r"got shape \(1, 64, 64, 4\)"),
            (np.zeros((1, 64, 64, 3), np.uint8), r"got dtype uint8; divide 8-bit pixels by 255"),
            (np.full((1, 64, 64, 3), 255.0), r"got values from 255 to 255"),
            (np.full((1, 64, 64, 3), np.nan, np.float32), r"got NaN or inf"),
        ]:
            with pytest.raises(
                ValueError, match=r"^images: expected float32 \(n, 64, 64, 3\) RGB in \[0, 1\], " + match
            ):
                pred.predict(images)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.run(
        [sys.executable, "-c", WRONG_INPUTS, export], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("survived")
    got = json.loads(proc.stdout.strip().splitlines()[-2])
    assert got["good"] == ["clouds", 2]
    for name in ("larger", "no batch axis", "rgba"):
        kind, text = got[name]
        assert kind == "InvalidArgumentError", (name, got[name])
        assert re.search(r"Shape of tensor image \[[\d,]+\] is not compatible with expected shape \[\?,64,64,3\]", text)
    for name, dtype in (("uint8", "uint8"), ("float64", "double")):
        kind, text = got[name]
        assert kind == "InvalidArgumentError" and f"expected to be a float tensor but is a {dtype} tensor" in text
