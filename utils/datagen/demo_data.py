"""Embedded demo data set: procedural chairs, airplanes and cars with parts and colours.

Each model is a union of convex trimesh primitives (boxes, cylinders, cones,
convex hulls), every primitive belonging to one part (the ShapeNet part
vocabulary, see :data:`utils.data.shapenet.DEMO_PART_NAMES`) and carrying that
part's colour. Proportions, part styles, part presence (arms, engines, ...) and
colours are drawn at random per model.

Views are rendered by **ray casting** the mesh with the renderer of
:mod:`utils.datagen.mesh_render` (trimesh/embree, first hit per ray; the rays of
:func:`utils.render.camera.pixel_rays_np`, plus sub-pixel shifted copies), an
independent renderer that shares only the camera model with the differentiable
projections, and the one ``data/make_dataset.py`` renders users' meshes with. A pixel is foreground when any of its 3x3 rays
(spread over the pixel square, edges included) hits the object: a coverage
mask, as the original data's "depth < 254" threshold makes of anti-aliased
renders. It then takes the colour and part label of the hitting ray nearest its
centre, without blending. Colours are flat (unlit) by default, so a pixel shows
exactly the colour of the points of its part; ``--shading`` adds a simple
Lambert term.

Colour styles (``--colours``, :data:`COLOUR_STYLES`; recorded in ``demo_info.json``):

* ``flat`` (the default): one colour per part, the same on every side of it.
* ``two-sided``: the hidden side of some parts (:data:`HIDDEN_SIDES`: a chair's
  backrest rear and seat underside, an airplane's undersides, a car's rear) has
  a second colour, clearly different from the part's, so the points hidden
  behind a surface carry another colour than the pixels that show it.
* ``textured``: ``two-sided``, and every other face of a part carries a
  procedural texture in two colours (:data:`PATTERNS`: stripes, checks or a
  gradient; planar UVs along the face's dominant axis).
* ``complementary``: as ``two-sided``, but the hidden side's colour is a fixed function of
  the part's visible colour, so that one view of the visible side tells it: each 8-bit
  channel value ``v`` becomes ``286 - v`` (:func:`complementary_colour`), the reflection about
  the middle of the range [31, 255] that every part colour of the generator lies in. It is
  far from the visible colour (mean squared difference per channel 0.30 on average over the
  backrests and seats of the 200 demo chairs, 0.089 at least) and never black, the background.

The extra colours and patterns are drawn from a generator of their own, so the
shapes, views and points of a model are the same in every style, and ``flat``
data are the files this generator has always written.

Ground-truth clouds: the surface is sampled densely (points hidden inside other
primitives dropped), then reduced to 1024 points by farthest point sampling.
Each point carries the colour of the surface where it was sampled
(:meth:`utils.datagen.mesh_render.Surface.colour_at`, the function the renderer
colours its ray hits with), and a side record (``pcl_1024_fps_trimesh_sides.npy``, written in
every style): 1 where the point lies on a part's hidden side (:data:`HIDDEN_SIDES`), 0
elsewhere; the rgb metrics split the colour error by it. A second cloud made the same way from an independent dense
sample (its own random stream, so the first cloud's files do not change) is written beside
it (``*_resample*.npy``): what a perfect prediction with 1024 other points would be, the
metrics' floor row.

The output follows the original DIFFER layout (see ``data/README.md``); clouds
are stored in the ShapeNet frame (y up) and the loaders rotate them into the
renderer frame with :func:`utils.data.shapenet.preprocess_pcl_gt`, exactly as for the
real data. ``view.txt`` holds "azimuth elevation" in degrees, the angles the
loaders hand to :func:`utils.render.camera.world2cam` after conversion to radians.

Command line: ``python data/make_demo_data.py --help`` (or
``python -m utils.datagen.demo_data``).
"""
import argparse
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

from utils import cli, lock
from utils.data import (N_GT_PTS, PART_NAMES_FILE, PART_TREE_DIR, PCL_DIR, RENDERED_DIR, SPLITS, SPLITS_DIR,
                        split_list_file, tree_dirs)
from utils.data.layout import RESAMPLE_COLOURS_FILE, RESAMPLE_LABELS_FILE, RESAMPLE_PCL_FILE
from utils.datagen.writer import (DEFAULT_WORKERS, SPLIT_FRACTIONS, check_out_folder, lock_data_folder, quantise,
                               run_jobs, split_models, write_label_maps, write_part_cloud, write_point_sides,
                               write_rgb_cloud, write_splits, write_views)
from utils.datagen.mesh_render import (BOUND_RADIUS, DEPTH_FAR, DEPTH_NEAR, SUPERSAMPLE, MeshRenderer, Surface,  # noqa: F401
                               encode_depth, farthest_point_sampling, sample_faces)
from utils.progress import Progress
from utils.data.shapenet import ALIGN, DEMO_PART_NAMES, synset_id

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "data"  # the repository's data/ (this file: utils/datagen/)
DEFAULT_CATEGORIES = ("chair", "airplane", "car")
INFO_FILE = "demo_info.json"
TOP_LEVEL = (RENDERED_DIR, PCL_DIR, SPLITS_DIR, PART_TREE_DIR, INFO_FILE)
TMP_PREFIX = ".demo_tmp_"  # the generator's working folder inside --out: .demo_tmp_<pid>_<random>
TMP_OWNER = ".owner"  # inside it, flock-ed by the generator while it runs
COLOUR_STYLES = ("flat", "two-sided", "textured", "complementary")
# The hidden side of a part, per category and part label: faces whose outward normal points along
# sign * axis (ShapeNet frame: x across, y up, z towards the object's front) within HIDDEN_COS.
HIDDEN_SIDES = {"chair": {1: (2, -1), 2: (1, -1)},  # backrest: its rear; seat: its underside
                "airplane": {1: (1, -1), 2: (1, -1), 3: (1, -1)},  # body, wings, tail: undersides
                "car": {1: (2, -1), 2: (2, -1)}}  # body and cabin: their rear
