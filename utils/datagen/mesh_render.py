"""The ray-casting renderer shared by the demo generator and ``data/make_dataset.py``.

A :class:`Surface` is a triangle mesh in the **ShapeNet frame** (y up) whose
every face knows its appearance and its part label:

* a texture (an RGB image) with UV coordinates at the face's three corners,
  times a tint (glTF's base colour factor; white otherwise), or
* a colour at each of its three corners (per-vertex colours are interpolated
  across the face, per-face colours are the same at all three corners).

:meth:`Surface.colour_at` evaluates that appearance at any point of a face
given by barycentric coordinates; the renderer calls it at the ray hits and the
cloud sampler at the sampled surface points, so image and cloud colours come
from one function and agree.

:class:`MeshRenderer` casts rays with trimesh (Embree through ``embreex`` when
installed, trimesh's own caster otherwise), first hit per ray, with the camera
of :mod:`utils.render.camera` (the surface is turned into the renderer frame with
:data:`utils.data.shapenet.ALIGN`, as the loaders turn the clouds). Each pixel casts
``supersample**2`` rays over its square; it is foreground when any of them hits
(the "any coverage" masks that the original's threshold at 254 makes of
anti-aliased renders) and takes colour, part label and depth from the hitting
ray nearest its centre, without blending.
"""

from collections import namedtuple

import numpy as np
import trimesh

from utils.data.layout import DEPTH_FAR, DEPTH_NEAR  # depth_k.png's codes span this range
from utils.data.shapenet import ALIGN
from utils.datagen.sampling import sample_faces
from utils.render import camera

SUPERSAMPLE = 3  # rays per pixel side for the coverage masks
GREY = 0.6  # colour of a surface with no texture, colours or material
# Demo models (and make_dataset.py --normalise sphere) fit in a sphere of this radius: at camera
# distance 2 they fill most of a 64x64 view without touching its border.
BOUND_RADIUS = 0.46

View = namedtuple("View", "rgb label depth hit")
View.__doc__ = """One rendered view: ``rgb`` float (H,W,3) in [0,1] (0 on the background), ``label``
uint8 (H,W) (0 on the background), ``depth`` float (H,W) world units (0 on the background), ``hit``
bool (H,W) the coverage mask."""


# --------------------------------------------------------------------------
# textures
# --------------------------------------------------------------------------
def sample_texture(image, uv):
    """Bilinear texture lookup; UVs outside [0, 1] repeat the texture.

    Args:
        image: (H, W, 3) texture, row 0 at the top (as images are stored):
            uint8 0..255 or float in [0, 1].
        uv: float (N, 2), u across the image (0 = left edge), v up the image
            (0 = bottom edge, 1 = top edge), the OBJ / OpenGL convention that
            trimesh uses for every format.
    Returns:
        float (N, 3) in the range of [0, 1].

    A coordinate outside [0, 1] is wrapped into it (its fractional part); the
    bilinear weights then only blend texels of the image, clamped at its
    borders, so the edges of a texture never bleed into the opposite edge.
    """
    h, w = image.shape[:2]
    uv = np.asarray(uv, np.float64)
    uv = np.where((uv >= 0) & (uv <= 1), uv, uv - np.floor(uv))
    x = uv[:, 0] * w - 0.5  # texel centres at integer x, y
    y = (1.0 - uv[:, 1]) * h - 0.5  # v grows upwards, rows downwards
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x1 = np.clip(x0 + 1, 0, w - 1).astype(np.int64)
    y1 = np.clip(y0 + 1, 0, h - 1).astype(np.int64)
    x0 = np.clip(x0, 0, w - 1).astype(np.int64)
    y0 = np.clip(y0, 0, h - 1).astype(np.int64)
    scale = 1.0 / 255.0 if image.dtype == np.uint8 else 1.0

    def texel(r, c):
        return image[r, c].astype(np.float64) * scale

    top = texel(y0, x0) * (1 - fx) + texel(y0, x1) * fx
    bottom = texel(y1, x0) * (1 - fx) + texel(y1, x1) * fx
    return top * (1 - fy) + bottom * fy


