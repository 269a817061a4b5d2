"""The one path every model of a generated data set takes: render -> sample -> (the writer).

:func:`build_model` takes a model source (:mod:`utils.datagen.sources`: a procedural demo shape
or a mesh file) and

1. loads its surface (:meth:`load`, ShapeNet frame, normalised, with part labels when it has them);
2. renders V views with the ray caster of :mod:`utils.datagen.mesh_render` at angles drawn from
   the source's ``view`` stream: RGB, coverage mask as depth codes, part-label maps;
3. samples the surface twice, independently (the ``sample`` and ``resample`` streams): a dense
   sample from the source (:meth:`dense_sample`), reduced to 1024 points by farthest point
   sampling; each point takes the colour of the surface where it lies (the function that colours
   the rendered pixels), its part label, and, where the source records hidden sides, its side.
   The second cloud is what a perfect prediction with 1024 other points would be: the metrics'
   floor row.

The result is a pure function of the source and the options; :func:`utils.datagen.writer.write_model`
writes it into the data layout.
"""

from dataclasses import dataclass

import numpy as np

from utils.data import N_GT_PTS
from utils.datagen.mesh_io import MeshError
from utils.datagen.mesh_render import SUPERSAMPLE, MeshRenderer, encode_depth
from utils.datagen.sampling import farthest_point_sampling
from utils.datagen.writer import quantise

MIN_COVERED_PIXELS = 10  # a model whose best view shows fewer object pixels fails (not rendered)


@dataclass(frozen=True)
class RenderOptions:
    """What decides a model's views and clouds, whatever its source.

    Attributes:
        n_views: views per model; img_size: image side (pixels).
        azimuth, elevation: (min, max) degrees, each view's angles drawn uniformly in them.
        supersample: rays per pixel side (coverage masks); shading: Lambert shading of the renders.
        n_dense: dense surface samples before farthest point sampling.
    """

    n_views: int = 10
    img_size: int = 64
    azimuth: tuple = (0.0, 360.0)
    elevation: tuple = (-10.0, 40.0)
    supersample: int = SUPERSAMPLE
    shading: bool = False
    n_dense: int = 16384


def build_model(source, opts):
    """Load, render and sample one model (see the module docstring).

    Args:
        source: a model source (:class:`utils.datagen.sources.ProceduralSource`, ``MeshFileSource``).
        opts: :class:`RenderOptions`.
    Returns:
        dict: ``views (V, 2)`` degrees (azimuth, elevation); ``rgb (V,H,W,3)`` uint8; ``depth (V,H,W)``
        uint8 (255 = background); ``pcl (1024, 3)`` float32 ShapeNet frame; ``colours (1024, 3)``
        float32 in [0, 1]; with part labels ``labels (V,H,W)`` uint8 (0 = background) and
        ``point_labels (1024,)`` int32 1-based; with a side record ``sides (1024,)`` uint8 (1 = on a
        part's hidden side); ``resample``: the same cloud keys for the second sampling; ``report``:
        the source's notes (a JSON-able dict).
    Raises:
        MeshError (and the part transfer's AnnotationError): the model cannot be used.
    """
    streams = source.streams()
    loaded = source.load(streams)
    surface = loaded.surface
    view_rng = np.random.default_rng(streams["view"])
    az = view_rng.uniform(opts.azimuth[0], opts.azimuth[1], opts.n_views)
    el = view_rng.uniform(opts.elevation[0], opts.elevation[1], opts.n_views)
    renderer = MeshRenderer(surface)
    rgb, depth, label_maps = [], [], []
    for a, e in zip(az, el):
        view = renderer.render(
            np.radians(a), np.radians(e), opts.img_size, opts.img_size, opts.shading, opts.supersample
        )
        rgb.append(np.round(view.rgb * 255).astype(np.uint8))
        depth.append(encode_depth(view.depth, view.hit))
        label_maps.append(view.label)
    covered = max(int(np.sum(d < 254)) for d in depth)
    if covered < MIN_COVERED_PIXELS:
        raise MeshError(
            f"{getattr(source, 'path', source.model_id)}: the views are nearly empty (at most {covered} "
            f"object pixels of {opts.img_size}x{opts.img_size}); far-off geometry (stray vertices in "
            f"faces) makes the object tiny after normalisation; expected a mesh whose faces all belong "
            f"to the object"
        )

    def cloud(stream):
        rng = np.random.default_rng(stream)
        xyz, face, bary = source.dense_sample(loaded, renderer, opts.n_dense, rng)
        keep = farthest_point_sampling(xyz, N_GT_PTS, rng)
        xyz, face, bary = xyz[keep], face[keep], bary[keep]
        out = dict(pcl=xyz.astype(np.float32), colours=quantise(surface.colour_at(face, bary)).astype(np.float32))
        if loaded.labelled:
            out["point_labels"] = surface.labels[face].astype(np.int32)
        if loaded.hidden is not None:
            out["sides"] = loaded.hidden[face].astype(np.uint8)
        return out

    model = dict(
        views=np.stack([az, el], 1),
        rgb=np.stack(rgb),
        depth=np.stack(depth),
        **cloud(streams["sample"]),
        resample=cloud(streams["resample"]),
        report=loaded.report,
    )
    if loaded.labelled:
        model["labels"] = np.stack(label_maps)
        model["report"]["part_labels"] = sorted(int(k) for k in np.unique(surface.labels))
    return model
