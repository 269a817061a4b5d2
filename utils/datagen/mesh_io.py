"""Reading users' mesh collections: discovery, loading with appearance and part names.

* :func:`find_meshes` walks a folder for ``.obj .glb .gltf .ply .off .stl``
  files and recognises the ShapeNetCore layouts (v1:
  ``<synset>/<model>/model.obj``, v2:
  ``<synset>/<model>/models/model_normalized.obj``), whose synset and model ids
  come from the folder names.
* :func:`load_mesh` reads one file with trimesh into a
  :class:`utils.datagen.mesh_render.Surface` in the ShapeNet frame (y up), with the
  appearance of every face (texture + UVs, per-face or per-vertex colours, the
  material's colour, or grey, in this order) and the part names of every face
  (OBJ ``o`` / ``g`` names, glTF node and mesh names).
* :class:`PartMap` turns part names into labels (a JSON file of name patterns).
"""

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from utils.datagen.mesh_render import BOUND_RADIUS, GREY, Surface

MESH_SUFFIXES = (".obj", ".glb", ".gltf", ".ply", ".off", ".stl")
UP_AXES = ("y", "z")
# --up z: rotate a z-up source into the y-up ShapeNet frame, (x, y, z) -> (x, z, -y)
# (a -90 degree rotation about x; Blender's glTF exporter makes the same change of axes)
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
_SYNSET_RE = re.compile(r"^\d{8}$")
FLOAT32_MAX = float(np.finfo(np.float32).max)


class MeshError(ValueError):
    """A mesh file cannot be used (unreadable, no triangles, unmatched part names, ...)."""


# --------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class MeshSource:
    """One model to render: its file, synset id and model id, and how they were found."""

    path: Path
    synset: str
    model_id: str
    layout: str  # 'shapenet_v1', 'shapenet_v2' or 'files'


def _shapenet_ids(path):
    """(synset, model, layout) when ``path`` sits in a ShapeNetCore v1/v2 layout, else None."""
    p = Path(path).absolute()
    up = [q.name for q in p.parents]
    if p.name == "model_normalized.obj" and len(up) > 2 and up[0] == "models" and _SYNSET_RE.match(up[2]):
        return up[2], up[1], "shapenet_v2"
    if p.name == "model.obj" and len(up) > 1 and _SYNSET_RE.match(up[1]):
        return up[1], up[0], "shapenet_v1"
    return None


def safe_model_id(rel_path):
    """A model id for a file outside the ShapeNet layouts: its path below the source folder,
    without the extension, folders joined by ``__``, characters other than letters, digits,
    ``.``, ``-`` and ``_`` replaced by ``_``."""
    parts = list(Path(rel_path).with_suffix("").parts)
    return "__".join(re.sub(r"[^A-Za-z0-9._-]", "_", p) for p in parts)


def find_meshes(src, synset=None):
    """All models below ``src`` (a folder, searched recursively, or one mesh file).

    Args:
        src: folder or file.
        synset: the synset id of the files outside the ShapeNetCore layouts
            (``--category``); it also restricts ShapeNetCore models to that
            synset. ``None``: only ShapeNetCore layouts are accepted.
    Returns:
        list of :class:`MeshSource`, sorted by (synset, model id).
    Raises:
        MeshError: ``src`` is missing or holds no mesh, files outside the
        ShapeNetCore layouts without a synset, or two files with one id.
    """
    src = Path(src)
    if not src.exists():
        raise MeshError(f"--meshes {src}: no such file or folder")
    files = (
        [src]
        if src.is_file()
        else sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
    )
    if src.is_file() and src.suffix.lower() not in MESH_SUFFIXES:
        raise MeshError(f"--meshes {src}: expected a folder or a mesh file ({' '.join(MESH_SUFFIXES)})")
    out, loose = [], []
    for f in files:
        ids = _shapenet_ids(f)
        if ids is not None:
            if synset is None or ids[0] == synset:
                out.append(MeshSource(f, ids[0], ids[1], ids[2]))
        else:
            loose.append(f)
    if loose:
        if synset is None:
            raise MeshError(
                f"--meshes {src}: {len(loose)} mesh file(s) outside the ShapeNetCore layouts "
                f"(e.g. {loose[0]}); pass --category to name their category"
            )
        root = src.parent if src.is_file() else src
        out += [MeshSource(f, synset, safe_model_id(f.relative_to(root)), "files") for f in loose]
    if not out:
        raise MeshError(
            f"--meshes {src}: no mesh files ({' '.join(MESH_SUFFIXES)})" + (f" of synset {synset}" if synset else "")
        )
    out.sort(key=lambda s: (s.synset, s.model_id))
    seen = {}
    for s in out:
        key = (s.synset, s.model_id)
        if key in seen:
            raise MeshError(f"two meshes get the model id {s.model_id} (synset {s.synset}): {seen[key]} and {s.path}")
        seen[key] = s.path
    return out