HIDDEN_COS = 0.5  # cosine of the largest angle between a hidden face's normal and its direction
PATTERNS = ("stripes", "checks", "gradient")
TEXTURE_SIZE = 32  # texels per side of a pattern's image (one period of the pattern)
# complementary style: 8-bit channel value v -> COMPLEMENT_SUM - v, which maps the range of the
# generator's colours, [round(0.12 * 255), 255] = [31, 255] (_colour's clip), onto itself.
COMPLEMENT_SUM = 286


# --------------------------------------------------------------------------
# colours (RGB in [0, 1]); none is very dark, the background is black
# --------------------------------------------------------------------------
BRIGHT = np.array([[0.82, 0.16, 0.14], [0.18, 0.36, 0.80], [0.16, 0.60, 0.30],
                   [0.96, 0.56, 0.10], [0.95, 0.84, 0.20], [0.56, 0.30, 0.72],
                   [0.10, 0.62, 0.62], [0.86, 0.76, 0.56], [0.76, 0.76, 0.78],
                   [0.58, 0.36, 0.20], [0.92, 0.45, 0.62]])
WOOD_METAL = np.array([[0.46, 0.29, 0.15], [0.76, 0.59, 0.36], [0.62, 0.64, 0.68],
                       [0.30, 0.30, 0.33], [0.90, 0.90, 0.90]])
PLANE_BODY = np.array([[0.93, 0.93, 0.93], [0.75, 0.77, 0.80], [0.60, 0.75, 0.90],
                       [0.45, 0.50, 0.35], [0.68, 0.70, 0.72]])
PLANE_ACCENT = np.array([[0.85, 0.12, 0.12], [0.15, 0.25, 0.65], [0.95, 0.55, 0.10],
                         [0.15, 0.55, 0.30], [0.95, 0.82, 0.15], [0.45, 0.45, 0.50]])
CAR_BODY = np.array([[0.80, 0.10, 0.10], [0.15, 0.30, 0.75], [0.72, 0.74, 0.76],
                     [0.94, 0.94, 0.92], [0.95, 0.80, 0.10], [0.15, 0.50, 0.25],
                     [0.95, 0.45, 0.05], [0.35, 0.20, 0.55]])
GLASS = np.array([[0.30, 0.36, 0.48], [0.55, 0.70, 0.85], [0.42, 0.45, 0.50]])
TYRE = np.array([[0.22, 0.22, 0.22], [0.28, 0.28, 0.30]])


def _colour(rng, palette, jitter=0.04):
    c = palette[rng.integers(len(palette))] + rng.normal(0.0, jitter, 3)
    return np.clip(c, 0.12, 1.0)


def _other_colour(rng, palette, avoid, jitter=0.04):
    """A palette colour clearly different from ``avoid``."""
    far = [p for p in palette if np.abs(p - avoid).sum() > 0.3]
    return _colour(rng, np.array(far) if far else palette, jitter)


# --------------------------------------------------------------------------
# primitives (ShapeNet frame: y up, x across, the object's front towards +z)
# --------------------------------------------------------------------------
def _box(center, extents):
    return trimesh.creation.box(extents=extents, transform=trimesh.transformations.translation_matrix(center))


def _rod(p0, p1, radius, sections=12):
    return trimesh.creation.cylinder(radius=radius, segment=np.array([p0, p1], float), sections=sections)


def _hull(points):
    return trimesh.convex.convex_hull(np.asarray(points, float))


