"""Side-resolved colour errors (metrics_rgb.py on data with a side record): hidden side, visible
side and the edge between them, for the model, the image-blind baseline and the floor.

Oracle: brute force in numpy on a tiny experiment: the clouds scaled to the unit cube by hand, every
pairwise distance, the nearest predicted point of each ground-truth point, the distance of each
ground-truth point to the other side by a full distance matrix; the predictions read back from
``--save_predictions`` and the ground truth from the data files."""

import csv
import json
import os
import shutil

import numpy as np
import pytest

import tiny
from utils.data import shapenet

CHAIR = "03001627"
RADIUS = 0.05


@pytest.fixture(scope="module")
def complementary_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("complementary") / "data"
    return tiny.make_data(out, 0, "--colours", "complementary", "--quiet")  # its test chair has all three groups


@pytest.fixture(scope="module")
def evaluated(complementary_data, train_tiny, tmp_path_factory):
    from rgb import metrics_rgb

    base = tmp_path_factory.mktemp("side_metrics")
    exp = train_tiny(
        "rgb", complementary_data, base / "exp", iters=2, extra=("--N_PTS", "1024", "--lr", "1e-3", "--seed", "5")
    )
    out = str(base / "metrics")
    summary = metrics_rgb.main(
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
            "3",
            "--baseline_models",
            "8",
            "--save_predictions",
        ]
    )
    with open(os.path.join(out, "per_sample.csv")) as f:
        rows = list(csv.DictReader(f))
    return exp, out, summary, rows


def _unit(xyz):
    xyz = np.asarray(xyz, np.float64)
    lo, hi = xyz.min(0), xyz.max(0)
    return (xyz - (lo + hi) / 2) / (hi - lo).max()


def _pcl_dir(data, mid):
    return os.path.join(data, "ShapeNet_pcl", CHAIR, mid)


def _gt(data, mid, resample=False):
    """(xyz (N, 3) in the loaders' frame, colours (N, 3) in [0, 1]) from the files."""
    name = "pcl_1024_fps_trimesh_resample_colors.npy" if resample else "pcl_1024_fps_trimesh_colors.npy"
    raw = np.load(os.path.join(_pcl_dir(data, mid), name)).astype(np.float64)
    return shapenet.preprocess_pcl_gt(raw[:, :3]), raw[:, 3:]


def _brute(gt_xyz, gt_col, sides, xyz, col):
    """(hidden, visible, edge) forward colour errors by brute force."""
    g, p = _unit(gt_xyz), _unit(xyz)
    nearest = ((g[:, None] - p[None]) ** 2).sum(-1).argmin(1)
    err = ((col[nearest] - gt_col) ** 2).mean(1)
    dist = np.sqrt(((g[:, None] - g[None]) ** 2).sum(-1))
    to_other = np.where(sides[:, None] != sides[None], dist, np.inf).min(1)
    edge = to_other < RADIUS
    return err[sides & ~edge].mean(), err[~sides & ~edge].mean(), err[edge].mean()


def test_side_errors_of_every_method_equal_brute_force(complementary_data, evaluated):
    exp, out, summary, rows = evaluated
    data = complementary_data
    keys = ["colour_hidden", "colour_visible", "colour_edge"]
    groups = summary["point_groups"]
    assert groups["available"] and groups["metrics"] == keys and groups["edge_radius"] == RADIUS
    pred = np.load(os.path.join(out, "predictions.npz"))
    assert pred["xyz"].shape == (4, 1024, 3) and pred["features"].shape == (4, 1024, 3)

    # the baseline: the training medoid (summary's index into the train split, file order) in the mean colour
    train = [str(m) for m in np.load(os.path.join(data, "splits", f"{CHAIR}_train_list.npy"))]
    medoid_xyz, _ = _gt(data, train[summary["medoid_model"]])
    mean_colour = np.concatenate([_gt(data, m)[1] for m in train[:8]]).mean(0)

    expected = {}
    shares = np.zeros(3)
    for mid, view, xyz, col in zip(pred["model_id"], pred["input_view"], pred["xyz"], pred["features"]):
        gt_xyz, gt_col = _gt(data, str(mid))
        sides = np.load(os.path.join(_pcl_dir(data, str(mid)), "pcl_1024_fps_trimesh_sides.npy")).astype(bool)
        again_xyz, again_col = _gt(data, str(mid), resample=True)
        for method, (x, c) in (
            ("model", (xyz, col)),
            ("floor_resampled_gt", (again_xyz, again_col)),
            ("medoid_baseline", (medoid_xyz, np.broadcast_to(mean_colour, (1024, 3)))),
        ):
            expected[(str(mid), int(view), method)] = _brute(gt_xyz, gt_col, sides, x, c)
        g = _unit(gt_xyz)
        dist = np.sqrt(((g[:, None] - g[None]) ** 2).sum(-1))
        edge = np.where(sides[:, None] != sides[None], dist, np.inf).min(1) < RADIUS
        shares += [np.mean(sides & ~edge), np.mean(~sides & ~edge), np.mean(edge)]

    assert len(rows) == 12 and {r["method"] for r in rows} == {"model", "medoid_baseline", "floor_resampled_gt"}
    for r in rows:
        want = expected[(r["model_id"], int(r["input_view"]), r["method"])]
        np.testing.assert_allclose([float(r[k]) for k in keys], want, rtol=1e-5, atol=1e-7, err_msg=str(r))
    for method in ("model", "medoid_baseline", "floor_resampled_gt"):
        for k, column in zip(keys, np.array([v for (_, _, m), v in expected.items() if m == method]).T):
            assert summary["methods"][method][k] == pytest.approx(column.mean(), rel=1e-4)  # float32 colours
            assert summary["methods"][method][k] == pytest.approx(
                np.mean([float(r[k]) for r in rows if r["method"] == method]), rel=1e-12
            )
    np.testing.assert_allclose([groups["share"][g] for g in ("hidden", "visible", "edge")], shares / 4, rtol=1e-6)
    assert (shares / 4 > 0.1).all()  # every group is there
    # what the split is for: the floor's error lives at the edge; the hidden side is the model's weak spot
    floor = summary["methods"]["floor_resampled_gt"]
    assert floor["colour_edge"] > 5 * max(floor["colour_hidden"], floor["colour_visible"])
    on_disk = json.load(open(os.path.join(out, "summary.json")))
    assert (
        on_disk["point_groups"] == groups
        and on_disk["methods"]["model"]["colour_hidden"] == summary["methods"]["model"]["colour_hidden"]
    )


