"""Users' meshes -> data layout (utils/datagen/mesh_dataset.py, mesh_io.py, mesh_render.py, part_transfer.py).

The mesh files are written by hand here (OBJ, MTL, PLY as text; a PNG checker
texture). The oracles are independent of the renderer: a ray-box slab test
gives the point each pixel's centre ray must hit, and the colour or label
painted at that point follows from where it lies (which checker cell, how far
along x, which box).
"""

import csv
import json
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import tiny
from utils.data import BatchPipeline, list_models, n_parts, part_names, shapenet
from utils.data.cache import CACHE_DIR_NAME
from utils.datagen import mesh_dataset, mesh_io, shards, splits, writer
from utils.datagen.mesh_render import DEPTH_FAR, DEPTH_NEAR, sample_texture
from utils.render import camera
from utils.train import config

REPO = Path(__file__).resolve().parents[1]
RED, GREEN, BLUE, WHITE = (220, 30, 30), (30, 200, 60), (40, 60, 230), (250, 250, 250)


def _opts(**kw):
    base = dict(n_views=6, n_dense=4096, seed=3)
    base.update(kw)
    return mesh_dataset.Options(**base)


def _source(path, synset="90000001"):
    return mesh_io.MeshSource(Path(path), synset, Path(path).stem, "files")