def _disc(center, radius, axis, n=16):
    """Points on a circle of ``radius`` around ``center``, normal to ``axis`` (0, 1 or 2)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    u, v = [a for a in range(3) if a != axis]
    pts = np.tile(np.asarray(center, float), (n, 1))
    pts[:, u] += radius * np.cos(t)
    pts[:, v] += radius * np.sin(t)
    return pts


def _tilt_x(mesh, angle, pivot):
    """Rotate about the x axis through ``pivot`` (positive angle leans +y towards -z)."""
    mesh.apply_transform(trimesh.transformations.rotation_matrix(-angle, [1, 0, 0], pivot))
    return mesh


# --------------------------------------------------------------------------
# categories: each builder returns a list of (mesh, part label 1.., colour)
# --------------------------------------------------------------------------
def build_chair(rng):
    """Seat, back (panel or slats, tilted), legs (four, pedestal or sled), optional arms."""
    U = rng.uniform
    col_seat = _colour(rng, BRIGHT)
    col_back = col_seat if U() < 0.5 else _other_colour(rng, BRIGHT, col_seat)
    col_leg = _colour(rng, WOOD_METAL)
    col_arm = col_leg if U() < 0.5 else col_seat
    BACK, SEAT, LEG, ARM = 1, 2, 3, 4
    w, d, seat_h, seat_t = U(0.42, 0.62), U(0.40, 0.58), U(0.36, 0.50), U(0.04, 0.09)
    parts = [(_box([0, seat_h - seat_t / 2, 0], [w, seat_t, d]), SEAT, col_seat)]
    under = seat_h - seat_t + 0.01  # legs reach slightly into the seat

    style = rng.choice(["four", "pedestal", "sled"], p=[0.65, 0.2, 0.15])
    if style == "four":
        r, inset, splay = U(0.022, 0.04), U(0.0, 0.05), U(0.0, 0.04)
        sections = 4 if U() < 0.5 else 12
        for sx in (-1, 1):
            for sz in (-1, 1):
                top = np.array([sx * (w / 2 - inset - r), under, sz * (d / 2 - inset - r)])
                bottom = top + [sx * splay, -under, sz * splay]
                parts.append((_rod(bottom, top, r, sections), LEG, col_leg))
    elif style == "pedestal":
        r, foot = U(0.03, 0.05), U(0.2, 0.28)
        parts.append((_rod([0, 0.04, 0], [0, under, 0], r), LEG, col_leg))
        for k in range(5):
            a = 2 * np.pi * k / 5
            tip = [foot * np.cos(a), 0.02, foot * np.sin(a)]
            parts.append((_rod([0, 0.035, 0], tip, U(0.018, 0.025), 8), LEG, col_leg))
    else:  # sled: a floor runner and two uprights on each side
        r = U(0.015, 0.025)
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.04)
            parts.append((_rod([x, r, -d / 2 + 0.03], [x, r, d / 2 - 0.03], r, 8), LEG, col_leg))
            for sz in (-1, 1):
                z = sz * (d / 2 - 0.03)
                parts.append((_rod([x, r, z], [x, under, z], r, 8), LEG, col_leg))

    back_h, back_t, tilt = U(0.35, 0.6), U(0.03, 0.07), np.radians(U(0, 15))
    pivot = [0, seat_h - 0.01, -d / 2 + back_t / 2]
    z_back = -d / 2 + back_t / 2
    y_mid = seat_h - 0.01 + back_h / 2
    if U() < 0.6:  # solid panel
        meshes = [_box([0, y_mid, z_back], [w * U(0.85, 1.0), back_h, back_t])]
    else:  # two posts, a top rail and slats
        post = U(0.03, 0.05)
        rail_h = U(0.05, 0.1)
        meshes = [_box([sx * (w / 2 - post / 2), y_mid, z_back], [post, back_h, back_t]) for sx in (-1, 1)]
        meshes.append(_box([0, seat_h - 0.01 + back_h - rail_h / 2, z_back], [w, rail_h, back_t]))
        n_slats = int(rng.integers(2, 5))
        inner = w - 2 * post
        if U() < 0.5:  # vertical slats
            for k in range(n_slats):
                x = -inner / 2 + inner * (k + 1) / (n_slats + 1)
                meshes.append(_box([x, y_mid, z_back], [U(0.03, 0.05), back_h, back_t * 0.7]))
        else:  # horizontal slats
            for k in range(n_slats - 1):
                y = seat_h + (back_h - rail_h) * (k + 1) / n_slats
                meshes.append(_box([0, y, z_back], [w, U(0.03, 0.05), back_t * 0.7]))
    parts += [(_tilt_x(m, tilt, pivot), BACK, col_back) for m in meshes]

    if U() < 0.4:  # arms: a rest and a front support on each side
        arm_h, arm_w, arm_l = U(0.15, 0.25), U(0.04, 0.07), d * U(0.7, 0.95)
        z0 = -d / 2 + back_t
        for sx in (-1, 1):
            x = sx * (w / 2 + arm_w / 2 - 0.01)
            parts.append((_box([x, seat_h + arm_h, z0 + arm_l / 2], [arm_w, 0.035, arm_l]), ARM, col_arm))
            parts.append((_box([x, seat_h + arm_h / 2, z0 + arm_l - 0.03], [arm_w * 0.7, arm_h, 0.04]),
                           ARM, col_arm))
    return parts


def _wing(root_x, tip_x, y, z_le, chord, tip_chord, sweep, dihedral, thick):
    """Convex hull of a tapered, swept slab from x=root_x to x=tip_x (leading edge at +z)."""
    pts = []
    for x, c, dz, dy in ((root_x, chord, 0.0, 0.0), (tip_x, tip_chord, sweep, dihedral)):
        for z in (z_le - dz, z_le - dz - c):
            for t in (-thick / 2, thick / 2):
                pts.append([x, y + dy + t, z])
    return _hull(pts)


def build_airplane(rng):
    """Fuselage with nose and tail cones, swept wings, stabilisers and fin, optional engines."""
    U = rng.uniform
    col_body = _colour(rng, PLANE_BODY, 0.03)
    col_wing = col_body if U() < 0.4 else _other_colour(rng, PLANE_BODY, col_body, 0.03)
    col_tail = _colour(rng, PLANE_ACCENT)
    col_eng = _colour(rng, np.vstack([PLANE_ACCENT, [[0.35, 0.35, 0.38]]]))
    BODY, WING, TAIL, ENGINE = 1, 2, 3, 4
    length, r = U(0.85, 1.0), U(0.045, 0.075)
    nose, tail = U(0.08, 0.16), U(0.16, 0.26)
    z_front, z_back = length / 2 - nose, -length / 2 + tail
    parts = [(_rod([0, 0, z_back], [0, 0, z_front], r, 16), BODY, col_body)]
    parts.append((_hull(np.vstack([_disc([0, 0, z_front], r, 2), [[0, -0.2 * r, length / 2]]])), BODY, col_body))
    parts.append((_hull(np.vstack([_disc([0, 0, z_back], r, 2), _disc([0, 0.5 * r, -length / 2], 0.3 * r, 2)])),
                  BODY, col_body))

    span = length * U(0.85, 1.0)
    chord, taper, sweep = U(0.16, 0.26), U(0.3, 0.6), U(0.0, 0.25)
    thick, dihedral = U(0.025, 0.035), U(0.0, 0.06)
    z_wing, y_wing = U(-0.05, 0.12), U(-0.6, 0.3) * r
    for s in (-1, 1):
        parts.append((_wing(0, s * span / 2, y_wing, z_wing, chord, chord * taper, sweep, dihedral, thick),
                      WING, col_wing))

    fin_chord, fin_h, fin_sweep = U(0.12, 0.2), U(0.1, 0.18), U(0.03, 0.1)
    z_fin = -length / 2 + fin_chord + 0.02
    fin = []
    for y, dz, c in ((0.4 * r, 0.0, fin_chord), (0.4 * r + fin_h, fin_sweep, fin_chord * 0.6)):
        for z in (z_fin - dz, z_fin - dz - c):
            for x in (-thick / 2, thick / 2):
                fin.append([x, y, z])
    parts.append((_hull(fin), TAIL, col_tail))
    t_tail = U() < 0.25
    st_span, st_chord = span * U(0.3, 0.45), chord * U(0.45, 0.7)
    st_y = 0.4 * r + fin_h if t_tail else 0.3 * r
    st_z = z_fin - (fin_sweep if t_tail else 0.0) + 0.01
    for s in (-1, 1):
        parts.append((_wing(0, s * st_span / 2, st_y, st_z, st_chord, st_chord * 0.6, st_chord * 0.4,
                            0.0, thick * 0.8), TAIL, col_tail))

    if U() < 0.7:
        re, le = U(0.03, 0.045), U(0.1, 0.16)
        xs = [0.25] if U() < 0.7 else [0.2, 0.36]
        for frac in xs:
            for s in (-1, 1):
                x = s * span * frac
                z_le = z_wing - sweep * (2 * abs(x) / span)
                y = y_wing + dihedral * (2 * abs(x) / span) - thick / 2 - re + 0.005
                parts.append((_rod([x, y, z_le - le * 0.6], [x, y, z_le + le * 0.4], re, 12), ENGINE, col_eng))
    return parts


def build_car(rng):
    """Chamfered body, hood wedge, cabin (sedan or hatchback), four wheels."""
    U = rng.uniform
    col_body = _colour(rng, CAR_BODY, 0.03)
    col_hood = col_body if U() < 0.5 else _other_colour(rng, np.vstack([CAR_BODY, [[0.25, 0.25, 0.27]]]),
                                                          col_body, 0.03)
    col_roof = _colour(rng, GLASS, 0.03)
    col_wheel = _colour(rng, TYRE, 0.02)
    BODY, ROOF, HOOD, WHEEL = 1, 2, 3, 4
    length, width = 1.0, U(0.38, 0.46)
    rw, ww = U(0.08, 0.11), U(0.05, 0.08)
    y0 = rw * U(0.5, 0.8)
    y1 = y0 + U(0.13, 0.2)
    c0, c1 = U(0.02, 0.05), U(0.03, 0.07)  # chamfers at the bottom and top edges
    profile = [(y0, -length / 2 + c0), (y0, length / 2 - c0), (y0 + c0, length / 2), (y1 - c1, length / 2),
               (y1, length / 2 - c1), (y1, -length / 2 + c1), (y1 - c1, -length / 2), (y0 + c0, -length / 2)]
    body = [[x, y, z] for x in (-width / 2, width / 2) for y, z in profile]
    parts = [(_hull(body), BODY, col_body)]

    hood_len, hood_h = length * U(0.25, 0.35), U(0.02, 0.05)
    z_hood_back = length / 2 - c1 - hood_len
    hood = []
    for x in (-width * 0.48, width * 0.48):
        hood += [[x, y1 - 0.01, length / 2 - c1], [x, y1 + 0.3 * hood_h, length / 2 - c1],
                 [x, y1 - 0.01, z_hood_back], [x, y1 + hood_h, z_hood_back]]
    parts.append((_hull(hood), HOOD, col_hood))

    cabin_h = U(0.12, 0.18)
    if U() < 0.6:  # sedan: a trunk behind the cabin
        z_rear, rear_slope = -length / 2 + length * U(0.15, 0.25), U(0.08, 0.15)
    else:  # hatchback / estate
        z_rear, rear_slope = -length / 2 + c1, U(0.02, 0.06)
    wind = U(0.1, 0.2)
    top_w = width * U(0.75, 0.85)
    cabin = []
    for x_lo, x_hi, y, za, zb in ((-width * 0.46, width * 0.46, y1 - 0.01, z_rear, z_hood_back),
                                  (-top_w / 2, top_w / 2, y1 + hood_h * 0.5 + cabin_h, z_rear + rear_slope,
                                   z_hood_back - wind)):
        cabin += [[x_lo, y, za], [x_hi, y, za], [x_lo, y, zb], [x_hi, y, zb]]
    parts.append((_hull(cabin), ROOF, col_roof))

    axle = length * U(0.17, 0.24)
    for sz in (-1, 1):
        for sx in (-1, 1):
            x = sx * (width / 2 - ww / 2 + 0.015)
            z = sz * (length / 2 - axle)
            parts.append((_rod([x - ww / 2, rw, z], [x + ww / 2, rw, z], rw, 20), WHEEL, col_wheel))
    return parts


BUILDERS = {"chair": build_chair, "airplane": build_airplane, "car": build_car}


# --------------------------------------------------------------------------
# geometry helpers
# --------------------------------------------------------------------------
def normalise(parts, radius=BOUND_RADIUS):
    """Centre the bounding box at the origin and scale into a sphere of ``radius`` (in place)."""
    verts = np.vstack([m.vertices for m, _, _ in parts])
    centre = (verts.min(0) + verts.max(0)) / 2
    scale = radius / np.linalg.norm(verts - centre, axis=1).max()
    for m, _, _ in parts:
        m.vertices = (m.vertices - centre) * scale
    return parts


def sample_surface(parts, n, rng, return_faces=False):
    """Area-weighted surface samples, minus those buried inside another primitive.

    Returns ``xyz (M, 3)``, ``part (M,)`` index into ``parts`` (M <= n); with
    ``return_faces`` also ``face (M,)``, the face index in the concatenation of
    the parts' faces (as :meth:`Surface.from_parts`), and ``bary (M, 3)``.
    """
    areas = np.array([m.area for m, _, _ in parts])
    counts = rng.multinomial(n, areas / areas.sum())
    offsets = np.cumsum([0] + [len(m.faces) for m, _, _ in parts])
    xyz, owner, faces, barys = [], [], [], []
    for k, ((mesh, _, _), c) in enumerate(zip(parts, counts)):
        if c == 0:
            continue
        points, face, bary = sample_faces(mesh.triangles, mesh.area_faces / mesh.area, c, rng)
        xyz.append(points)
        owner.append(np.full(c, k))
        faces.append(face + offsets[k])
        barys.append(bary)
    xyz, owner = np.concatenate(xyz), np.concatenate(owner)
    faces, barys = np.concatenate(faces), np.concatenate(barys)
    buried = np.zeros(len(xyz), bool)
    for k, (mesh, _, _) in enumerate(parts):  # every primitive is convex: a point is inside
        normals = mesh.face_normals  # when it is behind all of its face planes
        offsets = np.einsum("ij,ij->i", normals, mesh.triangles[:, 0])
        lo, hi = mesh.bounds
        near = np.all((xyz > lo) & (xyz < hi), axis=1) & (owner != k)
        if near.any():
            signed = xyz[near] @ normals.T - offsets
            buried[np.flatnonzero(near)[np.all(signed < -1e-4, axis=1)]] = True
    if return_faces:
        return xyz[~buried], owner[~buried], faces[~buried], barys[~buried]
    return xyz[~buried], owner[~buried]


# --------------------------------------------------------------------------
# colour styles
# --------------------------------------------------------------------------
def pattern_texture(pattern, colour_a, colour_b, size=TEXTURE_SIZE):
    """One period of a procedural pattern in two colours: uint8 (size, size, 3).

    ``stripes``: two bands across u; ``checks``: 2 x 2 squares; ``gradient``:
    a ramp a -> b -> a across u (it wraps without a seam). Colours RGB in [0, 1].
    """
    a, b = quantise(np.asarray(colour_a)), quantise(np.asarray(colour_b))
    u = (np.arange(size) + 0.5) / size  # texel centres, across the columns
    if pattern == "stripes":
        t = np.broadcast_to((u >= 0.5).astype(float)[None, :], (size, size))
    elif pattern == "checks":
        t = ((u[:, None] >= 0.5) ^ (u[None, :] >= 0.5)).astype(float)
    elif pattern == "gradient":
        t = np.broadcast_to((1.0 - np.abs(2.0 * u - 1.0))[None, :], (size, size))
    else:
        raise ValueError(f"unknown pattern {pattern!r}; choose from {', '.join(PATTERNS)}")
    return np.round((a + (b - a) * t[..., None]) * 255.0).astype(np.uint8)


def complementary_colour(colour):
    """The hidden side's colour in the ``complementary`` style: each channel's 8-bit value ``v``
    becomes ``COMPLEMENT_SUM - v`` (286 - v), clipped to [0, 255].

    Args:
        colour: float (..., 3) RGB in [0, 1] (quantised to 8 bits first).
    Returns:
        float (..., 3) RGB in [0, 1], on the 8-bit grid.
    """
    v = np.round(np.clip(np.asarray(colour, np.float64), 0.0, 1.0) * 255.0)
    return np.clip(COMPLEMENT_SUM - v, 0.0, 255.0) / 255.0


def hidden_faces(parts, category):
    """bool (F,) over the parts' concatenated faces: the faces on a part's hidden side
    (:data:`HIDDEN_SIDES`)."""
    sides = HIDDEN_SIDES.get(category, {})
    out = []
    for mesh, label, _ in parts:
        hidden = np.zeros(len(mesh.faces), bool)
        if label in sides:
            axis, sign = sides[label]
            hidden = sign * mesh.face_normals[:, axis] > HIDDEN_COS
        out.append(hidden)
    return np.concatenate(out)


def styled_surface(parts, category, style, rng):
    """The model's :class:`Surface` in a colour style (see the module docstring).

    Args:
        parts: [(trimesh.Trimesh, part label, quantised colour)], ShapeNet frame.
        category: e.g. "chair" (its :data:`HIDDEN_SIDES`).
        style: one of :data:`COLOUR_STYLES`.
        rng: numpy Generator for the second colours and the patterns (not drawn from for ``flat``).
    Returns:
        Surface whose faces are the parts' faces in order (``Surface.from_parts``).
    """
    if style not in COLOUR_STYLES:
        raise ValueError(f"unknown colour style {style!r}; choose from {', '.join(COLOUR_STYLES)}")
    surface = Surface.from_parts(parts)
    if style == "flat":
        return surface
    hidden = hidden_faces(parts, category)
    colours = surface.corner_colours[:, 0].copy()
    texture_index = np.full(len(colours), -1)
    uv = np.zeros((len(colours), 3, 2))
    textures = []
    start = 0
    for mesh, _, colour in parts:
        sl = slice(start, start + len(mesh.faces))
        start += len(mesh.faces)
        if style == "complementary":  # a function of the visible colour; nothing is drawn
            back = complementary_colour(colour)
        else:
            back = quantise(_other_colour(rng, BRIGHT, colour))
        colours[sl][hidden[sl]] = back
        if style == "textured":
            pattern = PATTERNS[rng.integers(len(PATTERNS))]
            second = _other_colour(rng, np.vstack([BRIGHT, WOOD_METAL]), colour)
            period = rng.uniform(0.08, 0.2)  # world units (the object fits in a sphere of radius 0.46)
            textures.append(pattern_texture(pattern, colour, second))
            # planar UVs: the two coordinates across the face's dominant normal axis, per period
            axis = np.abs(mesh.face_normals).argmax(1)
            other = np.array([[1, 2], [0, 2], [0, 1]])[axis]  # (F, 2)
            corners = mesh.triangles  # (F, 3, 3)
            face_uv = np.take_along_axis(corners, np.repeat(other[:, None, :], 3, axis=1), axis=2) / period
            visible = ~hidden[sl]
            idx = np.arange(sl.start, sl.stop)[visible]
            texture_index[idx] = len(textures) - 1
            uv[idx] = face_uv[visible]
    return Surface(surface.vertices, surface.faces, corner_colours=np.repeat(colours[:, None], 3, axis=1),
                   labels=surface.labels, uv=uv, texture_index=texture_index, textures=textures)


# --------------------------------------------------------------------------
# one model
# --------------------------------------------------------------------------
def model_seed(seed, synset, index):
    """The SeedSequence of one model: depends only on (seed, category, model index)."""
    return np.random.SeedSequence([int(seed), int(synset), int(index)])


def model_parts(category, index, seed=0):
    """The parts of one model: [(trimesh.Trimesh, part label, quantised colour)], normalised."""
    shape_ss = model_seed(seed, synset_id(category), index).spawn(3)[0]
    parts = normalise(BUILDERS[category](np.random.default_rng(shape_ss)))
    return [(m, lab, quantise(col)) for m, lab, col in parts]


def model_surface(category, index, seed=0, colours="flat", parts=None):
    """The :class:`Surface` of one model in a colour style (what :func:`make_model` renders and samples).
    The style's generator is the model's fifth seed child: the first three (shape, views,
    points) stay those of the flat style, the fourth is the second sampling's (make_model)."""
    parts = model_parts(category, index, seed) if parts is None else parts
    style_ss = model_seed(seed, synset_id(category), index).spawn(5)[4]
    return styled_surface(parts, category, colours, np.random.default_rng(style_ss))


