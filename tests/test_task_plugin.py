"""The task is the only extension point: a third task, defined here in the test, trains, evaluates
and predicts through the shared code without touching it; and no shared module names a task.

The toy task ('grey'): one sigmoid channel per point, the grey value (mean of R, G, B) of the
colour data set, supervised through the depth-aware feature projection like the colours.
"""

import ast
import csv
import json
import os

import imageio.v2 as imageio
import numpy as np
import pytest
import trimesh

import tiny
from utils import losses
from utils.common.cli import non_negative_float
from utils.common.tfv1 import tf
from utils.data import BatchPipeline
from utils.data.layout import PCL_COLOURS_FILE, render_file
from utils.data.readers import read_cloud_colours, read_rgb
from utils.render import projection
from utils.task import Task, available_tasks, task_from_ref

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAIR = "03001627"


def _grey(rgb):
    return np.mean(rgb, axis=-1, keepdims=True)


class GreyTask(Task):
    """A per-point grey value in [0, 1], read from the colour tree."""

    name = "grey"
    view_key, point_key = "grey", "pcl_grey"
    feature_dims = (1,)
    activation = "sigmoid"
    weight_flag = "wt_grey"
    headline = ("chamfer", "grey")
    presets = dict(recommended=dict(wt_grey=1.0), original=dict(wt_grey=1.0))
    metric_phrase = "grey error"

    def add_train_flags(self, groups):
        groups["loss weights"].add_argument("--wt_grey", type=non_negative_float, help="L2 on projected grey")

    def load_targets(self, pipe, model, views, masks):
        rdir, pdir = pipe.model_dir("rendered", model), pipe.model_dir("pcl", model)
        rgb = np.stack([read_rgb(os.path.join(rdir, render_file(v)), pipe.img_h, pipe.img_w) for v in views])
        return {
            self.view_key: _grey(rgb) * masks[..., None],
            self.point_key: _grey(read_cloud_colours(os.path.join(pdir, PCL_COLOURS_FILE), pipe.n_pts)),
        }

    def n_feat(self, args):
        return 1

    def project(self, pix, feat, *, img_h, img_w, well_radius, beta, impl):
        grey, _ = projection.feature_projection(pix, feat, img_h, img_w, well_radius, beta, impl=impl)
        return grey

    def view_loss(self, proj, gt_view):
        return losses.rgb_l2(proj, gt_view)

    def feature_loss_3d(self, feat, gt_feat, idx_fwd, idx_bwd):
        return losses.rgb_l2(tf.gather(feat, idx_fwd, batch_dims=1), gt_feat) + losses.rgb_l2(
            tf.gather(gt_feat, idx_bwd, batch_dims=1), feat
        )

    def display(self, proj):
        return tf.tile(tf.clip_by_value(proj, 0.0, 1.0), [1, 1, 1, 3])

    def display_gt(self, gt_view):
        return tf.tile(gt_view, [1, 1, 1, 3])

    def display_np(self, view, gt):
        return np.repeat(np.clip(view, 0.0, 1.0), 3, axis=-1)

    def point_colours(self, feat):
        return np.repeat(np.clip(feat, 0.0, 1.0), 3, axis=-1)

    def gt_point_colours(self, gt_feat):
        return np.repeat(gt_feat, 3, axis=-1)

    def point_properties(self, feat):
        return dict(grey=feat[:, 0].astype(np.float32))

    def feature_metrics(self, gt_feat, feat, idx_fwd, idx_bwd, margs):
        fwd = np.abs(gt_feat[..., 0] - np.take_along_axis(feat[..., 0], idx_fwd, 1)).mean(1)
        bwd = np.abs(feat[..., 0] - np.take_along_axis(gt_feat[..., 0], idx_bwd, 1)).mean(1)
        return dict(grey_fwd=fwd, grey_bwd=bwd, grey=fwd + bwd)

    def baselines(self, train_clouds, train_feats, medoid, n_feat):
        xyz, grey = train_clouds[medoid], float(train_feats.mean())

        def medoid_mean_grey(pred_xyz, pred_feat):
            b = len(pred_xyz)
            return np.broadcast_to(xyz, (b,) + xyz.shape), np.full((b, len(xyz), 1), grey, np.float32)

        return [("medoid_baseline", medoid_mean_grey)]


TASK = GreyTask()


