"""Colour styles of the demo generator (--colours): in 'two-sided' and 'textured' data the hidden
side of a surface differs from its visible side, in the renders and in the ground-truth clouds.

Oracles: the geometry (face normals from cross products, the face each GT point lies on by brute
force), the camera model (which GT points lie behind the rendered surface of a pixel), and
hand-written texture patterns; never the generator's own colour assignment read back."""

import json

import numpy as np
import pytest

from utils.data import shapenet
from utils.datagen import demo_data, styles
from utils.datagen.mesh_render import DEPTH_FAR, DEPTH_NEAR
from utils.render import camera

BACK, SEAT = 1, 2  # chair part labels
CHAIRS = (0, 1, 2)
N_VIEWS = 8
TOL = 1.5 / 255  # colours are 8-bit


def _face_normals(surface):
    t = surface.triangles
    n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def _faces_under(surface, points, tol=2e-5):
    """bool (N, F): point n lies on face f (distance to its plane and barycentric test), brute force."""
    t = surface.triangles
    a, e1, e2 = t[:, 0], t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    normal = _face_normals(surface)
    rel = points[:, None, :] - a[None]  # (N, F, 3)
    on_plane = np.abs(np.einsum("nfk,fk->nf", rel, normal)) < tol
    d00, d01, d11 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
    d20, d21 = np.einsum("nfk,fk->nf", rel, e1), np.einsum("nfk,fk->nf", rel, e2)
    den = d00 * d11 - d01 * d01
    v, w = (d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den
    eps = tol / np.sqrt(np.maximum(den, 1e-12)) * 10
    return on_plane & (v >= -eps) & (w >= -eps) & (v + w <= 1 + eps)


def _models(style):
    out = []
    for i in CHAIRS:
        surface = styles.model_surface("chair", i, colours=style)
        out.append((surface, demo_data.make_model("chair", i, n_views=N_VIEWS, colours=style)))
    return out


@pytest.fixture(scope="module")
def two_sided():
    return _models("two-sided")


@pytest.fixture(scope="module")
def flat():
    return _models("flat")


def _side_colours(surface, label, axis, sign):
    """The colours of a part's faces facing along sign * axis, and facing the opposite way."""
    n = _face_normals(surface)
    part = surface.labels == label
    colour = surface.corner_colours[:, 0]
    return colour[part & (sign * n[:, axis] > 0.5)], colour[part & (-sign * n[:, axis] > 0.5)]


def test_backrest_rear_and_seat_underside_have_a_second_colour(two_sided, flat):
    for (surface, _), (flat_surface, _) in zip(two_sided, flat):
        for label, axis, sign in ((BACK, 2, -1), (SEAT, 1, -1)):  # rear (-z) of the back, underside (-y) of the seat
            hidden, shown = _side_colours(surface, label, axis, sign)
            assert len(hidden) and len(shown)
            assert np.ptp(hidden, axis=0).max() == 0 and np.ptp(shown, axis=0).max() == 0  # one colour per side
            assert np.abs(hidden[0] - shown[0]).sum() > 0.3
            flat_hidden, flat_shown = _side_colours(flat_surface, label, axis, sign)
            np.testing.assert_array_equal(flat_hidden[0], flat_shown[0])  # flat: one colour for both sides
            np.testing.assert_array_equal(flat_shown[0], shown[0])  # the visible side keeps the part's colour
    # same shapes, views and points in every style: only colours change
    for (_, m2), (_, m1) in zip(two_sided, flat):
        for key in ("views", "depth", "labels", "pcl", "point_labels"):
            np.testing.assert_array_equal(m2[key], m1[key])
        assert not np.array_equal(m2["colours"], m1["colours"])


def test_gt_points_carry_the_colour_of_the_face_they_lie_on(two_sided):
    for surface, model in two_sided:
        under = _faces_under(surface, model["pcl"].astype(np.float64))
        assert under.any(axis=1).mean() > 0.99
        face_colour = surface.corner_colours[:, 0]  # untextured: one colour per face
        err = np.abs(face_colour[None] - model["colours"][:, None]).sum(-1)  # (N, F)
        ok = (under & (err < 3 * TOL)).any(axis=1)
        assert ok[under.any(axis=1)].all()


def _hidden_behind_back_pixels(model, view):
    """bool (N,): the GT points of the backrest hidden behind a backrest pixel of ``view``, for a
    view that sees the chair's front; None for other views."""
    az, el = np.radians(model["views"][view])
    cam = camera.cam2world_np(np.zeros((1, 3)), az, el)[0] @ shapenet.ALIGN  # ShapeNet frame
    if cam[2] / np.linalg.norm(cam) < 0.4:  # not in front of the chair
        return None
    pts = shapenet.preprocess_pcl_gt(model["pcl"])
    pix = camera.project_np(pts, az, el, 64, 64)
    r, c = np.round(pix[:, 0]).astype(int), np.round(pix[:, 1]).astype(int)
    depth_px = DEPTH_NEAR + model["depth"][view][r, c] / 253.0 * (DEPTH_FAR - DEPTH_NEAR)
    return ((model["point_labels"] == BACK) & (model["labels"][view][r, c] == BACK) & (pix[:, 2] > depth_px + 0.02)), (
        r,
        c,
    )


@pytest.mark.parametrize("style", ["flat", "two-sided"])
def test_occluded_gt_colour_differs_from_the_visible_colour_in_two_sided_data(style, two_sided, flat):
    """Seen from the front, a backrest pixel shows the front's colour; the GT points behind it on
    the rear of the backrest (oracle: the face each point lies on, facing -z) carry another colour
    in two-sided data, the same one in flat data."""
    n_hidden = n_rear = 0
    for surface, model in two_sided if style == "two-sided" else flat:
        normals = _face_normals(surface)
        rear_faces = (surface.labels == BACK) & (normals[:, 2] < -0.5)
        on_rear = _faces_under(surface, model["pcl"].astype(np.float64))[:, rear_faces].any(1)
        for v in range(N_VIEWS):
            found = _hidden_behind_back_pixels(model, v)
            if found is None:
                continue
            hidden, (r, c) = found
            pixels = model["rgb"][v][r, c] / 255.0
            gap = np.abs(model["colours"] - pixels).sum(1)
            n_hidden += hidden.sum()
            n_rear += (hidden & on_rear).sum()
            if style == "two-sided":
                assert (gap[hidden & on_rear] > 0.3).all()
            else:
                assert (gap[hidden] < TOL).all()
    assert n_hidden >= 100 and n_rear >= 0.8 * n_hidden  # most hidden backrest points are its rear


def test_textured_style_patterns_and_hidden_side():
    surface = styles.model_surface("chair", 0, colours="textured")
    model = demo_data.make_model("chair", 0, n_views=2, colours="textured")
    n = _face_normals(surface)
    back = surface.labels == BACK
    rear, front = back & (n[:, 2] < -0.5), back & (n[:, 2] > 0.5)
    assert (surface.texture_index[rear] == -1).all() and (surface.texture_index[front] >= 0).all()
    # the GT colours of the backrest's front vary (a pattern); its rear is one colour, not in the front's
    under = _faces_under(surface, model["pcl"].astype(np.float64))
    on_front, on_rear = under[:, front].any(1) & ~under[:, rear].any(1), under[:, rear].any(1)
    front_cols, rear_cols = model["colours"][on_front], model["colours"][on_rear]
    assert len(np.unique(front_cols, axis=0)) > 2 and len(np.unique(rear_cols, axis=0)) == 1
    assert np.abs(front_cols - rear_cols[0]).sum(1).min() > 0.1
    # the pattern images: hand-written expectations
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    stripes = styles.pattern_texture("stripes", a, b, size=4)
    assert (stripes[:, :2] == [255, 0, 0]).all() and (stripes[:, 2:] == [0, 0, 255]).all()
    checks = styles.pattern_texture("checks", a, b, size=4)
    assert (checks[:2, :2] == [255, 0, 0]).all() and (checks[:2, 2:] == [0, 0, 255]).all()
    assert (checks[2:, :2] == [0, 0, 255]).all() and (checks[2:, 2:] == [255, 0, 0]).all()
    ramp = styles.pattern_texture("gradient", a, b, size=4)  # u = 1/8, 3/8, 5/8, 7/8: t = 1/4, 3/4, 3/4, 1/4
    assert ramp[0, :, 2].tolist() == [64, 191, 191, 64] and ramp[0, :, 0].tolist() == [191, 64, 64, 191]


def test_style_is_recorded_and_checked(tmp_path):
    info = demo_data.generate(
        tmp_path / "d", categories=("chair",), n_models=1, n_views=1, workers=1, progress=False, colours="two-sided"
    )
    assert info["colours"] == "two-sided"
    assert json.loads((tmp_path / "d" / demo_data.INFO_FILE).read_text())["colours"] == "two-sided"
    with pytest.raises(ValueError, match="colour style"):
        demo_data.generate(tmp_path / "e", categories=("chair",), n_models=1, progress=False, colours="plaid")
    with pytest.raises(SystemExit):
        demo_data.main(["--colours", "plaid"])


def test_figure_views_show_the_front_and_the_back(tmp_path):
    """--figure: its 'front' view shows the backrest's front colour, its 'back' view the rear colour
    (oracle: the face normals); the PNG is written."""
    from utils.datagen.mesh_render import MeshRenderer

    surface = styles.model_surface("chair", 0, colours="two-sided")
    rear, front = _side_colours(surface, BACK, 2, -1)
    el = np.radians(20.0)
    renderer = MeshRenderer(surface)
    for direction, expected in (((0, 0, 1), front[0]), ((0, 0, -1), rear[0])):
        view = renderer.render(styles.facing_azimuth(direction, el), el, 48, 48)
        shown = view.rgb[view.label == BACK]
        assert len(shown) > 50 and (np.abs(shown - expected).sum(1) < TOL).mean() > 0.8
    path = styles.colour_figure(tmp_path / "fig.png", n_models=1, img_size=32)
    assert path.stat().st_size > 5000


# --------------------------------------------------------------------------- complementary style
def _hidden_side_oracle(surface, points):
    """bool (N,): the point lies on a face of the backrest facing backwards (-z) or of the seat facing
    down (-y), found by brute force (the face under the point, its normal from a cross product);
    and bool (N,): the point lies on exactly one face's side (not on an edge shared by both kinds)."""
    under = _faces_under(surface, points)
    n = _face_normals(surface)
    hidden_face = ((surface.labels == BACK) & (n[:, 2] < -0.5)) | ((surface.labels == SEAT) & (n[:, 1] < -0.5))
    on_hidden, on_other = under[:, hidden_face].any(1), under[:, ~hidden_face].any(1)
    return on_hidden, on_hidden != on_other


def test_complementary_hidden_colour_is_286_minus_the_visible_colour():
    """The complementary style's documented function: on the hidden side of a part every 8-bit channel
    is 286 - v, v the part's visible colour (oracle: the flat style's colour of the same point, and
    which face the point lies on); everything else is as in flat data. The side record says which
    points those are."""
    n_hidden = 0
    for i in CHAIRS:
        comp = demo_data.make_model("chair", i, n_views=N_VIEWS, colours="complementary")
        flat = demo_data.make_model("chair", i, n_views=N_VIEWS, colours="flat")
        for key in ("views", "depth", "labels", "pcl", "point_labels", "sides"):
            np.testing.assert_array_equal(comp[key], flat[key])
        hidden, clear = _hidden_side_oracle(styles.model_surface("chair", i), comp["pcl"].astype(np.float64))
        assert clear.mean() > 0.95 and hidden.sum() > 50
        np.testing.assert_array_equal(comp["sides"][clear].astype(bool), hidden[clear])
        side = comp["sides"].astype(bool)
        v, h = np.round(flat["colours"] * 255), np.round(comp["colours"] * 255)
        np.testing.assert_array_equal(h[side], 286 - v[side])
        np.testing.assert_array_equal(h[~side], v[~side])
        assert np.mean((h[side] - v[side]) ** 2, axis=1).min() / 255**2 > 0.08  # far from the visible colour
        n_hidden += side.sum()
        # the renders: every pixel shows the flat colour or its complement, and the complement is seen
        fv, cv = flat["rgb"].astype(int), comp["rgb"].astype(int)
        same, complemented = (cv == fv).all(-1), (cv == 286 - fv).all(-1)
        assert (same | complemented).all() and complemented.sum() > 100
    assert n_hidden > 300


def _digest(root):
    """sha256 over every file's path and sha256, but the info file (it holds the run time) and the side
    record (new beside the files it leaves unchanged)."""
    import hashlib

    lines = [
        f"{p.relative_to(root).as_posix()}\t{hashlib.sha256(p.read_bytes()).hexdigest()}"
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != demo_data.INFO_FILE and not p.name.endswith("_sides.npy")
    ]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest(), len(lines)


# Made by the generator before the complementary style and the side record existed (commit 97aab6c),
# with the arguments of the test below.
EARLIER_FILES = {
    "flat": "8a993eea98a5ef19a9630d46fd6ccbba526107b0aa552bb3bce9db1fa7c5f694",
    "two-sided": "17c54df60c4d65f782d51304fb75c59508da8f577ed173a81f2b71d7618d99ca",
    "textured": "98d70655b0a7b83161d53bbb67c309e98ff149473ef7f42e1cbe9997334e085a",
}


@pytest.mark.parametrize("style", sorted(EARLIER_FILES))
def test_other_styles_write_the_files_they_always_wrote(style, tmp_path):
    demo_data.generate(
        tmp_path / "d", categories=("chair",), n_models=2, n_views=2, workers=1, progress=False, colours=style
    )
    assert _digest(tmp_path / "d") == (EARLIER_FILES[style], 47)
    assert len(list((tmp_path / "d").rglob("*_sides.npy"))) == 2  # one side record per model, colour tree