def make_model(category, index, seed=0, n_views=10, img_size=64, shading=False,
               el_range=(-10.0, 40.0), n_dense=8000, supersample=SUPERSAMPLE, colours="flat"):
    """Build, render and sample one model. Pure function of its arguments.

    Returns a dict: ``views (V, 2)`` degrees (azimuth, elevation); ``rgb (V,H,W,3)``
    uint8; ``depth (V,H,W)`` uint8 (255 = background); ``labels (V,H,W)`` uint8
    (0 = background, k = part k); ``pcl (1024, 3)`` float32 ShapeNet frame;
    ``colours (1024, 3)`` float32 in [0,1] (the surface's colour where each point was
    sampled); ``point_labels (1024,)`` int32, 1-based; ``sides (1024,)`` uint8, 1 where the
    point lies on a part's hidden side (:func:`hidden_faces`, the same in every style); and
    ``resample``, a dict with the same cloud keys: an independent second sampling of the same
    surface (its own dense sample and farthest point sampling). ``colours`` (the argument): one
    of :data:`COLOUR_STYLES`.
    """
    synset = synset_id(category)
    # spawn(4)'s first three children are spawn(3)'s: the fourth stream (the second sampling)
    # leaves the shapes, views and first cloud exactly as they were before it existed.
    shape_ss, view_ss, sample_ss, resample_ss = model_seed(seed, synset, index).spawn(4)
    parts = model_parts(category, index, seed)
    surface = model_surface(category, index, seed, colours, parts)

    view_rng = np.random.default_rng(view_ss)
    az = view_rng.uniform(0.0, 360.0, n_views)
    el = view_rng.uniform(el_range[0], el_range[1], n_views)
    renderer = MeshRenderer(surface)
    rgb, depth, labels = [], [], []
    for a, e in zip(az, el):
        view = renderer.render(np.radians(a), np.radians(e), img_size, img_size, shading, supersample)
        rgb.append(np.round(view.rgb * 255).astype(np.uint8))
        labels.append(view.label)
        depth.append(encode_depth(view.depth, view.hit))

    part_label = np.array([lab for _, lab, _ in parts])
    part_colour = np.array([col for _, _, col in parts])
    hidden = hidden_faces(parts, category)

    def cloud(ss):
        rng = np.random.default_rng(ss)
        xyz, owner, face, bary = sample_surface(parts, n_dense, rng, return_faces=True)
        keep = farthest_point_sampling(xyz, N_GT_PTS, rng)
        xyz, owner, face, bary = xyz[keep], owner[keep], face[keep], bary[keep]
        if colours == "flat":  # one colour per part (what this generator has always written)
            point_colours = part_colour[owner]
        else:  # the surface's colour at the sampled point, as 8-bit as the renders
            point_colours = quantise(surface.colour_at(face, bary))
        return dict(pcl=xyz.astype(np.float32), colours=point_colours.astype(np.float32),
                    point_labels=part_label[owner].astype(np.int32), sides=hidden[face].astype(np.uint8))

    return dict(views=np.stack([az, el], 1), rgb=np.stack(rgb), depth=np.stack(depth),
                labels=np.stack(labels), **cloud(sample_ss), resample=cloud(resample_ss))