# --------------------------------------------------------------------------
# part names of OBJ faces
# --------------------------------------------------------------------------
def obj_face_parts(path):
    """Triangles of an OBJ file with the ``o`` and ``g`` names they were declared under.

    Polygons are split into fans; an ``o`` line ends the current group. Returns ``centroids`` float (T, 3) and
    ``names`` list of T tuples ``(object name, group name)`` ('' when absent).
    """
    verts, cents, names = [], [], []
    obj = grp = ""
    with open(path, errors="replace") as f:
        for line in f:
            head, _, rest = line.strip().partition(" ")
            if head == "v":
                verts.append([float(x) for x in rest.split()[:3]])
            elif head == "o":
                obj, grp = rest.strip(), ""  # a new object starts outside any group
            elif head == "g":
                grp = rest.strip()
            elif head == "f":
                idx = []
                for tok in rest.split():
                    i = int(tok.split("/")[0])
                    idx.append(i - 1 if i > 0 else len(verts) + i)
                for k in range(1, len(idx) - 1):
                    cents.append((idx[0], idx[k], idx[k + 1]))
                    names.append((obj, grp))
    if not cents:
        return np.zeros((0, 3)), []
    v = np.asarray(verts, np.float64)
    return v[np.asarray(cents)].mean(axis=1), names


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------
@dataclass
class LoadedMesh:
    """A mesh file's surface (ShapeNet frame, not yet normalised) and its face part names."""

    surface: Surface
    part_names: list  # distinct name tuples
    face_part: np.ndarray  # int (F,) index into part_names
    notes: list = field(default_factory=list)  # non-fatal problems (a texture that could not be read, ...)


def _rgb(colour):
    """RGB(A) colours, uint8 0..255 or float 0..1, (..., 3|4) -> float (..., 3) in [0, 1]."""
    arr = np.asarray(colour)
    c = arr[..., :3].astype(np.float64)
    return c / 255.0 if arr.dtype == np.uint8 or (c.size and c.max() > 1.0) else c


def _image_array(image):
    """A PIL image (or array) -> uint8 (H, W, 3)."""
    if hasattr(image, "convert"):
        image = image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.dtype != np.uint8:
        arr = np.clip(np.asarray(arr, np.float64) * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[:, :, :3])


