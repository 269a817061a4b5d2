"""Procedural demo shapes: chairs, airplanes and cars as unions of convex primitives with parts.

Each model is a list of parts ``[(trimesh.Trimesh, part label 1.., colour)]`` in the ShapeNet
frame (y up, x across, the object's front towards +z): boxes, cylinders, cones and convex hulls,
every primitive belonging to one part (the ShapeNet part vocabulary,
:data:`utils.data.shapenet.DEMO_PART_NAMES`) and carrying that part's colour. Proportions, part
styles, part presence (arms, engines, ...) and colours are drawn at random per model
(:data:`BUILDERS`); :func:`model_parts` builds model ``index`` of a category from its seed, scaled
into a sphere of radius :data:`utils.datagen.mesh_render.BOUND_RADIUS`.

:func:`sample_parts` is the dense surface sampler of these shapes: area-weighted, minus the
samples buried inside another primitive (every primitive is convex). The colour styles of the
demo data are in :mod:`utils.datagen.styles`; the shapes become a model source of the one
render -> sample -> write path in :mod:`utils.datagen.sources`.
"""

import numpy as np
import trimesh

from utils.data.shapenet import synset_id
from utils.datagen.mesh_render import BOUND_RADIUS
from utils.datagen.sampling import sample_faces
from utils.datagen.writer import quantise