def model_id(category, index):
    return f"{category}_{index:04d}"


def write_model(root, category, index, model):
    """Write one model's files into both trees (RGB and partseg) under ``root``."""
    rel = Path(synset_id(category)) / model_id(category, index)
    rgb, seg = tree_dirs(root), tree_dirs(root, PART_TREE_DIR)
    write_views([Path(rgb["rendered"]) / rel, Path(seg["rendered"]) / rel], model["views"], model["rgb"],
                model["depth"])
    write_label_maps(Path(seg["labels"]) / rel, model["labels"])
    write_rgb_cloud(Path(rgb["pcl"]) / rel, model["pcl"], model["colours"])
    write_point_sides(Path(rgb["pcl"]) / rel, model["sides"])
    write_part_cloud(Path(seg["pcl"]) / rel, model["pcl"], model["point_labels"])
    again = model["resample"]
    write_rgb_cloud(Path(rgb["pcl"]) / rel, again["pcl"], again["colours"],
                    files=(RESAMPLE_PCL_FILE, RESAMPLE_COLOURS_FILE))
    write_part_cloud(Path(seg["pcl"]) / rel, again["pcl"], again["point_labels"],
                     files=(RESAMPLE_PCL_FILE, RESAMPLE_LABELS_FILE))


def _job(job):
    root, category, index, kw = job
    write_model(Path(root), category, index, make_model(category, index, **kw))
    return category, index