def _appearance(geom, textures, texture_ids, grey_materials=()):
    """Per-face appearance arrays of one trimesh geometry (see :class:`Surface`).

    ``grey_materials``: names of OBJ materials that set no colour (no ``Kd``): they get the
    documented :data:`GREY`, not trimesh's default (0.4)."""
    n = len(geom.faces)
    corner = np.full((n, 3, 3), GREY)
    tex_index = np.full(n, -1, np.int64)
    uv = np.zeros((n, 3, 2))
    tint = np.ones((n, 3))
    vis = geom.visual
    kind = getattr(vis, "kind", None)
    if isinstance(vis, trimesh.visual.texture.TextureVisuals):
        mat = vis.material
        image = getattr(mat, "baseColorTexture", None)
        if image is None:
            image = getattr(mat, "image", None)
        if isinstance(mat, trimesh.visual.material.PBRMaterial):
            factor = mat.baseColorFactor
            colour = np.ones(3) if factor is None else _rgb(factor)  # glTF's default factor is white
        elif mat is None or getattr(mat, "name", None) in grey_materials:
            colour = np.full(3, GREY)
        else:
            colour = _rgb(mat.main_color)
        have_uv = vis.uv is not None and len(vis.uv) == len(geom.vertices)
        if image is not None and have_uv:
            key = id(image)
            if key not in texture_ids:
                texture_ids[key] = len(textures)
                textures.append(_image_array(image))
            tex_index[:] = texture_ids[key]
            uv = np.asarray(vis.uv, np.float64)[geom.faces]
            if isinstance(mat, trimesh.visual.material.PBRMaterial):
                tint[:] = colour  # glTF: base colour = texture x factor; OBJ: map_Kd alone
        else:
            corner[:] = colour
    elif kind == "vertex":
        corner = _rgb(vis.vertex_colors[:, :3])[geom.faces]
    elif kind == "face":
        corner[:] = _rgb(vis.face_colors[:, :3])[:, None]
    return corner, tex_index, uv, tint


class MeshFiles(trimesh.resolvers.Resolver):
    """The files a mesh file names (OBJ material libraries and textures, glTF buffers and images),
    read for trimesh (its ``resolver``) and for this module, from the mesh's folder only.

    A name that leads outside ``root`` (``../..``, an absolute path, a link out) is refused and
    recorded in ``refused``, unless ``allow_outside``; one that cannot be read is recorded in
    ``missing``. Either raises FileNotFoundError, which trimesh takes as a missing file (the
    faces then use their material colour).

    Args:
        folder: the mesh file's folder (names are relative to it).
        root: the folder names must stay in: the mesh's folder, or the model's folder of the
            ShapeNetCore layouts (v2 textures sit in ``../images``).
    """

    def __init__(self, folder, root, allow_outside=False, records=None, file_name=None):
        self.parent = Path(folder).absolute()
        self.root = Path(root).resolve()
        self.allow_outside = bool(allow_outside)
        self.refused, self.missing = records if records is not None else ([], [])
        self.file_name = file_name

    def path(self, name):
        """The file ``name`` stands for; FileNotFoundError (recorded in ``refused``) outside the root."""
        name = str(name).strip()
        path = (self.parent / name).resolve()
        if not self.allow_outside and not path.is_relative_to(self.root):
            if name not in self.refused:
                self.refused.append(name)
            raise FileNotFoundError(f"{name}: leads outside the mesh's folder {self.root}; not read")
        return path

    def get(self, name):
        path = self.path(name)
        try:
            return path.read_bytes()
        except OSError:
            if str(name).strip() not in self.missing:
                self.missing.append(str(name).strip())
            raise FileNotFoundError(name) from None

    def text(self, name):
        """:meth:`get` as text (undecodable bytes replaced); None when refused or missing."""
        try:
            return self.get(name).decode("utf-8", errors="replace")
        except FileNotFoundError:
            return None

    def namespaced(self, namespace):
        return MeshFiles(self.parent / namespace, self.root, self.allow_outside, (self.refused, self.missing))

    def keys(self):
        for folder, _, names in os.walk(self.parent):
            for name in names:
                yield os.path.relpath(os.path.join(folder, name), self.parent)

    def write(self, name, data):
        raise NotImplementedError("mesh files are only read here")


def mesh_root(path):
    """The folder whose files a mesh may name: the model's folder in the ShapeNetCore layouts (v2's
    ``models/model_normalized.mtl`` names ``../images/...``), else the mesh file's folder."""
    path = Path(path).absolute()
    ids = _shapenet_ids(path)
    return path.parent.parent if ids is not None and ids[2] == "shapenet_v2" else path.parent


def _mtllibs(path, files):
    """The material library names of an OBJ (its ``mtllib`` lines; a line may name several)."""
    text = files.text(Path(path).name)
    if text is None:
        return []
    return [name for line in text.splitlines() if line.startswith("mtllib ") for name in line.split()[1:]]