# --------------------------------------------------------------------------
# colours (RGB in [0, 1]); none is very dark, the background is black
# --------------------------------------------------------------------------
BRIGHT = np.array(
    [
        [0.82, 0.16, 0.14],
        [0.18, 0.36, 0.80],
        [0.16, 0.60, 0.30],
        [0.96, 0.56, 0.10],
        [0.95, 0.84, 0.20],
        [0.56, 0.30, 0.72],
        [0.10, 0.62, 0.62],
        [0.86, 0.76, 0.56],
        [0.76, 0.76, 0.78],
        [0.58, 0.36, 0.20],
        [0.92, 0.45, 0.62],
    ]
)
WOOD_METAL = np.array(
    [[0.46, 0.29, 0.15], [0.76, 0.59, 0.36], [0.62, 0.64, 0.68], [0.30, 0.30, 0.33], [0.90, 0.90, 0.90]]
)
PLANE_BODY = np.array(
    [[0.93, 0.93, 0.93], [0.75, 0.77, 0.80], [0.60, 0.75, 0.90], [0.45, 0.50, 0.35], [0.68, 0.70, 0.72]]
)
PLANE_ACCENT = np.array(
    [
        [0.85, 0.12, 0.12],
        [0.15, 0.25, 0.65],
        [0.95, 0.55, 0.10],
        [0.15, 0.55, 0.30],
        [0.95, 0.82, 0.15],
        [0.45, 0.45, 0.50],
    ]
)
CAR_BODY = np.array(
    [
        [0.80, 0.10, 0.10],
        [0.15, 0.30, 0.75],
        [0.72, 0.74, 0.76],
        [0.94, 0.94, 0.92],
        [0.95, 0.80, 0.10],
        [0.15, 0.50, 0.25],
        [0.95, 0.45, 0.05],
        [0.35, 0.20, 0.55],
    ]
)
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
            parts.append((_box([x, seat_h + arm_h / 2, z0 + arm_l - 0.03], [arm_w * 0.7, arm_h, 0.04]), ARM, col_arm))
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
    parts.append(
        (_hull(np.vstack([_disc([0, 0, z_back], r, 2), _disc([0, 0.5 * r, -length / 2], 0.3 * r, 2)])), BODY, col_body)
    )

    span = length * U(0.85, 1.0)
    chord, taper, sweep = U(0.16, 0.26), U(0.3, 0.6), U(0.0, 0.25)
    thick, dihedral = U(0.025, 0.035), U(0.0, 0.06)
    z_wing, y_wing = U(-0.05, 0.12), U(-0.6, 0.3) * r
    for s in (-1, 1):
        parts.append(
            (_wing(0, s * span / 2, y_wing, z_wing, chord, chord * taper, sweep, dihedral, thick), WING, col_wing)
        )

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
        parts.append(
            (
                _wing(0, s * st_span / 2, st_y, st_z, st_chord, st_chord * 0.6, st_chord * 0.4, 0.0, thick * 0.8),
                TAIL,
                col_tail,
            )
        )

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
    col_hood = (
        col_body if U() < 0.5 else _other_colour(rng, np.vstack([CAR_BODY, [[0.25, 0.25, 0.27]]]), col_body, 0.03)
    )
    col_roof = _colour(rng, GLASS, 0.03)
    col_wheel = _colour(rng, TYRE, 0.02)
    BODY, ROOF, HOOD, WHEEL = 1, 2, 3, 4
    length, width = 1.0, U(0.38, 0.46)
    rw, ww = U(0.08, 0.11), U(0.05, 0.08)
    y0 = rw * U(0.5, 0.8)
    y1 = y0 + U(0.13, 0.2)
    c0, c1 = U(0.02, 0.05), U(0.03, 0.07)  # chamfers at the bottom and top edges
    profile = [
        (y0, -length / 2 + c0),
        (y0, length / 2 - c0),
        (y0 + c0, length / 2),
        (y1 - c1, length / 2),
        (y1, length / 2 - c1),
        (y1, -length / 2 + c1),
        (y1 - c1, -length / 2),
        (y0 + c0, -length / 2),
    ]
    body = [[x, y, z] for x in (-width / 2, width / 2) for y, z in profile]
    parts = [(_hull(body), BODY, col_body)]

    hood_len, hood_h = length * U(0.25, 0.35), U(0.02, 0.05)
    z_hood_back = length / 2 - c1 - hood_len
    hood = []
    for x in (-width * 0.48, width * 0.48):
        hood += [
            [x, y1 - 0.01, length / 2 - c1],
            [x, y1 + 0.3 * hood_h, length / 2 - c1],
            [x, y1 - 0.01, z_hood_back],
            [x, y1 + hood_h, z_hood_back],
        ]
    parts.append((_hull(hood), HOOD, col_hood))

    cabin_h = U(0.12, 0.18)
    if U() < 0.6:  # sedan: a trunk behind the cabin
        z_rear, rear_slope = -length / 2 + length * U(0.15, 0.25), U(0.08, 0.15)
    else:  # hatchback / estate
        z_rear, rear_slope = -length / 2 + c1, U(0.02, 0.06)
    wind = U(0.1, 0.2)
    top_w = width * U(0.75, 0.85)
    cabin = []
    for x_lo, x_hi, y, za, zb in (
        (-width * 0.46, width * 0.46, y1 - 0.01, z_rear, z_hood_back),
        (-top_w / 2, top_w / 2, y1 + hood_h * 0.5 + cabin_h, z_rear + rear_slope, z_hood_back - wind),
    ):
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
# one model
# --------------------------------------------------------------------------
def model_seed(seed, synset, index):
    """The SeedSequence of one procedural model: depends only on (seed, category's synset, model index).
    Its children (``spawn(5)``): shape, views, first cloud, second cloud, colour style."""
    return np.random.SeedSequence([int(seed), int(synset), int(index)])


def model_parts(category, index, seed=0):
    """The parts of one model: [(trimesh.Trimesh, part label, quantised colour)], normalised."""
    shape_ss = model_seed(seed, synset_id(category), index).spawn(3)[0]
    parts = normalise(BUILDERS[category](np.random.default_rng(shape_ss)))
    return [(m, lab, quantise(col)) for m, lab, col in parts]


def model_id(category, index):
    """The folder name of model ``index`` of a category: ``chair_0007``."""
    return f"{category}_{index:04d}"


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


def sample_parts(parts, n, rng):
    """Area-weighted surface samples, minus those buried inside another primitive.

    Args:
        parts: [(trimesh.Trimesh, label, colour)]; n: samples drawn before the buried ones are
            dropped; rng: numpy Generator.
    Returns:
        ``xyz (M, 3)``, ``part (M,)`` index into ``parts``, ``face (M,)`` the face index in the
        concatenation of the parts' faces (as :meth:`Surface.from_parts`), ``bary (M, 3)`` (M <= n).
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
    return xyz[~buried], owner[~buried], faces[~buried], barys[~buried]