# --------------------------------------------------------------------------
# whole data set
# --------------------------------------------------------------------------
def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(out):
    """Remove the working folders of generator runs that died (kill -9, power loss) in ``out``.

    A running generator holds an exclusive flock on ``<tmp>/.owner``; a folder
    whose lock is free belongs to a dead run. A folder without the file (a run
    that has not taken its lock yet, or an older version) is kept only while the
    PID in its name is alive. Returns the removed paths.
    """
    removed = []
    for tmp in sorted(Path(out).glob(TMP_PREFIX + "*")):
        if not tmp.is_dir():
            continue
        owner = tmp / TMP_OWNER
        try:
            fd = os.open(owner, os.O_RDONLY)
        except FileNotFoundError:
            pid = tmp.name[len(TMP_PREFIX):].split("_")[0]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its generator is running
            finally:
                os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def category_paths(root, synset):
    """The files and folders of one category in a data root (both trees, split lists of either kind)."""
    paths = []
    for tree in ("", PART_TREE_DIR):  # the colour tree at the root, the part-label tree below it
        dirs = tree_dirs(root, tree)
        paths += [Path(dirs[key]) / synset for key in ("rendered", "pcl", "labels") if key in dirs]
        paths += [Path(dirs["splits"][0]) / split_list_file(synset, split, ext)
                  for split in SPLITS for ext in (".npy", ".txt")]
    return paths