def _obj_materials_without_colour(path, files):
    """Names of the materials of an OBJ's material libraries that set no diffuse colour (``Kd``)."""
    names = set()
    for lib in _mtllibs(path, files):
        current, has_kd = None, False
        text = files.text(lib)
        if text is None:
            continue
        lines = text.splitlines()
        for line in lines + ["newmtl"]:
            parts = line.strip().split()
            if parts and parts[0] == "newmtl":
                if current is not None and not has_kd:
                    names.add(current)
                current, has_kd = (parts[1] if len(parts) > 1 else None), False
            elif parts and parts[0] == "Kd":
                has_kd = True
    return names


def _obj_textures(path, files):
    """Texture files named by an OBJ's material libraries (``map_Kd``, the colour), each looked up
    through ``files`` (a missing or refused one is recorded there)."""
    for lib in _mtllibs(path, files):
        lib_files = files.namespaced(os.path.dirname(lib))
        text = files.text(lib)
        for line in (text or "").splitlines():
            parts = line.strip().split()
            if parts and parts[0] == "map_Kd" and len(parts) > 1:
                try:
                    lib_files.path(parts[-1]).stat()
                except OSError:
                    if parts[-1] not in files.missing + files.refused:
                        files.missing.append(parts[-1])


def _gltf_json(path, files):
    """The JSON of a ``.gltf`` file or of a ``.glb`` file's first chunk, or None."""
    try:
        data = Path(path).read_bytes()
        if data[:4] == b"glTF":
            length, kind = int.from_bytes(data[12:16], "little"), data[16:20]
            return json.loads(data[20 : 20 + length]) if kind == b"JSON" else None
        return json.loads(data)
    except (OSError, ValueError):
        return None


def _gltf_files(path, files):
    """The external files (``uri``, not ``data:``) a glTF's images and buffers name, each looked up
    through ``files`` (a missing or refused one is recorded there)."""
    from urllib.parse import unquote

    doc = _gltf_json(path, files)
    if not isinstance(doc, dict):
        return
    for kind in ("images", "buffers"):
        for item in doc.get(kind) or []:
            uri = item.get("uri") if isinstance(item, dict) else None
            if not isinstance(uri, str) or uri.startswith("data:"):
                continue
            try:
                files.path(unquote(uri)).stat()
            except OSError:
                if unquote(uri) not in files.missing + files.refused:
                    files.missing.append(unquote(uri))