def _oracle_grey_view(data, model_id, view):
    """Grey of a render, masked by its depth code (< 254), read with imageio: (H, W, 1)."""
    folder = os.path.join(data, "ShapeNet_rendered", CHAIR, model_id)
    rgb = imageio.imread(os.path.join(folder, f"render_{view}.png"))[..., :3] / 255.0
    mask = imageio.imread(os.path.join(folder, f"depth_{view}.png"))
    mask = (mask[..., 0] if mask.ndim == 3 else mask) < 254
    return (rgb.mean(-1) * mask)[..., None]


def test_the_toy_task_reads_its_targets(tiny_data):
    """The pipeline asks the task for its targets: the grey maps equal numpy's from the PNG files."""
    with BatchPipeline(tiny_data, "chair", "train", task=TASK, batch_size=2, n_views=2, num_workers=0) as p:
        b = p.get_batch(0)
    assert b["grey"].shape == (2, 2, 64, 64, 1) and b["grey"].dtype == np.float32
    assert b["pcl_grey"].shape == (2, 1024, 1)
    for i in range(2):
        for k, v in enumerate(b["views"][i]):
            np.testing.assert_allclose(b["grey"][i, k], _oracle_grey_view(tiny_data, b["model_id"][i], v), atol=1e-6)
        raw = np.load(os.path.join(tiny_data, "ShapeNet_pcl", CHAIR, b["model_id"][i], PCL_COLOURS_FILE))
        np.testing.assert_allclose(
            b["pcl_grey"][i, :, 0], raw[:, 3:].mean(1) / (255.0 if raw[:, 3:].max() > 1 else 1), atol=1e-6
        )


@pytest.mark.slow
def test_a_third_task_trains_evaluates_and_predicts(tiny_data, tmp_path):
    from utils.eval import evaluate, inference
    from utils.train import config

    exp = str(tmp_path / "exp")
    tiny.train(
        TASK,
        tiny_data,
        exp,
        3,
        ("--N_PTS", "128", "--print_n", "1", "--save_n", "3", "--save_model_n", "3", "--wt_grey", "2.5"),
    )
    saved = json.load(open(os.path.join(exp, "args.json")))
    assert saved["task"] == "grey" and saved["task_module"] == __name__ and saved["wt_grey"] == 2.5
    import tf_ops  # args.json records the implementation used (--projection auto is the default)

    assert saved["projection"] == ("fused" if tf_ops.backend() == "compiled" else "local")
    assert task_from_ref("grey", __name__) is TASK  # what metrics and predict find from args.json
    log = open(os.path.join(exp, "log.txt")).read()
    lines = [line for line in log.splitlines() if "iter 1:" in line or "iter 3:" in line]
    assert len(lines) == 2 and all("feat " in line and "total " in line for line in lines)
    assert "--wt_grey" in config.train_parser(TASK).format_help()

    out = str(tmp_path / "metrics")
    summary = evaluate.main(
        TASK,
        [
            "--exp",
            exp,
            "--snapshot",
            "latest",
            "--eval_set",
            "test",
            "--out",
            out,
            "--batch_size",
            "2",
            "--baseline_models",
            "8",
            "--save_ply",
            "--n_pictures",
            "1",
        ],
    )
    assert summary["task"] == "grey" and summary["headline"] == ["chamfer", "grey"]
    with open(os.path.join(out, "per_sample.csv")) as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == {"model", "medoid_baseline"}
    assert len([r for r in rows if r["method"] == "model"]) == summary["n_samples"] == 4
    # The baseline predicts one grey everywhere: the mean over the 8 training clouds. Its forward
    # error needs no correspondences: mean |grey_gt - mean grey| over the test cloud (numpy oracle).
    train_ids = [m for m in np.load(os.path.join(tiny_data, "splits", f"{CHAIR}_train_list.npy"))]
    [test_id] = {r["model_id"] for r in rows}

    def cloud_grey(mid):
        raw = np.load(os.path.join(tiny_data, "ShapeNet_pcl", CHAIR, str(mid), PCL_COLOURS_FILE))[:, 3:]
        return raw.mean(1) / (255.0 if raw.max() > 1 else 1.0)

    g0 = np.mean([cloud_grey(m) for m in train_ids])
    expect = np.abs(cloud_grey(test_id) - g0).mean()
    for r in rows:
        if r["method"] == "medoid_baseline":
            np.testing.assert_allclose(float(r["grey_fwd"]), expect, rtol=1e-4)
        assert 0.0 <= float(r["grey"]) <= 2.0 and np.isfinite(float(r["chamfer"]))
    [ply] = os.listdir(os.path.join(out, "ply"))[:1]
    colours = np.asarray(trimesh.load(os.path.join(out, "ply", ply)).colors)[:, :3]
    assert np.array_equal(colours[:, 0], colours[:, 1]) and np.array_equal(colours[:, 1], colours[:, 2])

    image = os.path.join(tiny_data, "ShapeNet_rendered", CHAIR, test_id, render_file(0))
    pred_dir = str(tmp_path / "pred")
    result = inference.main(
        TASK, ["--exp", exp, "--snapshot", "latest", image, "--out", pred_dir, "--npy", "--no_sheet", "--no_progress"]
    )
    assert not result["errors"]
    feat = np.load(os.path.join(pred_dir, "render_0_features.npy"))
    vertex = trimesh.load(os.path.join(pred_dir, "render_0.ply")).metadata["_ply_raw"]["vertex"]["data"]
    assert feat.shape == (128, 1) and np.all((feat >= 0) & (feat <= 1))
    np.testing.assert_allclose(vertex["grey"], feat[:, 0], rtol=1e-6)  # the task's PLY property