def _box_hits(origins, dirs, boxes):
    """First hit of each ray on a union of axis-aligned boxes (slab test), renderer frame.

    boxes: list of (lo, hi) in the ShapeNet frame. Returns (hit bool (N,), point (N, 3) ShapeNet
    frame, index of the box hit (N,)).
    """
    o = shapenet.undo_preprocess_pcl_gt(origins)  # rays into the ShapeNet frame
    d = shapenet.undo_preprocess_pcl_gt(dirs)
    best_t = np.full(len(o), np.inf)
    which = np.full(len(o), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, (lo, hi) in enumerate(boxes):
            t0 = (np.asarray(lo) - o) / d
            t1 = (np.asarray(hi) - o) / d
            near = np.nanmax(np.minimum(t0, t1), axis=1)
            far = np.nanmin(np.maximum(t0, t1), axis=1)
            ok = (near <= far + 1e-12) & (near > 0) & (near < best_t)
            best_t[ok], which[ok] = near[ok], k
    hit = which >= 0
    return hit, o + np.where(hit, best_t, 0)[:, None] * d, which


def _centre_rays(model, k, size=64):
    az, el = np.radians(model["views"][k])
    return camera.pixel_rays_np(az, el, size, size)


# --------------------------------------------------------------------------
# files written by hand
# --------------------------------------------------------------------------
def _write_checker_quad(folder):
    """A unit square in the z = 0 plane, facing +z, textured with 2x2 cells: top-left red, top-right
    green, bottom-left blue, bottom-right white (in the image, row 0 at the top)."""
    folder.mkdir(parents=True, exist_ok=True)
    tex = np.zeros((16, 16, 3), np.uint8)
    tex[:8, :8], tex[:8, 8:], tex[8:, :8], tex[8:, 8:] = RED, GREEN, BLUE, WHITE
    cv2.imwrite(str(folder / "checker.png"), cv2.cvtColor(tex, cv2.COLOR_RGB2BGR))
    (folder / "quad.mtl").write_text("newmtl checker\nKd 0.2 0.2 0.2\nmap_Kd checker.png\n")
    (folder / "quad.obj").write_text(
        "mtllib quad.mtl\n"
        "v 0 0 0\nv 2 0 0\nv 2 2 0\nv 0 2 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
        "usemtl checker\nf 1/1 2/2 3/3 4/4\n"
    )
    return folder / "quad.obj"


def _box_lines(lo, hi, first):
    """OBJ 'v' and 'f' lines of a box (8 vertices, 6 quads); ``first``: 1-based index of its first vertex."""
    xs, ys, zs = zip(lo, hi)
    v = [f"v {x} {y} {z}\n" for x in xs for y in ys for z in zs]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    f = ["f " + " ".join(str(first + i) for i in q) + "\n" for q in quads]
    return v, f


def _write_vertex_coloured_ply(path):
    """A 2 x 1 x 1 box whose vertex colours go from blue (x = 0) to red (x = 2)."""
    verts = [(x, y, z) for x in (0, 2) for y in (0, 1) for z in (0, 1)]
    tris = [
        (0, 1, 3),
        (0, 3, 2),
        (4, 6, 7),
        (4, 7, 5),
        (0, 4, 5),
        (0, 5, 1),
        (2, 3, 7),
        (2, 7, 6),
        (0, 2, 6),
        (0, 6, 4),
        (1, 5, 7),
        (1, 7, 3),
    ]
    lines = [
        "ply",
        "format ascii 1.0",
        f"element vertex {len(verts)}",
        "property float x",
        "property float y",
        "property float z",
        "property uchar red",
        "property uchar green",
        "property uchar blue",
        f"element face {len(tris)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    lines += [f"{x} {y} {z} " + ("255 0 0" if x else "0 0 255") for x, y, z in verts]
    lines += [f"3 {a} {b} {c}" for a, b, c in tris]
    path.write_text("\n".join(lines) + "\n")
    return path


def _normalised_boxes(boxes):
    """The boxes after the 'diagonal' normalisation of their union (ShapeNet frame)."""
    lo = np.min([b[0] for b in boxes], 0)
    hi = np.max([b[1] for b in boxes], 0)
    c, s = (lo + hi) / 2, 1 / np.linalg.norm(hi - lo)
    return [((np.asarray(a) - c) * s, (np.asarray(b) - c) * s) for a, b in boxes]


# --------------------------------------------------------------------------
# colours
# --------------------------------------------------------------------------
def test_texture_lookup_orientation_and_wrap():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = (255, 0, 0)  # top-left
    img[1, 2] = (0, 0, 255)  # bottom-right
    # texel centres: u = (col + 0.5) / 3, v = 1 - (row + 0.5) / 2 (v counts from the bottom)
    uv = np.array([[0.5 / 3, 0.75], [2.5 / 3, 0.25], [1 + 0.5 / 3, 0.75 - 2], [0.0, 1.0]])
    got = sample_texture(img, uv)
    np.testing.assert_allclose(got[0], [1, 0, 0])
    np.testing.assert_allclose(got[1], [0, 0, 1])
    np.testing.assert_allclose(got[2], [1, 0, 0])  # repeats outside [0, 1]
    np.testing.assert_allclose(got[3], [1, 0, 0])  # the corner clamps, no bleeding from the other side


def _glb_copy(obj_path):
    """The same textured square as a binary glTF (texture embedded; trimesh turns the OBJ's Kd 0.2
    into the base colour factor, which glTF multiplies with the texture)."""
    import trimesh

    glb = obj_path.with_suffix(".glb")
    trimesh.load(str(obj_path), force="scene").export(str(glb))
    return glb


@pytest.mark.parametrize("fmt", ["obj", "glb"])
def test_textured_mesh_colours_in_views_and_cloud(tmp_path, fmt):
    """A wrong v (or u) orientation swaps the cells: the pixel and point colours then fail."""
    path = _write_checker_quad(tmp_path / "quad")
    factor = 1.0  # OBJ: map_Kd alone, the Kd of 0.2 ignored
    if fmt == "glb":  # glTF counts v from the top of the image; trimesh turns it into the OBJ convention
        path, factor = _glb_copy(path), 0.2
    model = mesh_dataset.render_model(_source(path), _opts(azimuth=(-60, 60), elevation=(-30, 30)))
    half = 0.5 / np.sqrt(2)  # the 2 x 2 square scaled to a unit diagonal

    def expected(p):
        top = np.where((p[:, 0] < 0)[:, None], RED, GREEN)
        bottom = np.where((p[:, 0] < 0)[:, None], BLUE, WHITE)
        return np.where((p[:, 1] > 0)[:, None], top, bottom) * factor / 255.0

    margin = 0.03  # keep away from the cell borders, where the bilinear lookup blends
    pcl, col = model["pcl"].astype(np.float64), model["colours"]
    assert np.allclose(np.abs(pcl).max(0), [half, half, 0], atol=0.01)
    inner = np.all(np.abs(pcl[:, :2]) > margin, axis=1)
    assert inner.sum() > 800
    np.testing.assert_allclose(col[inner], expected(pcl[inner]), atol=1e-6)

    checked = 0
    for k in range(len(model["views"])):
        origins, dirs = _centre_rays(model, k)
        hit, point, _ = _box_hits(origins, dirs, [((-half, -half, 0), (half, half, 0))])
        fg = model["depth"][k].reshape(-1) < 254
        assert np.all(fg[hit])  # every pixel whose centre ray meets the square is foreground
        use = hit & np.all(np.abs(point[:, :2]) > margin, axis=1) & np.all(np.abs(point[:, :2]) < half - margin, 1)
        rgb = model["rgb"][k].reshape(-1, 3)[use] / 255.0
        np.testing.assert_allclose(rgb, expected(point[use]), atol=1e-6)
        checked += use.sum()
    assert checked > 2000


def test_vertex_coloured_ply(tmp_path):
    path = _write_vertex_coloured_ply(tmp_path / "bar.ply")
    model = mesh_dataset.render_model(_source(path), _opts())
    ((lo, hi),) = _normalised_boxes([((0, 0, 0), (2, 1, 1))])

    def ramp(p):
        t = (p[:, :1] - lo[0]) / (hi[0] - lo[0])
        return np.clip(t, 0, 1) * [1, 0, 0] + np.clip(1 - t, 0, 1) * [0, 0, 1]

    np.testing.assert_allclose(model["colours"], ramp(model["pcl"].astype(np.float64)), atol=0.6 / 255)
    for k in range(len(model["views"])):
        origins, dirs = _centre_rays(model, k)
        hit, point, _ = _box_hits(origins, dirs, [(lo, hi)])
        inside = hit & (model["depth"][k].reshape(-1) < 254)
        assert inside.sum() > 300
        np.testing.assert_allclose(
            model["rgb"][k].reshape(-1, 3)[inside] / 255.0, ramp(point[inside]), atol=0.6 / 255 + 1e-3
        )
        # depth codes: the hit's distance from the camera along its optical axis (towards the origin)
        axis = -origins[0] / np.linalg.norm(origins[0])
        depth = (shapenet.preprocess_pcl_gt(point[inside]) - origins[inside]) @ axis
        code = np.round((depth - DEPTH_NEAR) / (DEPTH_FAR - DEPTH_NEAR) * 253)
        assert np.abs(model["depth"][k].reshape(-1)[inside] - code).max() <= 1


# --------------------------------------------------------------------------
# part labels
# --------------------------------------------------------------------------
BODY_BOX, WHEEL_BOX = ((-1.0, 0.0, 0.0), (-0.2, 0.6, 0.5)), ((0.2, 0.0, 0.1), (1.0, 0.4, 0.4))


def _write_two_part_glb(path):
    import trimesh

    body = trimesh.creation.box(bounds=BODY_BOX)
    body.visual = trimesh.visual.TextureVisuals(
        material=trimesh.visual.material.PBRMaterial(baseColorFactor=[*RED, 255])
    )
    wheel = trimesh.creation.box(bounds=WHEEL_BOX)
    wheel.visual.vertex_colors = np.tile([*BLUE, 255], (len(wheel.vertices), 1))
    scene = trimesh.Scene()
    scene.add_geometry(body, node_name="Body", geom_name="body_mesh")
    scene.add_geometry(wheel, node_name="wheel_front", geom_name="wheel_mesh")
    scene.export(str(path))
    return path


def _check_parts(model, boxes, box_labels, box_colours=None):
    """Label maps, point labels (and colours) against the boxes, through the slab oracle."""
    lo = np.array([b[0] for b in boxes])
    hi = np.array([b[1] for b in boxes])
    pcl = model["pcl"].astype(np.float64)
    inside = np.all((pcl[:, None] >= lo - 1e-5) & (pcl[:, None] <= hi + 1e-5), axis=2)  # (N, boxes)
    assert np.all(inside.sum(1) == 1)
    owner = inside.argmax(1)
    np.testing.assert_array_equal(model["point_labels"], np.asarray(box_labels)[owner])
    if box_colours is not None:
        np.testing.assert_allclose(model["colours"], np.asarray(box_colours)[owner] / 255.0, atol=1e-6)
    for k in range(len(model["views"])):
        origins, dirs = _centre_rays(model, k)
        hit, _, which = _box_hits(origins, dirs, boxes)
        labels = model["labels"][k].reshape(-1)
        np.testing.assert_array_equal(labels[hit], np.asarray(box_labels)[which[hit]])
        assert np.all((labels > 0) == (model["depth"][k].reshape(-1) < 254))


def test_glb_named_parts_with_part_map(tmp_path):
    path = _write_two_part_glb(tmp_path / "toy.glb")
    pm = mesh_io.PartMap.from_dict({"labels": ["wheel", "body"], "parts": {"wheel*": "wheel", "body": "body"}})
    opts = _opts(part_map=dict(patterns=pm.patterns, names=pm.names))
    model = mesh_dataset.render_model(_source(path), opts)
    _check_parts(model, _normalised_boxes([BODY_BOX, WHEEL_BOX]), [2, 1], [RED, BLUE])
    # a map that leaves a part out is an error naming it
    bad = mesh_io.PartMap.from_dict({"body": 1})
    with pytest.raises(mesh_io.MeshError, match="wheel_front"):
        mesh_dataset.render_model(_source(path), _opts(part_map=dict(patterns=bad.patterns, names=bad.names)))


def test_obj_groups_and_objects_as_parts(tmp_path):
    """OBJ 'o' and 'g' names label faces; quads and negative-free indices; a catch-all pattern."""
    # apart by small gaps, so that every point belongs to one box
    seat, back, leg = ((0, 0.4, 0), (1, 0.5, 1)), ((0, 0.52, 0), (1, 1.4, 0.15)), ((0.4, 0, 0.4), (0.6, 0.38, 0.6))
    lines = []
    for i, (name, box) in enumerate((("o chair\ng seat_cushion", seat), ("g backrest", back), ("o leg.001", leg))):
        v, f = _box_lines(*box, first=8 * i + 1)
        lines += v + [name + "\n"] + f
    (tmp_path / "chair.obj").write_text("".join(lines))
    pm = mesh_io.PartMap.from_dict({"back*": "back", "seat*": "seat", "*": "leg"})
    assert pm.names == ["back", "seat", "leg"]
    model = mesh_dataset.render_model(
        _source(tmp_path / "chair.obj"), _opts(part_map=dict(patterns=pm.patterns, names=pm.names))
    )
    _check_parts(model, _normalised_boxes([seat, back, leg]), [2, 1, 3])


def test_part_map_errors(tmp_path):
    with pytest.raises(mesh_io.MeshError, match="does not list"):
        mesh_io.PartMap.from_dict({"labels": ["a"], "parts": {"x": "b"}})
    with pytest.raises(mesh_io.MeshError, match="1..255"):
        mesh_io.PartMap.from_dict({"x": 0})
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(mesh_io.MeshError, match="m.json"):
        mesh_io.PartMap.from_json(tmp_path / "m.json")
    assert mesh_io.PartMap.from_dict({"a": 3}).names == ["part1", "part2", "part3"]


def _shapenet_chair(root, synset, model_id, v2=True):
    """A chair-like pair of boxes (seat, back) in a ShapeNetCore layout; returns (obj path, boxes)."""
    seat, back = ((0, 0.4, 0), (1, 0.5, 0.9)), ((0, 0.53, 0), (1, 1.3, 0.12))
    folder = root / synset / model_id / ("models" if v2 else "")
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, box in enumerate((seat, back)):
        v, f = _box_lines(*box, first=8 * i + 1)
        lines += v + f
    path = folder / ("model_normalized.obj" if v2 else "model.obj")
    path.write_text("".join(lines))
    return path, [seat, back]


def _surface_points(boxes, n, rng):
    """Random points on the boxes' surfaces (n per box) and their labels 1, 2, ..."""
    pts, labs = [], []
    for lab, (lo, hi) in enumerate(boxes, 1):
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        p = lo + rng.random((n, 3)) * (hi - lo)
        axis = rng.integers(0, 3, n)
        side = rng.integers(0, 2, n)
        p[np.arange(n), axis] = np.where(side, hi[axis], lo[axis])
        pts.append(p)
        labs.append(np.full(n, lab))
    return np.concatenate(pts), np.concatenate(labs)


def test_shapenet_part_annotations_transfer(tmp_path):
    """Yi et al.'s layout: points in another frame (rotated, scaled, shifted) -> face labels."""
    src, ann = tmp_path / "ShapeNetCore.v2", tmp_path / "partanno"
    _, boxes = _shapenet_chair(src, "03001627", "chairA")
    rng = np.random.default_rng(0)
    pts, labs = _surface_points(boxes, 1200, rng)
    rot = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)  # a proper axis permutation
    moved = (pts @ rot.T) * 0.37 + [0.1, -0.3, 0.2]
    (ann / "03001627" / "points").mkdir(parents=True)
    (ann / "03001627" / "points_label").mkdir(parents=True)
    np.savetxt(ann / "03001627" / "points" / "chairA.pts", moved, fmt="%.6f")
    np.savetxt(ann / "03001627" / "points_label" / "chairA.seg", labs, fmt="%d")
    out = tmp_path / "data"
    info = mesh_dataset.make_dataset(
        src, out, _opts(part_annotations=str(ann)), part_names=["seat", "back"], workers=1, progress=False
    )
    assert info["categories"]["03001627"]["partseg"] == 1
    with open(out / mesh_dataset.TRANSFER_FILE) as f:
        (row,) = list(csv.DictReader(f))
    assert row["model_id"] == "chairA" and float(row["agreement"]) > 0.97
    diag = np.linalg.norm(np.max([b[1] for b in boxes], 0) - np.min([b[0] for b in boxes], 0))
    assert abs(float(row["scale"]) * 0.37 * diag - 1) < 0.01  # undoes the 0.37 and the normalisation
    np.testing.assert_array_equal(np.reshape([int(v) for v in row["rotation"].split()], (3, 3)), rot.T)
    seg = out / "partseg"
    point_labels = np.load(seg / "ShapeNet_pcl" / "03001627" / "chairA" / "pointcloud_labels.npy")
    pcl = np.load(seg / "ShapeNet_pcl" / "03001627" / "chairA" / "pcl_1024_fps_trimesh.npy")
    nb = _normalised_boxes(boxes)
    in_seat, in_back = (np.all((pcl >= lo - 1e-5) & (pcl <= hi + 1e-5), axis=1) for lo, hi in nb)
    assert np.all(in_seat | in_back) and in_seat.sum() > 300 and in_back.sum() > 300
    assert np.mean(point_labels[in_seat] == 1) > 0.98 and np.mean(point_labels[in_back] == 2) > 0.98
    assert part_names(str(out), "chair") == ["seat", "back"] and n_parts(str(out), "03001627") == 2


# --------------------------------------------------------------------------
# collections, layout, safety
# --------------------------------------------------------------------------
def test_find_meshes_layouts(tmp_path):
    _shapenet_chair(tmp_path / "v2", "03001627", "a1")
    _shapenet_chair(tmp_path / "v2", "02958343", "c1")
    _shapenet_chair(tmp_path / "v1", "03001627", "b1", v2=False)
    found = mesh_io.find_meshes(tmp_path / "v2")
    assert [(s.synset, s.model_id, s.layout) for s in found] == [
        ("02958343", "c1", "shapenet_v2"),
        ("03001627", "a1", "shapenet_v2"),
    ]
    assert [s.model_id for s in mesh_io.find_meshes(tmp_path, "03001627")] == ["a1", "b1"]
    (tmp_path / "loose" / "sub dir").mkdir(parents=True)
    _write_vertex_coloured_ply(tmp_path / "loose" / "sub dir" / "bar.ply")
    with pytest.raises(mesh_io.MeshError, match="pass --category"):
        mesh_io.find_meshes(tmp_path / "loose")
    assert mesh_io.find_meshes(tmp_path / "loose", "90000001")[0].model_id == "sub_dir__bar"
    with pytest.raises(mesh_io.MeshError, match="no mesh files"):
        mesh_io.find_meshes(tmp_path / "v2", "04379243")
    # any 8-digit id names a category for the loaders; anything else unknown is still refused
    assert shapenet.synset_id("90000001") == "90000001" and shapenet.category_name("90000001") == "90000001"
    with pytest.raises(ValueError, match="unknown ShapeNet category"):
        shapenet.synset_id("9000001x")


def test_interior_geometry_left_out_of_the_cloud(tmp_path):
    """A red box hidden inside a closed grey box: no cloud point on it unless --keep_hidden."""
    outer_v, outer_f = _box_lines((0, 0, 0), (1, 1, 1), 1)
    inner_v, inner_f = _box_lines((0.3, 0.3, 0.3), (0.7, 0.7, 0.7), 9)
    (tmp_path / "nested.mtl").write_text("newmtl grey\nKd 0.5 0.5 0.5\nnewmtl red\nKd 1 0 0\n")
    (tmp_path / "nested.obj").write_text(
        "mtllib nested.mtl\n"
        + "".join(outer_v + inner_v)
        + "usemtl grey\n"
        + "".join(outer_f)
        + "usemtl red\n"
        + "".join(inner_f)
    )
    for keep, want_red in ((False, False), (True, True)):
        model = mesh_dataset.render_model(_source(tmp_path / "nested.obj"), _opts(keep_hidden=keep))
        red = model["colours"][:, 1] < 0.1
        inner = np.all(np.abs(model["pcl"]) < 0.2 / np.sqrt(3) + 1e-3, axis=1)  # the normalised inner box
        assert np.array_equal(red, inner)
        assert red.any() == want_red
        assert not np.any(model["rgb"][..., 1][model["depth"] < 254] < 20)  # the views never show red


def test_up_axis(tmp_path):
    """A tall box along z: upright (along y) only with --up z."""
    v, f = _box_lines((0, 0, 0), (0.3, 0.4, 2.0), 1)
    (tmp_path / "post.obj").write_text("".join(v + f))
    for up, tall in (("y", 2), ("z", 1)):
        pcl = mesh_dataset.render_model(_source(tmp_path / "post.obj"), _opts(up=up))["pcl"]
        extent = pcl.max(0) - pcl.min(0)
        assert extent.argmax() == tall, (up, extent)
    zup = mesh_dataset.render_model(_source(tmp_path / "post.obj"), _opts(up="z"))["pcl"]
    # (x, y, z) -> (x, z, -y): the source's +y side ends up at -z
    ((lo, hi),) = _normalised_boxes([((0, 0, 0), (0.3, 0.4, 2.0))])
    np.testing.assert_allclose(zup.min(0), [lo[0], lo[2], -hi[1]], atol=0.01)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """A small folder of meshes of every kind, two of them broken."""
    root = tmp_path_factory.mktemp("meshes")
    _write_checker_quad(root / "quads")
    _write_vertex_coloured_ply(root / "bar.ply")
    _write_two_part_glb(root / "toy.glb")
    v, f = _box_lines((0, 0, 0), (1, 2, 3), 1)
    (root / "plain.off").write_text(
        "OFF\n8 6 0\n"
        + "".join(x[2:] for x in v)
        + "".join("4 " + " ".join(str(int(i) - 1) for i in x[2:].split()) + "\n" for x in f)
    )
    (root / "broken.obj").write_text("this is not a mesh\n")
    (root / "empty.ply").write_text("")
    return root


def _tree(root):
    """Every file the data tool wrote (not its summary, nor the loaders' view cache)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(Path(root).rglob("*"))
        if p.is_file() and p.name != mesh_dataset.INFO_FILE and not p.relative_to(root).parts[0] == CACHE_DIR_NAME
    }


def test_collection_layout_loaders_and_failures(collection, tmp_path):
    out = tmp_path / "data"
    info = mesh_dataset.make_dataset(
        collection, out, _opts(n_views=3), category="90000001", workers=2, progress=False, log=lambda *a: None
    )
    failed = sorted(Path(f["path"]).name for f in info["failed"])
    assert failed == ["broken.obj", "empty.ply"] and info["rendered_now"] == 4
    ids = (
        list_models(str(out), "90000001", "train")
        + list_models(str(out), "90000001", "val")
        + list_models(str(out), "90000001", "test")
    )
    assert sorted(ids) == ["bar", "plain", "quads__quad", "toy"]
    args = config.parse_train_args(
        "rgb", ["--exp", "x", "--data_dir", str(out), "--category", "90000001", "--batch_size", "2", "--N_VIEWS", "2"]
    )
    batch = BatchPipeline.from_args(args, _task("rgb"), "train", num_workers=0).get_batch(0)
    assert batch["image"].shape == (2, 64, 64, 3) and batch["pcl"].shape == (2, 1024, 3)
    assert batch["mask"].sum() > 0 and batch["pcl_rgb"].max() <= 1
    # the off file has no colour: grey everywhere
    grey = np.load(out / "ShapeNet_pcl" / "90000001" / "plain" / "pcl_1024_fps_trimesh_colors.npy")[:, 3:]
    np.testing.assert_allclose(grey, np.round(0.6 * 255) / 255, atol=1e-6)
    assert not (out / "partseg").exists()  # no part labels asked for

    # same seed, another worker count: the same bytes; a second run redoes nothing
    again = tmp_path / "again"
    mesh_dataset.make_dataset(
        collection, again, _opts(n_views=3), category="90000001", workers=1, progress=False, log=lambda *a: None
    )
    assert _tree(again) == _tree(out)
    stamp = (out / "ShapeNet_pcl" / "90000001" / "bar" / "pcl_1024_fps_trimesh.npy").stat().st_mtime_ns
    info2 = mesh_dataset.make_dataset(
        collection, out, _opts(n_views=3), category="90000001", workers=1, progress=False, log=lambda *a: None
    )
    assert info2["already_complete"] == 4 and info2["rendered_now"] == 0
    assert (out / "ShapeNet_pcl" / "90000001" / "bar" / "pcl_1024_fps_trimesh.npy").stat().st_mtime_ns == stamp
    # other options for the same folder: refused unless --force
    with pytest.raises(FileExistsError, match="n_views"):
        mesh_dataset.make_dataset(collection, out, _opts(n_views=4), category="90000001", progress=False)


def test_interrupted_model_leaves_nothing_and_is_redone(collection, tmp_path, monkeypatch):
    out = tmp_path / "data"
    real = writer.write_rgb_cloud
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # two clouds per model: the first and the second sampling
            raise KeyboardInterrupt  # the second model dies half-written
        return real(*args, **kwargs)

    monkeypatch.setattr(writer, "write_rgb_cloud", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mesh_dataset.make_dataset(
            collection, out, _opts(n_views=2), category="90000001", workers=1, progress=False, log=lambda *a: None
        )
    monkeypatch.setattr(writer, "write_rgb_cloud", real)
    done = sorted(os.listdir(out / "ShapeNet_rendered" / "90000001"))
    assert done == sorted(os.listdir(out / "ShapeNet_pcl" / "90000001")) == ["bar"]  # nothing half-written
    info = mesh_dataset.make_dataset(
        collection, out, _opts(n_views=2), category="90000001", workers=1, progress=False, log=lambda *a: None
    )
    assert info["already_complete"] == 1 and info["rendered_now"] == 3
    assert not (out / shards.STATE_DIR / "tmp").exists() or not os.listdir(out / shards.STATE_DIR / "tmp")


def test_splits_fractions_and_reuse(collection, tmp_path):
    reuse = tmp_path / "lists"
    reuse.mkdir()
    (reuse / "90000001_train_list.txt").write_text("bar\ntoy\nnot_rendered\n")
    (reuse / "90000001_test_list.txt").write_text("plain\n")
    out = tmp_path / "data"
    info = mesh_dataset.make_dataset(
        collection,
        out,
        _opts(n_views=1),
        category="90000001",
        splits_from=reuse,
        workers=1,
        progress=False,
        log=lambda *a: None,
    )
    assert (out / "splits" / "90000001_train_list.txt").read_text().split() == ["bar", "toy"]
    assert (out / "splits" / "90000001_val_list.txt").read_text() == ""
    assert info["not_in_reused_splits"] == {"90000001": ["quads__quad"]}
    ids = [f"m{i:02d}" for i in range(20)]
    a, _ = splits.make_splits(ids, "90000001", 4, (0.5, 0.25, 0.25))
    assert [len(a[k]) for k in ("train", "val", "test")] == [10, 5, 5]
    assert sorted(a["train"] + a["val"] + a["test"]) == ids
    assert splits.make_splits(ids, "90000001", 4, (0.5, 0.25, 0.25))[0] == a
    with pytest.raises(ValueError, match="summing to 1"):
        splits.parse_fractions("0.8,0.1")


def test_cli_help_partseg_tree_and_errors(collection, tmp_path, monkeypatch, capsys):
    import subprocess  # the script file itself, as a user runs it

    proc = subprocess.run(
        [sys.executable, str(REPO / "data" / "make_dataset.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for flag in (
        "--meshes",
        "--out",
        "--category",
        "--up",
        "--size",
        "--n_views",
        "--azimuth",
        "--elevation",
        "--shading",
        "--part_map",
        "--part_annotations",
        "--split",
        "--splits_from",
        "--seed",
        "--workers",
        "--force",
        "--keep_hidden",
    ):
        assert flag in text
    part_map = tmp_path / "parts.json"
    part_map.write_text(json.dumps({"wheel*": "wheel", "body*": "body"}))
    out = tmp_path / "data"
    assert (
        mesh_dataset.main(
            [
                "--meshes",
                str(collection / "toy.glb"),
                "--out",
                str(out),
                "--category",
                "car",
                "--part_map",
                str(part_map),
                "--n_views",
                "2",
                "--size",
                "32",
                "--quiet",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    seg = out / "partseg"
    assert json.loads((seg / "part_names.json").read_text()) == {"02958343": ["wheel", "body"]}
    labels = np.load(seg / "ShapeNet_labels" / "02958343" / "toy" / "labels_1.npy")
    assert labels.shape == (32, 32) and labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2}
    args = config.parse_train_args(
        "partseg",
        [
            "--exp",
            "x",
            "--data_dir",
            str(out),
            "--category",
            "car",
            "--batch_size",
            "1",
            "--N_VIEWS",
            "2",
            "--IMG_H",
            "32",
            "--IMG_W",
            "32",
        ],
    )
    batch = BatchPipeline.from_args(args, _task("partseg"), "train", num_workers=0).get_batch(0)
    assert set(np.unique(batch["pcl_labels"])) == {0, 1}  # 0-based in batches
    assert mesh_dataset.main(["--meshes", str(collection), "--out", str(tmp_path / "x"), "--quiet"]) == 2


# --------------------------------------------------------------------------
# a real mesh, end to end
# --------------------------------------------------------------------------
@pytest.mark.slow
def test_real_terrain_meshes_train_and_evaluate(tmp_path):
    """No package in requirements.txt ships a 3D model file; matplotlib ships a real elevation model
    and a photograph. Blocks of that measured terrain (z up), textured with the photograph, go
    through the command line with --up z, then a few training iterations and the metrics."""
    from rgb import metrics_rgb
    from utils.datagen import sample_meshes

    objs = sample_meshes.write_terrain_tiles(tmp_path / "terrain", n_tiles=5, tile=24)
    out = tmp_path / "data"
    assert (
        mesh_dataset.main(
            [
                "--meshes",
                str(tmp_path / "terrain"),
                "--out",
                str(out),
                "--category",
                "90000001",
                "--up",
                "z",
                "--n_views",
                "4",
                "--quiet",
                "--workers",
                "2",
            ]
        )
        == 0
    )
    info = json.loads((out / mesh_dataset.INFO_FILE).read_text())
    assert info["categories"]["90000001"] == dict(models=5, partseg=0, train=3, val=1, test=1)
    # upright: the thin axis of a terrain block is the vertical one (y in the ShapeNet frame)
    pcl = np.load(out / "ShapeNet_pcl" / "90000001" / objs[0].stem / "pcl_1024_fps_trimesh.npy")
    assert np.ptp(pcl, axis=0).argmin() == 1
    # the photograph's colours reach the cloud: many distinct colours, not one material colour
    cols = np.load(out / "ShapeNet_pcl" / "90000001" / objs[0].stem / "pcl_1024_fps_trimesh_colors.npy")[:, 3:]
    assert len(np.unique(np.round(cols * 255), axis=0)) > 100

    exp = str(tmp_path / "exp")
    tiny.train(
        "rgb",
        out,
        exp,
        10,
        (
            "--category",
            "90000001",
            "--N_PTS",
            "1024",
            "--bottleneck",
            "128",
            "--print_n",
            "5",
            "--save_n",
            "10",
            "--save_model_n",
            "10",
            "--skipconn",
        ),
    )
    summary = metrics_rgb.main(
        [
            "--exp",
            exp,
            "--snapshot",
            "latest",
            "--eval_set",
            "test",
            "--batch_size",
            "2",
            "--baseline_models",
            "3",
            "--out",
            str(tmp_path / "metrics"),
        ]
    )
    assert summary["n_models"] == 1 and summary["n_samples"] == 4  # every input view is a sample
    with open(tmp_path / "metrics" / "per_sample.csv") as f:
        rows = list(csv.DictReader(f))
    row = next(r for r in rows if r["method"] == "model")
    for key in ("chamfer", "emd", "colour"):
        assert np.isfinite(float(row[key])), key
    # every source gets the second sampling, so user meshes get the floor row too
    assert summary["floor"]["available"] and "floor_resampled_gt" in summary["methods"]
    floor = next(r for r in rows if r["method"] == "floor_resampled_gt")
    test_id = floor["model_id"]
    a = np.load(out / "ShapeNet_pcl" / "90000001" / test_id / "pcl_1024_fps_trimesh.npy").astype(np.float64)
    b = np.load(out / "ShapeNet_pcl" / "90000001" / test_id / "pcl_1024_fps_trimesh_resample.npy").astype(np.float64)
    assert not np.array_equal(a, b)  # another sampling of the same surface

    def unit(x):  # the metrics' unit cube, by hand
        return (x - (x.min(0) + x.max(0)) / 2) / np.ptp(x, axis=0).max()

    d = np.sqrt(((unit(a)[:, None] - unit(b)[None]) ** 2).sum(-1))
    assert float(floor["chamfer"]) == pytest.approx(d.min(1).mean() + d.min(0).mean(), rel=1e-4)
    assert float(floor["chamfer"]) < float(row["chamfer"])
    assert not summary["point_groups"]["available"]  # meshes carry no side record


# Made by make_dataset.py before every source got a second sampling (commit 97aab6c), with the
# arguments of the test below: the files of the first sampling and the renders have not changed.
EARLIER_MESH_FILES = "7105053b3d2fcc55f34d8072093b56b33f9677e51e0210f55ae46858905973cb"


def test_mesh_files_unchanged_and_the_second_sampling_beside_them(tmp_path):
    import hashlib

    from utils.datagen import sample_meshes

    sample_meshes.write_checker_cube(tmp_path / "m")
    sample_meshes.write_terrain_tiles(tmp_path / "m", n_tiles=2, tile=12)
    out = tmp_path / "d"
    assert (
        mesh_dataset.main(
            [
                "--meshes",
                str(tmp_path / "m"),
                "--out",
                str(out),
                "--category",
                "90000001",
                "--n_views",
                "2",
                "--quiet",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    files = [
        p
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != mesh_dataset.INFO_FILE and shards.STATE_DIR not in p.parts
    ]
    lines = [
        f"{p.relative_to(out).as_posix()}\t{hashlib.sha256(p.read_bytes()).hexdigest()}"
        for p in files
        if "resample" not in p.name
    ]
    assert (hashlib.sha256("\n".join(lines).encode()).hexdigest(), len(lines)) == (EARLIER_MESH_FILES, 24)
    again = sorted(p.name for p in files if "resample" in p.name)
    assert again == ["pcl_1024_fps_trimesh_resample.npy"] * 3 + ["pcl_1024_fps_trimesh_resample_colors.npy"] * 3


# --------------------------------------------------------------------------
# shards (--shard k/n, --finalize)
# --------------------------------------------------------------------------
def test_shards_disjoint_cover_balanced_and_stable():
    rng = np.random.default_rng(4)
    sources = [
        mesh_io.MeshSource(Path(f"/m/{syn}/{i}"), syn, f"{i:03d}", "files")
        for syn in ("90000002", "90000001")
        for i in rng.choice(500, 12, replace=False)
    ]
    everything = sorted((s.synset, s.model_id) for s in sources)
    for n in range(1, 9):
        parts = [[(s.synset, s.model_id) for s in shards.shard_sources(sources, k, n)] for k in range(1, n + 1)]
        assert sorted(x for p in parts for x in p) == everything  # cover, and disjoint (no duplicates)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced by model count
        # the oracle: position in the (synset, model id) order, modulo n
        assert parts == [[x for i, x in enumerate(everything) if i % n == k] for k in range(n)]
        shuffled = [sources[i] for i in rng.permutation(len(sources))]  # any listing order, same parts
        assert [
            [(s.synset, s.model_id) for s in shards.shard_sources(shuffled, k, n)] for k in range(1, n + 1)
        ] == parts
    assert shards.parse_shard("3/8") == (3, 8)
    for bad in ("0/4", "5/4", "4", "a/b", "1/0"):
        with pytest.raises(ValueError, match="--shard"):
            shards.parse_shard(bad)


def _exit_with(argv):
    """Child process: make_dataset's command line, its status as the exit code."""
    os._exit(mesh_dataset.main(argv))


def test_concurrent_shards_and_finalize_equal_one_run(collection, tmp_path, capsys):
    flags = [
        "--meshes",
        str(collection),
        "--category",
        "90000001",
        "--n_views",
        "3",
        "--n_dense",
        "4096",
        "--seed",
        "3",
        "--workers",
        "1",
        "--quiet",
    ]
    one, many = tmp_path / "one", tmp_path / "many"
    assert mesh_dataset.main(flags + ["--out", str(one)]) == 0
    capsys.readouterr()

    procs = [
        multiprocessing.get_context("fork").Process(  # two jobs at the same time, one output folder
            target=_exit_with, args=(flags + ["--out", str(many), "--shard", f"{k}/3"],)
        )
        for k in (1, 2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    reports = shards.read_shard_reports(many)
    assert sorted(reports) == [(1, 3), (2, 3)] and [r["models"] for r in reports.values()] == [2, 2]
    # shard 3 has not run: --finalize lists its models and writes nothing
    assert mesh_dataset.main(flags + ["--out", str(many), "--finalize"]) == 1
    err = capsys.readouterr().err
    assert "2 of 6 models are neither complete nor reported failed" in err and "shards of 3 without a report: 3" in err
    assert not (many / "splits").exists() and not (many / mesh_dataset.INFO_FILE).exists()
    # a model shard 1 would have in progress: shard 3's start-up clean-up must leave it alone
    busy = shards.workers_tmp(many, (1, 3)) / "90000001_x" / "render_0.png"
    busy.parent.mkdir(parents=True)
    busy.write_bytes(b"half")
    assert mesh_dataset.main(flags + ["--out", str(many), "--shard", "3/3"]) == 0
    assert busy.read_bytes() == b"half"
    shutil.rmtree(shards.workers_tmp(many, (1, 3)))
    assert mesh_dataset.main(flags + ["--out", str(many), "--finalize"]) == 0
    assert "failed: " in capsys.readouterr().out  # the broken meshes, reported by their shards

    def tree(root):  # every file, the shards' own reports aside
        return {k: v for k, v in _tree(root).items() if not k.startswith(f"{shards.STATE_DIR}/shards/")}

    a, b = tree(one), tree(many)
    assert sorted(a) == sorted(b) and all(a[k] == b[k] for k in a), [k for k in a if a.get(k) != b.get(k)]
    assert any(k.startswith("splits/") for k in a) and any(k.endswith("render_2.png") for k in a)
    ia, ib = (json.loads((d / mesh_dataset.INFO_FILE).read_text()) for d in (one, many))
    for key in ("found", "categories", "options", "split", "not_in_reused_splits"):
        assert ia[key] == ib[key], key
    assert sorted(f["path"] for f in ia["failed"]) == sorted(f["path"] for f in ib["failed"])
    assert len(ib["failed"]) == 2 and ib["already_complete"] == 4


def _task(name):
    from utils.task import task_from_ref

    return task_from_ref(name)