def load_mesh(path, up="y", allow_outside=False):
    """Read a mesh file into a :class:`LoadedMesh` (ShapeNet frame, original scale).

    Args:
        path: ``.obj`` (with its ``.mtl`` and textures), ``.glb``/``.gltf``,
            ``.ply``, ``.off``, ``.stl``.
        up: 'y' (the file is y up, as ShapeNet and glTF) or 'z' (z up: rotated
            by :data:`Z_UP_TO_Y_UP`).
        allow_outside: read material, texture and buffer files that the mesh names outside its
            folder (:func:`mesh_root`); by default they are refused, named in the notes.
    The notes (:attr:`LoadedMesh.notes`) name every material, texture or buffer file that is
    missing, in every format, and every one refused.
    Raises:
        MeshError: the file cannot be read or holds no triangles.
    """
    if up not in UP_AXES:
        raise ValueError(f"up must be one of {UP_AXES}, got {up!r}")
    path = Path(path)
    files = MeshFiles(path.absolute().parent, mesh_root(path), allow_outside, file_name=path.name)
    try:
        scene = trimesh.load(str(path), force="scene", process=False, resolver=files)
    except Exception as err:  # trimesh raises many kinds of errors on bad files
        raise MeshError(f"{path}: cannot read as a mesh ({type(err).__name__}: {err})") from None
    is_obj = path.suffix.lower() == ".obj"
    verts, faces, corners, tex_idx, uvs, tints, names = [], [], [], [], [], [], []
    textures, texture_ids = [], {}
    grey_materials = _obj_materials_without_colour(path, files) if is_obj else set()
    offset = 0
    for node in scene.graph.nodes_geometry:
        transform, geom_name = scene.graph[node]
        geom = scene.geometry.get(geom_name)
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue
        v = trimesh.transform_points(np.asarray(geom.vertices, np.float64), transform)
        corner, ti, uv, tint = _appearance(geom, textures, texture_ids, grey_materials)
        verts.append(v)
        faces.append(np.asarray(geom.faces, np.int64) + offset)
        offset += len(v)
        corners.append(corner)
        tex_idx.append(ti)
        uvs.append(uv)
        tints.append(tint)
        names += [(str(node), str(geom_name))] * len(geom.faces)
    if not faces:
        raise MeshError(f"{path}: no triangles found (an empty file, a point cloud or only lines)")
    vertices = np.concatenate(verts)
    if not np.all(np.isfinite(vertices)):
        raise MeshError(f"{path}: vertex coordinates contain NaN or inf")
    faces = np.concatenate(faces)
    if up == "z":
        vertices = vertices @ Z_UP_TO_Y_UP.T
    surface = Surface(
        vertices,
        faces,
        corner_colours=np.concatenate(corners),
        uv=np.concatenate(uvs),
        texture_index=np.concatenate(tex_idx),
        textures=textures,
        tint=np.concatenate(tints),
    )
    notes = []
    if is_obj:
        cents, obj_names = obj_face_parts(path)
        if len(obj_names):
            centroids = surface.triangles.mean(axis=1) @ (Z_UP_TO_Y_UP if up == "z" else np.eye(3))
            _, nearest = cKDTree(cents).query(centroids)
            names = [obj_names[i] for i in nearest]
        _obj_textures(path, files)
    elif path.suffix.lower() in (".gltf", ".glb"):
        _gltf_files(path, files)
    if files.missing:
        notes.append(
            f"texture/material file(s) not found: {', '.join(sorted(set(files.missing)))} "
            f"(those faces use the material colour)"
        )
    if files.refused:
        notes.append(
            f"file(s) outside the mesh's folder {files.root} not read: {', '.join(sorted(set(files.refused)))} "
            "(those faces use the material colour; make_dataset.py --allow_outside_files reads them)"
        )
    distinct = sorted(set(names))
    lookup = {n: i for i, n in enumerate(distinct)}
    return LoadedMesh(surface, distinct, np.array([lookup[n] for n in names], np.int64), notes)


def normalise(surface, mode="diagonal"):
    """Centre the bounding box of the used vertices at the origin and scale.

    Used vertices: those of faces with a non-zero area; unreferenced vertices and those only
    reached by degenerate faces (a stray vertex far away) do not shrink the object.
    ``mode='diagonal'``: bounding-box diagonal of length 1, as ShapeNetCore's
    normalised models (every point then lies within 0.5 of the centre and the
    object always fits the 64x64 views at camera distance 2); ``'sphere'``:
    every point within :data:`BOUND_RADIUS` (0.46) of the centre (the demo's convention).
    Returns ``(surface, centre, scale)``. Raises MeshError when the coordinates overflow
    float64 (named as such) or every face is degenerate.
    """
    if mode not in ("diagonal", "sphere"):
        raise ValueError(f"normalisation must be 'diagonal' or 'sphere', got {mode!r}")
    tri = surface.vertices[surface.faces]
    with np.errstate(over="ignore", invalid="ignore"):
        area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        extent = np.abs(tri).max()
    if not np.all(np.isfinite(area2)):
        raise MeshError(
            f"numeric overflow: vertex coordinates up to {extent:.3g} overflow float64 in the face "
            f"areas; expected coordinates below about 1e150 (rescale the mesh)"
        )
    if not np.any(area2 > 0):
        raise MeshError("the mesh is degenerate (every face has zero area)")
    used = surface.vertices[np.unique(surface.faces[area2 > 0])]
    lo, hi = used.min(0), used.max(0)
    centre = (lo + hi) / 2
    if mode == "diagonal":
        size = np.linalg.norm(hi - lo)
    else:
        size = np.linalg.norm(used - centre, axis=1).max() / BOUND_RADIUS
    if not size > 0:
        raise MeshError("the mesh is degenerate (all its vertices coincide)")
    scale = 1.0 / size
    with np.errstate(over="ignore", invalid="ignore"):
        reach = np.abs((surface.vertices[np.unique(surface.faces)] - centre) * scale).max()
    if not reach < FLOAT32_MAX:  # a vertex of a zero-area face, far away: the ray caster works in float32
        raise MeshError(
            f"numeric overflow: a vertex at {extent:.3g} lies beyond the float32 range of the ray "
            f"caster after normalisation; expected coordinates below about 1e30 (remove stray vertices)"
        )
    return surface.transformed(scale=scale, offset=-centre * scale), centre, scale