# --------------------------------------------------------------------------
# surfaces
# --------------------------------------------------------------------------
class Surface:
    """A triangle mesh with per-face appearance and part labels (ShapeNet frame).

    Args:
        vertices: float (V, 3).
        faces: int (F, 3) vertex indices.
        corner_colours: float (F, 3, 3) RGB in [0, 1] at each face corner, used
            where a face has no texture (default: :data:`GREY`).
        labels: int (F,) part label per face, 0..255 (default 1 everywhere).
        uv: float (F, 3, 2) texture coordinates at each face corner.
        texture_index: int (F,) index into ``textures``, -1 for an untextured face.
        textures: list of (H, W, 3) RGB images, uint8 or float in [0, 1].
        tint: float (F, 3) multiplies the texture colour (default 1).
    """

    def __init__(
        self, vertices, faces, corner_colours=None, labels=None, uv=None, texture_index=None, textures=(), tint=None
    ):
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64).reshape(-1, 3)
        n = len(self.faces)
        if n == 0:
            raise ValueError("a surface needs at least one triangle")
        if self.faces.min() < 0 or self.faces.max() >= len(self.vertices):
            raise ValueError("face indices out of range of the vertices")
        self.corner_colours = (
            np.full((n, 3, 3), GREY)
            if corner_colours is None
            else np.asarray(corner_colours, np.float64).reshape(n, 3, 3)
        )
        self.labels = np.ones(n, np.int64) if labels is None else np.asarray(labels, np.int64).reshape(n)
        if self.labels.min() < 0 or self.labels.max() > 255:
            raise ValueError("part labels must lie in 0..255")
        self.texture_index = (
            np.full(n, -1, np.int64) if texture_index is None else np.asarray(texture_index, np.int64).reshape(n)
        )
        self.uv = np.zeros((n, 3, 2)) if uv is None else np.asarray(uv, np.float64).reshape(n, 3, 2)
        self.textures = [t if np.asarray(t).dtype == np.uint8 else np.asarray(t, np.float32) for t in textures]
        for t in self.textures:
            if t.ndim != 3 or t.shape[2] != 3:
                raise ValueError(f"textures must be (H, W, 3) RGB arrays, got shape {t.shape}")
        self.tint = np.ones((n, 3)) if tint is None else np.asarray(tint, np.float64).reshape(n, 3)
        if self.texture_index.max() >= len(self.textures):
            raise ValueError("texture_index refers to a missing texture")
        # faces with one colour: their colour is returned exactly, never interpolated
        self._flat = np.all(self.corner_colours == self.corner_colours[:, :1], axis=(1, 2))

    @property
    def needs_bary(self):
        """False when every face has one colour and no texture (the hit position inside a face is moot)."""
        return bool((self.texture_index >= 0).any() or not self._flat.all())

    @classmethod
    def from_parts(cls, parts):
        """One surface from ``[(trimesh.Trimesh, label, rgb colour), ...]``, one colour per part."""
        meshes = [m for m, _, _ in parts]
        offsets = np.cumsum([0] + [len(m.vertices) for m in meshes])
        faces = np.concatenate([m.faces + o for m, o in zip(meshes, offsets)])
        n_faces = [len(m.faces) for m in meshes]
        colours = np.repeat(np.array([c for _, _, c in parts], np.float64), n_faces, axis=0)
        return cls(
            np.concatenate([m.vertices for m in meshes]),
            faces,
            corner_colours=np.repeat(colours[:, None], 3, axis=1),
            labels=np.repeat([lab for _, lab, _ in parts], n_faces),
        )

    @property
    def triangles(self):
        """float (F, 3, 3): corner coordinates of every face."""
        return self.vertices[self.faces]

    def face_areas(self):
        """float (F,): triangle areas."""
        t = self.triangles
        return 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)

    def transformed(self, matrix=None, scale=1.0, offset=(0.0, 0.0, 0.0)):
        """A copy with vertices ``(v @ matrix.T) * scale + offset`` (matrix: a proper rotation)."""
        v = self.vertices if matrix is None else self.vertices @ np.asarray(matrix, np.float64).T
        out = self._copy()
        out.vertices = v * scale + np.asarray(offset, np.float64)
        return out

    def with_labels(self, labels):
        out = self._copy()
        out.labels = np.asarray(labels, np.int64).reshape(len(self.faces))
        return out

    def _copy(self):
        out = object.__new__(Surface)
        out.__dict__.update(self.__dict__)
        return out

    def colour_at(self, face, bary):
        """Appearance at points of the surface.

        Args:
            face: int (N,) face index of each point.
            bary: float (N, 3) barycentric coordinates in that face.
        Returns:
            float (N, 3) RGB in [0, 1]: texture lookup at the interpolated UV
            (times the tint), else the interpolated corner colours.
        """
        face = np.asarray(face, np.int64)
        bary = np.asarray(bary, np.float64)
        out = np.empty((len(face), 3))
        tex = self.texture_index[face]
        plain = tex < 0
        f, b = face[plain], bary[plain]
        corners = self.corner_colours[f]
        flat = self._flat[f]
        col = corners[:, 0].copy()
        col[~flat] = np.einsum("ij,ijk->ik", b[~flat], corners[~flat])
        out[plain] = col
        for t in np.unique(tex[~plain]):
            sel = tex == t
            uv = np.einsum("ij,ijk->ik", bary[sel], self.uv[face[sel]])
            out[sel] = sample_texture(self.textures[t], uv) * self.tint[face[sel]]
        return np.clip(out, 0.0, 1.0)

    def sample(self, n, rng):
        """``n`` area-weighted random surface points: ``xyz (n, 3)``, ``face (n,)``, ``bary (n, 3)``."""
        areas = self.face_areas()
        if not areas.sum() > 0:
            raise ValueError("the surface has zero area")
        return sample_faces(self.triangles, areas / areas.sum(), n, rng)