def _present(root, synset):
    return [p for p in category_paths(root, synset) if p.exists()]


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def generate(out, categories=DEFAULT_CATEGORIES, n_models=200, n_views=10, img_size=64, seed=0,
             shading=False, workers=2, el_range=(-10.0, 40.0), supersample=SUPERSAMPLE, force=False,
             progress=True, colours="flat"):
    """Generate the demo data set into ``out`` (see the module docstring).

    Everything is written into a temporary folder inside ``out`` first and moved
    into place at the end (``demo_info.json`` last), so an interrupted run never
    leaves a data set that looks complete. ``out`` is locked meanwhile (a second data tool
    writing into it is refused, naming this one). Refuses to overwrite the categories asked for
    when ``out`` holds them, unless ``force``: then only those categories are replaced (and
    said so); other categories in ``out`` are kept. Returns the info dict written to ``demo_info.json``.
    """
    out = Path(out).resolve()
    categories = [c.strip().lower() for c in categories]
    for c in categories:
        if c not in BUILDERS:
            raise ValueError(f"no demo shapes for category {c!r}; choose from {sorted(BUILDERS)}")
    if colours not in COLOUR_STYLES:
        raise ValueError(f"unknown colour style {colours!r} (--colours); choose from {', '.join(COLOUR_STYLES)}")
    if n_models < 1 or n_views < 1 or img_size < 8 or supersample < 1:
        raise ValueError("need n_models >= 1, n_views >= 1, img_size >= 8 and supersample >= 1")
    check_out_folder(out)
    existing = {c: _present(out, synset_id(c)) for c in categories}
    existing = {c: paths for c, paths in existing.items() if paths}
    if existing and not force:  # (checked again under the lock)
        raise FileExistsError(f"{out} already holds {', '.join(existing)}; pass --force to replace "
                              f"{'them' if len(existing) > 1 else 'it'} (other categories are kept)")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with lock_data_folder(out):
            return _generate_locked(out, categories, n_models, n_views, img_size, seed, shading, workers, el_range,
                                    supersample, force, progress, colours)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # no empty --out left behind
        raise


def _generate_locked(out, categories, n_models, n_views, img_size, seed, shading, workers, el_range,
                     supersample, force, progress, colours):
    existing = {c: _present(out, synset_id(c)) for c in categories}
    existing = {c: paths for c, paths in existing.items() if paths}
    if existing and not force:
        raise FileExistsError(f"{out} already holds {', '.join(existing)}; pass --force to replace them")
    for stale in remove_stale_temporaries(out):
        cli.warn(f"removed {stale}, left by an interrupted run", tool="make_demo_data")
    t0 = time.time()
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}_", dir=out))
    owner = os.open(tmp / TMP_OWNER, os.O_WRONLY | os.O_CREAT, 0o644)
    fcntl.flock(owner, fcntl.LOCK_EX)  # released by the kernel if this process dies
    try:
        kw = dict(seed=seed, n_views=n_views, img_size=img_size, shading=shading, el_range=tuple(el_range),
                  supersample=supersample, colours=colours)
        jobs = [(str(tmp), c, i, kw) for c in categories for i in range(n_models)]
        bar = Progress(len(jobs), "demo data", unit="model", enabled=progress)
        for _ in run_jobs(_job, jobs, workers, chunksize=4):
            bar.update()
        bar.close()

        for c in categories:
            syn = synset_id(c)
            splits = split_models([model_id(c, i) for i in range(n_models)], seed, syn)
            write_splits(tree_dirs(tmp)["splits"][0], syn, splits, ".npy")
            write_splits(tree_dirs(tmp, PART_TREE_DIR)["splits"][0], syn, splits, ".txt")
        names = _read_json(out / PART_TREE_DIR / PART_NAMES_FILE)  # other categories' names are kept
        names.update({synset_id(c): list(DEMO_PART_NAMES[c]) for c in categories})
        (tmp / PART_TREE_DIR / PART_NAMES_FILE).write_text(json.dumps(names, indent=1) + "\n")
        info = dict(generator="utils.datagen.demo_data", categories={c: synset_id(c) for c in categories},
                    n_models=n_models, n_views=n_views, img_size=img_size, seed=seed, shading=shading,
                    colours=colours,
                    elevation_range_deg=list(el_range), supersample=supersample, n_pts=N_GT_PTS,
                    bound_radius=BOUND_RADIUS, resampled_clouds=True,
                    split_fractions=list(SPLIT_FRACTIONS), seconds=round(time.time() - t0, 1))
        old_info = _read_json(out / INFO_FILE)
        kept = {c: s for c, s in old_info.get("categories", {}).items() if c not in info["categories"]} \
            if old_info.get("generator") == info["generator"] else {}
        if kept:
            info["other_categories_kept"] = kept
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")

        with cli.deferred_signals():  # the moves into place are not cut short by Ctrl-C / SIGTERM
            for c, paths in existing.items():  # only with force
                cli.warn(f"--force: replacing {c} ({synset_id(c)}) in {out}: "
                         f"{', '.join(str(p.relative_to(out)) for p in paths)}", tool="make_demo_data")
            if (out / INFO_FILE).exists():
                (out / INFO_FILE).unlink()  # until the new one is written, the set is not marked complete
            for c in categories:
                for target in category_paths(out, synset_id(c)):
                    if target.is_dir():
                        shutil.rmtree(target)
                    elif target.exists():
                        target.unlink()
                    source = tmp / target.relative_to(out)
                    if source.exists():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(source, target)
            (out / PART_TREE_DIR).mkdir(exist_ok=True)
            os.replace(tmp / PART_TREE_DIR / PART_NAMES_FILE, out / PART_TREE_DIR / PART_NAMES_FILE)
            os.replace(tmp / INFO_FILE, out / INFO_FILE)  # the info file last: it marks a complete data set
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(owner)
    return info