# --------------------------------------------------------------------------
# part maps
# --------------------------------------------------------------------------
class PartMap:
    """Part names -> labels, from a JSON file.

    Two forms::

        {"back*": "back", "seat": "seat", "leg*": "leg"}
        {"labels": ["back", "seat", "leg", "arm"], "parts": {"back*": "back", "chair_leg_*": 3}}

    Keys are patterns (``fnmatch``: ``*``, ``?``, ``[...]``), matched without
    regard to case against every name of a face (OBJ: the ``o`` object and the
    ``g`` group it was declared under; glTF and other scenes: the node and the
    mesh name); the first pattern in file order that matches wins. Values are
    label names or 1-based label numbers. Label order: ``labels`` when given,
    else the names in order of first appearance (label 1 first). A face that
    no pattern matches is an error (add ``"*": "..."`` to catch the rest).
    """

    def __init__(self, patterns, names, source="part map"):
        self.patterns = list(patterns)  # [(pattern, label 1..K)]
        self.names = list(names)
        self.source = source

    @classmethod
    def from_json(cls, path):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as err:
            raise MeshError(f"--part_map {path}: cannot read as JSON ({err})") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data, source="part map"):
        bad = (
            f"{source}: expected a JSON object {{pattern: label name or number}} or "
            f'{{"labels": [names], "parts": {{pattern: label}}}}'
        )
        if not isinstance(data, dict):
            raise MeshError(bad)
        names = None
        if "parts" in data:
            names, parts = data.get("labels"), data["parts"]
            if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
                raise MeshError(f"{source}: 'labels' must be a list of part names")
        else:
            parts = data
        if not isinstance(parts, dict) or not parts:
            raise MeshError(bad)
        names = list(names) if names else []
        explicit = bool(names)
        patterns = []
        for pat, lab in parts.items():
            if isinstance(lab, bool) or not isinstance(lab, (str, int)):
                raise MeshError(f"{source}: the label of {pat!r} must be a part name or a number >= 1")
            if isinstance(lab, int):
                if lab < 1 or lab > 255:
                    raise MeshError(f"{source}: label numbers must lie in 1..255, got {lab} for {pat!r}")
                num = lab
            else:
                if lab not in names:
                    if explicit:
                        raise MeshError(f"{source}: {pat!r} maps to {lab!r}, which 'labels' does not list")
                    names.append(lab)
                num = names.index(lab) + 1
            patterns.append((pat, num))
        top = max(n for _, n in patterns)
        names += [f"part{k}" for k in range(len(names) + 1, top + 1)]
        return cls(patterns, names, source)

    def label(self, names):
        """Label (1..K) of a face with these names, or None when no pattern matches."""
        lowered = [n.lower() for n in names if n]
        for pat, num in self.patterns:
            p = pat.lower()
            if any(fnmatch.fnmatchcase(n, p) for n in lowered):
                return num
        return None

    def face_labels(self, loaded, path=""):
        """int (F,) labels of a :class:`LoadedMesh`'s faces; MeshError naming unmatched parts."""
        per_part = [self.label(n) for n in loaded.part_names]
        unmatched = [
            " / ".join(x for x in n if x) or "(unnamed)" for n, lab in zip(loaded.part_names, per_part) if lab is None
        ]
        if unmatched:
            raise MeshError(
                f"{path}: part(s) {', '.join(repr(u) for u in unmatched[:8])}"
                f"{' ...' if len(unmatched) > 8 else ''} match no pattern of {self.source}"
            )
        return np.asarray(per_part, np.int64)[loaded.face_part]