# ----------------------------------------------------------------------------- no names outside tasks
SHARED = ("utils", "benchmarks", "data", "tf_ops")
# The one place a task's word may appear as a value in shared code: the layout's name of the
# part-labelled tree's folder, a fact of the original release's file layout (the part task
# declares it as its data_tree; the data makers write it).
ALLOWED = {("utils/data/layout.py", "PART_TREE_DIR")}


def _docstrings(tree):
    out = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        ):
            out.add(id(node.body[0].value))
    return out


def task_names_in(path, rel, names):
    """['<rel>:<line>: ...'] where a shared module names a task: imports a task's package, or uses a
    task's name as a value (compared with, passed, listed, defaulted). Docstrings are prose; record
    fields read as ``x['name']`` / ``x.get('name')`` are data keys; :data:`ALLOWED` declarations pass."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            skip.add(id(node.slice))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            skip.add(id(node.args[0]))
        elif isinstance(node, ast.Assign) and any((rel, getattr(t, "id", None)) in ALLOWED for t in node.targets):
            skip.add(id(node.value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mods = [node.module or ""]
        else:
            mods = []
        found += [f"{rel}:{node.lineno}: imports {m}" for m in mods if m.split(".")[0] in names]
        if isinstance(node, ast.Constant) and node.value in names and id(node) not in skip:
            found.append(f"{rel}:{node.lineno}: names the task {node.value!r}")
    return found


def _shared_files():
    for folder in SHARED:
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    yield path, os.path.relpath(path, ROOT).replace(os.sep, "/")


def test_the_task_folders_are_found():
    assert {"rgb", "partseg"} <= set(available_tasks())


def test_no_shared_module_names_a_task():
    names = set(available_tasks())
    found = [hit for path, rel in _shared_files() for hit in task_names_in(path, rel, names)]
    assert not found, "shared code that names a task (move it into the task's Task):\n" + "\n".join(found)


@pytest.mark.parametrize(
    "code, hits",
    [
        ("if task == 'rgb':\n    pass", 1),
        ("flags = ['--wt_x' if t.name != \"partseg\" else '--y']", 1),
        ("def f(task='rgb'):\n    pass", 1),
        ("TASKS = ('rgb', 'partseg')", 2),
        ("from partseg.task import TASK", 1),
        ("import rgb.task", 1),
        ("x = batch['rgb'] + rec.get('partseg', 0)", 0),  # data keys
        ("def f():\n    '''rgb'''\n    return 1", 0),  # a docstring
        ("PART_TREE_DIR = 'partseg'", 0),  # the allowed declaration (in layout.py only)
    ],
)
def test_the_name_check_finds_task_names(tmp_path, code, hits):
    path = tmp_path / "m.py"
    path.write_text(code + "\n")
    assert len(task_names_in(str(path), "utils/data/layout.py", {"rgb", "partseg"})) == hits
    if code.startswith("PART_TREE_DIR"):
        assert len(task_names_in(str(path), "utils/data/other.py", {"rgb", "partseg"})) == 1