# --------------------------------------------------------------------------
# figure of the colour styles
# --------------------------------------------------------------------------
def camera_position(az, el):
    """The camera centre of view (az, el) (radians) in the ShapeNet frame, float (3,)."""
    from utils.render import camera
    return (camera.cam2world_np(np.zeros((1, 3)), az, el) @ ALIGN)[0]


def facing_azimuth(direction, el, step_deg=1.0):
    """The azimuth (radians) whose camera, at elevation ``el`` (radians), looks at the object from
    the side ``direction`` (ShapeNet frame, e.g. (0, 0, 1): the front) most squarely."""
    azs = np.radians(np.arange(0.0, 360.0, step_deg))
    pos = np.array([camera_position(a, el) for a in azs])
    return float(azs[np.argmax(pos @ np.asarray(direction, float))])


def colour_figure(path, category="chair", n_models=4, seed=0, styles=COLOUR_STYLES, img_size=96,
                  el_deg=20.0, side_deg=35.0):
    """A PNG of ``n_models`` models in every colour style, each from the front and from behind
    (three-quarter views, ``side_deg`` off the axis). Returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    el = np.radians(el_deg)
    front = facing_azimuth([np.sin(np.radians(side_deg)), 0, np.cos(np.radians(side_deg))], el)
    back = facing_azimuth([np.sin(np.radians(side_deg)), 0, -np.cos(np.radians(side_deg))], el)
    fig = Figure(figsize=(1.25 * 2 * n_models, 1.35 * len(styles)), dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(styles), 2 * n_models, squeeze=False,
                        gridspec_kw=dict(wspace=0.02, hspace=0.15, left=0.01, right=0.99, top=0.9, bottom=0.01))
    for m in range(n_models):
        parts = model_parts(category, m, seed)
        for r, style in enumerate(styles):
            renderer = MeshRenderer(model_surface(category, m, seed, style, parts))
            for c, (az, side) in enumerate(((front, "front"), (back, "back"))):
                view = renderer.render(az, el, img_size, img_size)
                ax = axes[r, 2 * m + c]
                ax.imshow(view.rgb)  # black background, as in the data
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{model_id(category, m)} {side}", fontsize=7)
                if m == 0 and c == 0:
                    ax.set_ylabel(style, fontsize=9)
    fig.suptitle(f"demo {category}s: --colours {', '.join(styles)} (front and back)", fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def build_parser():
    p = argparse.ArgumentParser(
        prog="make_demo_data.py",
        description="Generate the procedural demo data set (chairs, airplanes, cars with coloured parts) "
                    "in the original DIFFER layout: RGB renders, masks, part-label maps, view angles, "
                    "1024-point ground-truth clouds with colours and part labels, train/val/test splits.")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="data folder to fill (default: the repository's data/, %(default)s)")
    p.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES),
                   help="categories to generate, space- or comma-separated, from: chair airplane car "
                        "(default: all three)")
    p.add_argument("--n_models", type=int, default=200, help="models per category (default: %(default)s)")
    p.add_argument("--n_views", type=int, default=10, help="rendered views per model (default: %(default)s)")
    p.add_argument("--img_size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default: %(default)s)")
    p.add_argument("--colours", choices=COLOUR_STYLES, default="flat",
                   help="colour style: 'flat' one colour per part (default); 'two-sided' the hidden side of a "
                        "part (a chair's backrest rear and seat underside, ...) in a second colour drawn at random; "
                        "'textured' two-sided plus stripes, checks or gradients on the other faces; "
                        "'complementary' two-sided with the hidden side in a fixed function of the visible "
                        "colour (each 8-bit channel v becomes 286 - v), so one view of a part tells both sides")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="only draw a figure of a few chairs in every colour style (front and back) into PNG, "
                        "e.g. docs/demo_colours.png, and write no data")
    p.add_argument("--shading", action="store_true",
                   help="shade the renders (Lambert); default flat colours, equal to the point colours")
    p.add_argument("--elevation", type=float, nargs=2, default=[-10.0, 40.0], metavar=("MIN", "MAX"),
                   help="elevation range of the views in degrees (default: %(default)s)")
    p.add_argument("--supersample", type=int, default=SUPERSAMPLE,
                   help="rays per pixel side; a pixel is foreground when any of its rays hits "
                        "(default: %(default)s; 1 = one ray through the pixel centre)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help="worker processes (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="replace the categories asked for when --out already holds them (others are kept)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (on a terminal) or progress lines (in a log file)")
    return p


def _main(argv=None):
    args = build_parser().parse_args(argv)
    categories = [c for item in args.categories for c in item.split(",") if c.strip()]
    if args.figure:
        colour_figure(args.figure, seed=args.seed)
        print(f"make_demo_data: figure written to {args.figure}")
        return 0
    info = generate(args.out, categories, n_models=args.n_models, n_views=args.n_views,
                    img_size=args.img_size, seed=args.seed, shading=args.shading, workers=args.workers,
                    el_range=args.elevation, supersample=args.supersample, force=args.force,
                    progress=not args.quiet, colours=args.colours)
    print(f"make_demo_data: {len(info['categories'])} categories x {info['n_models']} models x "
          f"{info['n_views']} views written to {Path(args.out).resolve()} in {info['seconds']} s")
    return 0


def main(argv=None):
    """The command line (utils.cli): status 0, 2 after a one-line error, 128 + signal when interrupted."""
    return cli.run("make_demo_data", _main, argv, expected=(ValueError, lock.FolderInUse), status=2,
                   interrupted_hint="its working folder was removed, nothing else was changed; re-run the command")


if __name__ == "__main__":
    sys.exit(main())
