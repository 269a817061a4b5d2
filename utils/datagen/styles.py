"""Colour styles of the demo data (``make_demo_data.py --colours``, :data:`COLOUR_STYLES`).

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

The extra colours and patterns are drawn from a generator of their own (the model's style
stream), so the shapes, views and points of a model are the same in every style, and ``flat``
data are the files this generator has always written. :func:`hidden_faces` (which faces are a
part's hidden side) does not depend on the style: the data record it per point in every style.
"""

from pathlib import Path

import numpy as np

from utils.data.shapenet import ALIGN, synset_id
from utils.datagen.mesh_render import MeshRenderer, Surface
from utils.datagen.shapes import BRIGHT, WOOD_METAL, _other_colour, model_id, model_parts, model_seed
from utils.datagen.writer import quantise

COLOUR_STYLES = ("flat", "two-sided", "textured", "complementary")
# The hidden side of a part, per category and part label: faces whose outward normal points along
# sign * axis (ShapeNet frame: x across, y up, z towards the object's front) within HIDDEN_COS.
HIDDEN_SIDES = {
    "chair": {1: (2, -1), 2: (1, -1)},  # backrest: its rear; seat: its underside
    "airplane": {1: (1, -1), 2: (1, -1), 3: (1, -1)},  # body, wings, tail: undersides
    "car": {1: (2, -1), 2: (2, -1)},
}  # body and cabin: their rear
HIDDEN_COS = 0.5  # cosine of the largest angle between a hidden face's normal and its direction
PATTERNS = ("stripes", "checks", "gradient")
TEXTURE_SIZE = 32  # texels per side of a pattern's image (one period of the pattern)
# complementary style: 8-bit channel value v -> COMPLEMENT_SUM - v, which maps the range of the
# generator's colours, [round(0.12 * 255), 255] = [31, 255] (_colour's clip), onto itself.
COMPLEMENT_SUM = 286


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
    return Surface(
        surface.vertices,
        surface.faces,
        corner_colours=np.repeat(colours[:, None], 3, axis=1),
        labels=surface.labels,
        uv=uv,
        texture_index=texture_index,
        textures=textures,
    )


def model_surface(category, index, seed=0, colours="flat", parts=None):
    """The :class:`Surface` of one procedural model in a colour style (what the demo data render and
    sample). The style's generator is the model's fifth seed child: the first four (shape, views,
    first and second cloud) are the same in every style."""
    parts = model_parts(category, index, seed) if parts is None else parts
    style_ss = model_seed(seed, synset_id(category), index).spawn(5)[4]
    return styled_surface(parts, category, colours, np.random.default_rng(style_ss))


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


def colour_figure(
    path, category="chair", n_models=4, seed=0, styles=COLOUR_STYLES, img_size=96, el_deg=20.0, side_deg=35.0
):
    """A PNG of ``n_models`` models in every colour style, each from the front and from behind
    (three-quarter views, ``side_deg`` off the axis). Returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    el = np.radians(el_deg)
    front = facing_azimuth([np.sin(np.radians(side_deg)), 0, np.cos(np.radians(side_deg))], el)
    back = facing_azimuth([np.sin(np.radians(side_deg)), 0, -np.cos(np.radians(side_deg))], el)
    fig = Figure(figsize=(1.25 * 2 * n_models, 1.35 * len(styles)), dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        len(styles),
        2 * n_models,
        squeeze=False,
        gridspec_kw=dict(wspace=0.02, hspace=0.15, left=0.01, right=0.99, top=0.9, bottom=0.01),
    )
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
