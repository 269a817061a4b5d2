"""Model sources: where the one render -> sample -> write path (:mod:`utils.datagen.build`) gets a
model's surface from.

A source is one model of a data set. It knows its ids (``synset``, ``model_id``), its random
streams (:meth:`streams`: at least ``view``, ``sample`` and ``resample``, each a
``numpy.random.SeedSequence`` that depends only on the data set's seed and the model's ids),
how to load its surface (:meth:`load`: a :class:`Loaded`, in the ShapeNet frame, normalised)
and how to sample that surface densely (:meth:`dense_sample`):

* :class:`ProceduralSource`: a procedural demo shape (:mod:`utils.datagen.shapes`) in a colour
  style (:mod:`utils.datagen.styles`); the dense sample drops points buried inside another
  primitive; the faces on a part's hidden side are recorded (the side record of the clouds).
* :class:`MeshFileSource`: a mesh file found by :func:`utils.datagen.mesh_io.find_meshes`,
  loaded with its appearance and part names, turned upright, normalised, labelled through a
  part map or the ShapeNet part annotations; the dense sample drops points that cannot be seen
  from outside the object (interior geometry) unless asked to keep them.
"""

import hashlib
from dataclasses import dataclass, field

import numpy as np

from utils.data import N_GT_PTS
from utils.data.shapenet import synset_id
from utils.datagen import part_transfer
from utils.datagen.mesh_io import MeshError, load_mesh, normalise
from utils.datagen.mesh_render import MeshRenderer, Surface
from utils.datagen.shapes import model_id, model_parts, model_seed, sample_parts
from utils.datagen.styles import COLOUR_STYLES, hidden_faces, model_surface


@dataclass
class Loaded:
    """A source's model, ready to render and sample.

    Attributes:
        surface: :class:`utils.datagen.mesh_render.Surface`, ShapeNet frame, normalised.
        labelled: whether the faces carry part labels (then the partseg tree is written).
        hidden: bool (F,) per face of ``surface``, True on a part's hidden side, or None (no
            side record for this source).
        report: JSON-able notes on the model (make_dataset.py's records).
        parts: the procedural source's [(trimesh.Trimesh, label, colour)] (its dense sampler's input).
    """

    surface: Surface
    labelled: bool
    hidden: np.ndarray = None
    report: dict = field(default_factory=dict)
    parts: list = None


class ProceduralSource:
    """Model ``index`` of a demo category (chair, airplane, car) in a colour style.

    Streams: the children of :func:`utils.datagen.shapes.model_seed` (seed, synset, index):
    shape, view, sample, resample (and the style's, :func:`utils.datagen.styles.model_surface`).
    """

    def __init__(self, category, index, seed=0, colours="flat"):
        if colours not in COLOUR_STYLES:
            raise ValueError(f"unknown colour style {colours!r}; choose from {', '.join(COLOUR_STYLES)}")
        self.category, self.index, self.seed, self.colours = category, int(index), int(seed), colours
        self.synset, self.model_id = synset_id(category), model_id(category, index)

    def streams(self):
        _, view, sample, resample = model_seed(self.seed, self.synset, self.index).spawn(4)
        return dict(view=view, sample=sample, resample=resample)

    def load(self, streams):
        parts = model_parts(self.category, self.index, self.seed)
        surface = model_surface(self.category, self.index, self.seed, self.colours, parts)
        return Loaded(surface, labelled=True, hidden=hidden_faces(parts, self.category), parts=parts)

    def dense_sample(self, loaded, renderer, n, rng):
        """Area-weighted samples of the parts minus those buried in another part: xyz, face, bary."""
        xyz, _, face, bary = sample_parts(loaded.parts, n, rng)
        return xyz, face, bary


def mesh_seed(seed, synset, model):
    """SeedSequence of a mesh file's model: depends only on (seed, synset, model id)."""
    digest = hashlib.sha256(f"{synset}/{model}".encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.SeedSequence([int(seed)] + words)


class MeshFileSource:
    """A mesh file (a :class:`utils.datagen.mesh_io.MeshSource`) with make_dataset.py's options.

    Streams: the children of :func:`mesh_seed`: view, sample, align (the part transfer's), resample.

    Args:
        mesh: the MeshSource (path, synset, model id, layout).
        opts: ``utils.datagen.mesh_dataset.Options`` (reads seed, up, normalise, part_map_obj(),
            part_annotations, min_agreement, keep_hidden, allow_outside_files).
    """

    def __init__(self, mesh, opts):
        self.mesh, self.opts = mesh, opts
        self.synset, self.model_id, self.path = mesh.synset, mesh.model_id, mesh.path

    def streams(self):
        view, sample, align, resample = mesh_seed(self.opts.seed, self.synset, self.model_id).spawn(4)
        return dict(view=view, sample=sample, align=align, resample=resample)

    def load(self, streams):
        opts = self.opts
        loaded = load_mesh(self.path, opts.up, getattr(opts, "allow_outside_files", False))
        surface, _, _ = normalise(loaded.surface, opts.normalise)
        report = dict(faces=int(len(surface.faces)), textures=len(surface.textures), notes=list(loaded.notes))
        labelled = False
        part_map = opts.part_map_obj()
        if part_map is not None:
            surface = surface.with_labels(part_map.face_labels(loaded, self.path))
            labelled = True
        elif opts.part_annotations:
            files = part_transfer.annotation_files(opts.part_annotations, self.synset, self.model_id)
            if files is None:
                report["partseg"] = "no part annotation"
            else:
                pts, seg = part_transfer.read_annotation(*files)
                labels, info = part_transfer.transfer(surface, pts, seg, np.random.default_rng(streams["align"]))
                report["transfer"] = info
                if info["agreement"] >= opts.min_agreement:
                    surface = surface.with_labels(labels)
                    labelled = True
                else:
                    report["partseg"] = f"part transfer agreement {info['agreement']:.3f} < {opts.min_agreement}"
        return Loaded(surface, labelled=labelled, report=report)

    def dense_sample(self, loaded, renderer: MeshRenderer, n, rng):
        """Area-weighted samples of the surface, minus those that cannot be seen from outside
        (unless ``keep_hidden``): xyz, face, bary. The first call notes the share dropped."""
        xyz, face, bary = loaded.surface.sample(n, rng)
        if self.opts.keep_hidden:
            return xyz, face, bary
        seen = renderer.visible_from_outside(xyz)
        loaded.report.setdefault("hidden_samples", round(float(1 - seen.mean()), 4))
        if seen.sum() < N_GT_PTS:
            raise MeshError(
                f"{self.path}: only {int(seen.sum())} of {n} surface samples can be seen "
                f"from outside; raise --n_dense or pass --keep_hidden"
            )
        return xyz[seen], face[seen], bary[seen]