def sphere_directions(n):
    """``n`` unit vectors spread evenly over the sphere (a Fibonacci lattice), float (n, 3)."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def encode_depth(depth, hit):
    """``depth_{k}.png`` values: depth (world units) -> 0..253 over [DEPTH_NEAR, DEPTH_FAR], 255 off the mask.

    Args: depth float (H, W), hit bool (H, W). Returns uint8 (H, W); the
    loaders read ``value < 254`` as the mask.
    """
    code = np.clip(np.round((depth - DEPTH_NEAR) / (DEPTH_FAR - DEPTH_NEAR) * 253), 0, 253)
    return np.where(hit, code, 255).astype(np.uint8)


def _align4():
    m = np.eye(4)
    m[:3, :3] = ALIGN
    return m


# --------------------------------------------------------------------------
# the renderer
# --------------------------------------------------------------------------
class MeshRenderer:
    """First-hit ray casting of a :class:`Surface` with the camera of :mod:`utils.render.camera`."""

    def __init__(self, surface):
        self.surface = surface
        # the renderer (world) frame of utils.render.camera: the ShapeNet frame rotated by ALIGN
        self.mesh = trimesh.Trimesh(surface.vertices, surface.faces, process=False).apply_transform(_align4())
        self.normals = self.mesh.face_normals
        self.rays = self.mesh.ray  # embree when embreex is installed, trimesh's own otherwise

    def render(self, az, el, img_h, img_w, shading=False, supersample=SUPERSAMPLE):
        """Render one view.

        Args:
            az, el: floats, radians (the angles of ``view.txt`` after conversion).
            img_h, img_w: image size in pixels.
            shading: multiply colours by a Lambert term (a headlight plus a
                light from above); default flat colours, equal to the surface's.
            supersample: rays per pixel side, on a regular grid over the pixel
                square, its edges included (1 = one ray through the centre).
        Returns:
            :class:`View`.
        """
        s = int(supersample)
        offs = np.linspace(-0.5, 0.5, s) if s > 1 else np.zeros(1)  # sub-pixel offsets, edges included
        sub = np.array([(a, b) for a in offs for b in offs]).reshape(-1, 2)
        sub = sub[np.argsort(np.hypot(sub[:, 0], sub[:, 1]), kind="stable")]  # centre first
        origin, centre_dirs = camera.pixel_rays_np(az, el, img_h, img_w)
        f_r, f_c, _, _ = camera.intrinsics(img_h, img_w)
        # shift each pixel ray by a sub-pixel offset: in camera space the ray
        # through (row, col) is ((row - c_r) / f_r, (col - c_c) / f_c, -1)
        rot = camera.rotation_np(az, el)
        n_pix = img_h * img_w
        best = np.full(n_pix, -1)
        best_tri = np.zeros(n_pix, np.int64)
        best_loc = np.zeros((n_pix, 3))
        best_dir = np.zeros((n_pix, 3))
        for k, (dr, dc) in enumerate(sub):
            shift = np.array([dr / f_r, dc / f_c, 0.0]) @ rot  # camera -> world direction
            dirs = centre_dirs / np.abs(centre_dirs @ rot[2])[:, None] + shift
            dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
            loc, ray, tri = self.rays.intersects_location(origin, dirs, multiple_hits=False)
            new = best[ray] < 0
            ray, tri, loc = ray[new], tri[new], loc[new]
            best[ray], best_tri[ray], best_loc[ray], best_dir[ray] = k, tri, loc, dirs[ray]
        hit = best >= 0
        tri, loc = best_tri[hit], best_loc[hit]
        rgb = np.zeros((n_pix, 3))
        label = np.zeros(n_pix, np.uint8)
        depth = np.zeros(n_pix)
        if self.surface.needs_bary and len(tri):
            bary = trimesh.triangles.points_to_barycentric(self.mesh.triangles[tri], loc)
            bary = np.nan_to_num(bary, nan=1.0 / 3.0)  # a degenerate (zero-area) face: its centre
        else:  # flat colours only: the hit's position inside its face does not matter
            bary = np.full((len(tri), 3), 1.0 / 3.0)
        colour = self.surface.colour_at(tri, bary)
        if shading:
            light = best_dir[hit] * 0.6 + np.array([-0.6, 0.3, 0.2])  # headlight plus a light from above
            light /= np.linalg.norm(light, axis=1, keepdims=True)
            lambert = np.abs(np.einsum("ij,ij->i", self.normals[tri], light))
            colour = colour * (0.35 + 0.65 * lambert)[:, None]
        rgb[hit] = colour
        label[hit] = self.surface.labels[tri]
        depth[hit] = -camera.world2cam_np(loc, az, el)[:, 2]
        return View(
            rgb.reshape(img_h, img_w, 3),
            label.reshape(img_h, img_w),
            depth.reshape(img_h, img_w),
            hit.reshape(img_h, img_w),
        )

    def seen_in_views(self, points, views_deg, tol=1e-3):
        """Which surface points some camera sees: no part of the surface lies between the camera
        of a view and the point (the first hit along the ray from the camera centre to the point is
        not nearer than the point, ``tol`` world units allowed).

        Args:
            points: float (N, 3), ShapeNet frame (as the surface), e.g. a ground-truth cloud.
            views_deg: float (V, 2), azimuth and elevation in degrees (view.txt).
        Returns:
            int (N,): in how many of the V views each point is seen.
        """
        pts = np.asarray(points, np.float64) @ ALIGN.T  # into the renderer frame, like the mesh
        count = np.zeros(len(pts), np.int64)
        for az, el in np.radians(np.asarray(views_deg, np.float64)):
            centre = camera.cam2world_np(np.zeros((1, 3)), az, el)[0]
            dirs = pts - centre
            dist = np.linalg.norm(dirs, axis=1)
            dirs /= dist[:, None]
            loc, ray, _ = self.rays.intersects_location(np.repeat(centre[None], len(pts), 0), dirs, multiple_hits=False)
            first = np.full(len(pts), np.inf)
            first[ray] = np.linalg.norm(loc - centre, axis=1)
            count += first >= dist - tol
        return count

    def visible_from_outside(self, points, n_directions=64, offset=2e-4):
        """Which surface points can be seen from outside the object.

        A point is visible when at least one ray leaving it along one of
        ``n_directions`` directions spread over the sphere escapes without
        hitting the surface (starting ``offset`` world units along the ray, so
        it does not hit its own face). Points of interior geometry (a car's
        seats behind opaque windows, parts buried in other parts) are not.

        Args:
            points: float (N, 3), ShapeNet frame (as the surface).
        Returns:
            bool (N,).
        """
        pts = np.asarray(points, np.float64) @ ALIGN.T  # into the renderer frame, like the mesh
        seen = np.zeros(len(pts), bool)
        for d in sphere_directions(n_directions):
            todo = np.flatnonzero(~seen)
            if not len(todo):
                break
            dirs = np.repeat(d[None], len(todo), axis=0)
            blocked = self.rays.intersects_any(pts[todo] + offset * d, dirs)
            seen[todo[~blocked]] = True
        return seen