def test_data_without_a_side_record_are_evaluated_as_before_and_say_so(complementary_data, evaluated, tmp_path, capsys):
    from rgb import metrics_rgb

    exp, out, summary, rows = evaluated
    data = str(tmp_path / "no_sides")
    shutil.copytree(complementary_data, data, ignore=shutil.ignore_patterns("*_sides.npy", ".cache"))
    capsys.readouterr()
    plain = metrics_rgb.main(
        [
            "--exp",
            exp,
            "--snapshot",
            "latest",
            "--eval_set",
            "test",
            "--out",
            str(tmp_path / "m"),
            "--batch_size",
            "3",
            "--baseline_models",
            "8",
            "--data_dir",
            data,
        ]
    )
    assert plain["point_groups"] == dict(available=False, note=plain["point_groups"]["note"])
    assert "no side record" in plain["point_groups"]["note"]
    assert "side-resolved errors: not available" in capsys.readouterr().out
    for method, values in plain["methods"].items():
        assert not any(k.startswith("colour_") and k not in ("colour_fwd", "colour_bwd") for k in values)
        for k in ("chamfer", "colour"):  # everything else as with the record
            assert values[k] == pytest.approx(summary["methods"][method][k], rel=1e-6)


def test_side_groups_hand_computed():
    """Four points on a line, two per side: the two next to the boundary are edge points."""
    from utils import metrics

    x = np.array([[0.0, 0, 0], [0.3, 0, 0], [0.33, 0, 0], [0.7, 0, 0]])
    groups = metrics.side_groups(x, np.array([True, True, False, False]), edge_radius=0.05)
    assert groups["hidden"].tolist() == [True, False, False, False]
    assert groups["visible"].tolist() == [False, False, False, True]
    assert groups["edge"].tolist() == [False, True, True, False]
    one_side = metrics.side_groups(x, np.zeros(4, bool))
    assert one_side["visible"].all() and not one_side["edge"].any()
    means = metrics.group_mean(np.array([[1.0, 2, 3, 4]]), np.array([[True, False, True, False]]))
    assert means.tolist() == [2.0]
    assert np.isnan(metrics.group_mean(np.ones((1, 4)), np.zeros((1, 4), bool)))[0]


# --------------------------------------------------------------------------- the breakdown (claims 1 and 2)
def _moller_trumbore(origin, direction, triangles):
    """Distances along ``direction`` (unit) from ``origin`` to every triangle it crosses (inf where it
    misses): the textbook ray-triangle test, written apart from trimesh."""
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    e1, e2 = b - a, c - a
    p = np.cross(direction, e2)
    det = np.einsum("ij,ij->i", e1, p)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origin - a
    u = np.einsum("ij,ij->i", s, p) * inv
    q = np.cross(s, e1)
    v = (q @ direction) * inv
    t = np.einsum("ij,ij->i", e2, q) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    return np.where(hit, t, np.inf)


def test_seen_in_views_matches_a_brute_force_ray_cast():
    """MeshRenderer.seen_in_views on a demo chair against every ray tested on every triangle."""
    from utils.data.shapenet import ALIGN
    from utils.datagen import demo_data, styles
    from utils.datagen.mesh_render import MeshRenderer
    from utils.render import camera

    model = demo_data.make_model("chair", 2, n_views=3)
    surface = styles.model_surface("chair", 2)
    counts = MeshRenderer(surface).seen_in_views(model["pcl"], model["views"])
    tris = surface.triangles @ ALIGN.T  # the renderer frame
    pts = model["pcl"].astype(np.float64) @ ALIGN.T
    rng = np.random.default_rng(0)
    picks = rng.choice(len(pts), 120, replace=False)
    expected = np.zeros(len(picks), int)
    for az, el in np.radians(model["views"]):
        centre = camera.cam2world_np(np.zeros((1, 3)), az, el)[0]
        for k, i in enumerate(picks):
            d = pts[i] - centre
            dist = np.linalg.norm(d)
            expected[k] += _moller_trumbore(centre, d / dist, tris).min() >= dist - 1e-3
    assert 0 < (expected == 0).sum() < len(picks)  # some of these points no view sees
    np.testing.assert_array_equal(counts[picks], expected)


def test_breakdown_equals_brute_force(complementary_data, evaluated):
    """The breakdown of the tiny experiment: every group's mean error and share against numpy (full
    distance matrices), the groups of a grouping adding up, and the contributions to a difference."""
    from utils.eval import breakdown

    exp, out, summary, rows = evaluated
    data = complementary_data
    seen_counts = {}

    def visibility(model_id):  # a fixed, made-up record: the test checks the bookkeeping, not the ray cast
        seen_counts.setdefault(model_id, np.arange(1024) % 3)
        return seen_counts[model_id]

    res = breakdown.breakdown(exp, data, snapshot="latest", visibility=visibility, log=lambda *a: None)
    pred = np.load(os.path.join(exp, "breakdown_latest", "predictions.npz"))
    names = json.load(open(os.path.join(data, "partseg", "part_names.json")))[CHAIR]
    err_all, groups = [], {}
    for mid, xyz, col in zip(pred["model_id"], pred["xyz"], pred["features"]):
        mid = str(mid)
        gt_xyz, gt_col = _gt(data, mid)
        g, p = _unit(gt_xyz), _unit(xyz)
        err = ((np.clip(col, 0, 1)[((g[:, None] - p[None]) ** 2).sum(-1).argmin(1)] - gt_col) ** 2).mean(1)
        err_all.append(err)
        labels = np.load(os.path.join(data, "partseg", "ShapeNet_pcl", CHAIR, mid, "pointcloud_labels.npy")) - 1
        sides = np.load(os.path.join(_pcl_dir(data, mid), "pcl_1024_fps_trimesh_sides.npy")).astype(bool)
        dist = np.sqrt(((g[:, None] - g[None]) ** 2).sum(-1))
        near_part = np.where(labels[:, None] != labels[None], dist, np.inf).min(1) < RADIUS
        edge = np.where(sides[:, None] != sides[None], dist, np.inf).min(1) < RADIUS
        masks = {("part", n): labels == k for k, n in enumerate(names)}
        masks.update({("side", "hidden"): sides & ~edge, ("side", "visible"): ~sides & ~edge, ("side", "edge"): edge})
        masks.update({("boundary", "near another part"): near_part, ("boundary", "inside a part"): ~near_part})
        masks.update(
            {("views", "seen"): np.arange(1024) % 3 > 0, ("views", "unseen in every view"): np.arange(1024) % 3 == 0}
        )
        masks[("part and side", f"{names[0]}, hidden")] = (labels == 0) & sides & ~edge
        for key, m in masks.items():
            groups.setdefault(key, []).append((err, m))
    err_all = np.concatenate(err_all)
    assert res["mean"] == pytest.approx(err_all.mean(), rel=1e-5)
    assert res["mean"] == pytest.approx(summary["methods"]["model"]["colour_fwd"], rel=1e-4)  # the metrics' own
    for (grouping, name), parts in groups.items():
        e = np.concatenate([x[m] for x, m in parts])
        got = res["groups"][grouping][name]
        assert got["share"] == pytest.approx(len(e) / len(err_all)), (grouping, name)
        if len(e):
            assert got["mean"] == pytest.approx(e.mean(), rel=1e-5), (grouping, name)
            assert got["error_share"] == pytest.approx(e.sum() / err_all.sum(), rel=1e-5), (grouping, name)
    for grouping in ("part", "side", "boundary", "views", "part and side"):
        values = res["groups"][grouping].values()
        assert sum(g["share"] for g in values) == pytest.approx(1.0)
    # contributions: against a reference with every group's error halved, they add up to the difference
    ref = json.loads(json.dumps(res))
    for grouping in ref["groups"].values():
        for g in grouping.values():
            g["mean"] = None if g["mean"] is None else g["mean"] / 2
    ref["mean"] = res["mean"] / 2
    for grouping, parts in breakdown.contributions(res, ref).items():
        assert sum(parts.values()) == pytest.approx(res["mean"] - ref["mean"], rel=1e-6), grouping
