"""The embedded demo data set: procedural chairs, airplanes and cars with parts and colours
(``data/make_demo_data.py``, or ``python -m utils.datagen.demo_data``).

The demo's door to the one data path of :mod:`utils.datagen`: every model is a
:class:`utils.datagen.sources.ProceduralSource` (the shapes of :mod:`utils.datagen.shapes` in a
colour style of :mod:`utils.datagen.styles`), rendered and sampled twice by
:func:`utils.datagen.build.build_model` and written by :func:`utils.datagen.writer.write_model`,
as the meshes of ``data/make_dataset.py`` are. This module adds what is the demo's own: the whole
data set made in one go into a temporary folder and moved into place at the end, its info file,
and the command line.

Views are rendered by **ray casting** the mesh with the renderer of
:mod:`utils.datagen.mesh_render` (trimesh/embree, first hit per ray; the rays of
:func:`utils.render.camera.pixel_rays_np`, plus sub-pixel shifted copies), an
independent renderer that shares only the camera model with the differentiable
projections. A pixel is foreground when any of its 3x3 rays
(spread over the pixel square, edges included) hits the object: a coverage
mask, as the original data's "depth < 254" threshold makes of anti-aliased
renders. It then takes the colour and part label of the hitting ray nearest its
centre, without blending. Colours are flat (unlit) by default, so a pixel shows
exactly the colour of the points of its part; ``--shading`` adds a simple
Lambert term. Colour styles (``--colours``): :mod:`utils.datagen.styles`, recorded in
``demo_info.json``.

Ground-truth clouds: the surface is sampled densely (points hidden inside other
primitives dropped), then reduced to 1024 points by farthest point sampling.
Each point carries the colour of the surface where it was sampled
(:meth:`utils.datagen.mesh_render.Surface.colour_at`, the function the renderer
colours its ray hits with), and a side record (``pcl_1024_fps_trimesh_sides.npy``, written in
every style): 1 where the point lies on a part's hidden side
(:data:`utils.datagen.styles.HIDDEN_SIDES`), 0 elsewhere; the rgb metrics split the colour
error by it. A second cloud made the same way from an independent dense
sample (its own random stream, so the first cloud's files do not change) is written beside
it (``*_resample*.npy``): what a perfect prediction with 1024 other points would be, the
metrics' floor row.

The output follows the original DIFFER layout (see ``data/README.md``); clouds
are stored in the ShapeNet frame (y up) and the loaders rotate them into the
renderer frame with :func:`utils.data.shapenet.preprocess_pcl_gt`, exactly as for the
real data. ``view.txt`` holds "azimuth elevation" in degrees, the angles the
loaders hand to :func:`utils.render.camera.world2cam` after conversion to radians.
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

from utils.common import cli, lock
from utils.common.progress import Progress
from utils.data import (
    N_GT_PTS,
    PART_NAMES_FILE,
    PART_TREE_DIR,
    PCL_DIR,
    PCL_FILE,
    RENDERED_DIR,
    SPLITS,
    SPLITS_DIR,
    VIEWS_FILE,
    split_list_file,
    tree_dirs,
)
from utils.data.readers import read_views
from utils.data.shapenet import DEMO_PART_NAMES, synset_id
from utils.datagen import writer
from utils.datagen.build import RenderOptions, build_model
from utils.datagen.mesh_render import BOUND_RADIUS, SUPERSAMPLE, MeshRenderer
from utils.datagen.shapes import BUILDERS, model_id
from utils.datagen.sources import ProceduralSource
from utils.datagen.splits import SPLIT_FRACTIONS, split_models, write_splits
from utils.datagen.styles import COLOUR_STYLES, colour_figure
from utils.datagen.writer import DEFAULT_WORKERS, check_out_folder, lock_data_folder, run_jobs

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "data"  # the repository's data/ (this file: utils/datagen/)
DEFAULT_CATEGORIES = ("chair", "airplane", "car")
INFO_FILE = "demo_info.json"
TOP_LEVEL = (RENDERED_DIR, PCL_DIR, SPLITS_DIR, PART_TREE_DIR, INFO_FILE)
TMP_PREFIX = ".demo_tmp_"  # the generator's working folder inside --out: .demo_tmp_<pid>_<random>
TMP_OWNER = ".owner"  # inside it, flock-ed by the generator while it runs
N_DENSE = 8000  # dense surface samples per cloud, before farthest point sampling


# --------------------------------------------------------------------------
# one model
# --------------------------------------------------------------------------
def make_model(
    category,
    index,
    seed=0,
    n_views=10,
    img_size=64,
    shading=False,
    el_range=(-10.0, 40.0),
    n_dense=N_DENSE,
    supersample=SUPERSAMPLE,
    colours="flat",
):
    """Build, render and sample one demo model: :func:`utils.datagen.build.build_model` of its
    :class:`~utils.datagen.sources.ProceduralSource`. Pure function of its arguments.

    Returns the dict of ``build_model``: ``views (V, 2)`` degrees (azimuth, elevation); ``rgb
    (V,H,W,3)`` uint8; ``depth (V,H,W)`` uint8 (255 = background); ``labels (V,H,W)`` uint8 (0 =
    background, k = part k); ``pcl (1024, 3)`` float32 ShapeNet frame; ``colours (1024, 3)`` float32
    in [0,1]; ``point_labels (1024,)`` int32, 1-based; ``sides (1024,)`` uint8, 1 where the point
    lies on a part's hidden side (the same in every style); ``resample``: the second, independent
    sampling's cloud keys. ``colours`` (the argument): one of :data:`COLOUR_STYLES`.
    """
    opts = RenderOptions(
        n_views=n_views,
        img_size=img_size,
        azimuth=(0.0, 360.0),
        elevation=tuple(el_range),
        supersample=supersample,
        shading=shading,
        n_dense=n_dense,
    )
    return build_model(ProceduralSource(category, index, seed, colours), opts)


def write_model(root, category, index, model):
    """Write one model's files into both trees (RGB and partseg) under ``root``."""
    writer.write_model(root, synset_id(category), model_id(category, index), model)


def point_visibility(data_dir, category):
    """``visibility(model_id) -> int (N,)``: in how many of a demo model's views each of its
    ground-truth points is seen (:meth:`~utils.datagen.mesh_render.MeshRenderer.seen_in_views` on the
    model's mesh, rebuilt from ``demo_info.json``'s seed and colour style); None when ``data_dir``
    holds no demo data. Used by ``claims/colour_breakdown.py``."""
    info_path = Path(data_dir) / INFO_FILE
    if not info_path.is_file():
        return None
    info = json.loads(info_path.read_text())
    seed = int(info.get("seed", 0))
    prefix = f"{category}_"
    rgb = tree_dirs(data_dir)

    def visibility(model):
        if not model.startswith(prefix) or not model[len(prefix) :].isdigit():
            raise ValueError(f"{model}: not a demo model id ({prefix}NNNN)")
        source = ProceduralSource(category, int(model[len(prefix) :]), seed, info.get("colours", "flat"))
        surface = source.load(source.streams()).surface
        rel = Path(synset_id(category)) / model
        pcl = np.load(Path(rgb["pcl"]) / rel / PCL_FILE)
        views = read_views(str(Path(rgb["rendered"]) / rel / VIEWS_FILE))
        return MeshRenderer(surface).seen_in_views(pcl, views)

    return visibility


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
            pid = tmp.name[len(TMP_PREFIX) :].split("_")[0]
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
        paths += [
            Path(dirs["splits"][0]) / split_list_file(synset, split, ext)
            for split in SPLITS
            for ext in (".npy", ".txt")
        ]
    return paths


def _present(root, synset):
    return [p for p in category_paths(root, synset) if p.exists()]


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def generate(
    out,
    categories=DEFAULT_CATEGORIES,
    n_models=200,
    n_views=10,
    img_size=64,
    seed=0,
    shading=False,
    workers=2,
    el_range=(-10.0, 40.0),
    supersample=SUPERSAMPLE,
    force=False,
    progress=True,
    colours="flat",
):
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
        raise FileExistsError(
            f"{out} already holds {', '.join(existing)}; pass --force to replace "
            f"{'them' if len(existing) > 1 else 'it'} (other categories are kept)"
        )
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with lock_data_folder(out):
            return _generate_locked(
                out,
                categories,
                n_models,
                n_views,
                img_size,
                seed,
                shading,
                workers,
                el_range,
                supersample,
                force,
                progress,
                colours,
            )
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # no empty --out left behind
        raise


def _generate_locked(
    out,
    categories,
    n_models,
    n_views,
    img_size,
    seed,
    shading,
    workers,
    el_range,
    supersample,
    force,
    progress,
    colours,
):
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
        kw = dict(
            seed=seed,
            n_views=n_views,
            img_size=img_size,
            shading=shading,
            el_range=tuple(el_range),
            supersample=supersample,
            colours=colours,
        )
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
        info = dict(
            generator="utils.datagen.demo_data",
            categories={c: synset_id(c) for c in categories},
            n_models=n_models,
            n_views=n_views,
            img_size=img_size,
            seed=seed,
            shading=shading,
            colours=colours,
            elevation_range_deg=list(el_range),
            supersample=supersample,
            n_pts=N_GT_PTS,
            bound_radius=BOUND_RADIUS,
            resampled_clouds=True,
            split_fractions=list(SPLIT_FRACTIONS),
            seconds=round(time.time() - t0, 1),
        )
        old_info = _read_json(out / INFO_FILE)
        kept = (
            {c: s for c, s in old_info.get("categories", {}).items() if c not in info["categories"]}
            if old_info.get("generator") == info["generator"]
            else {}
        )
        if kept:
            info["other_categories_kept"] = kept
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")

        with cli.deferred_signals():  # the moves into place are not cut short by Ctrl-C / SIGTERM
            for c, paths in existing.items():  # only with force
                cli.warn(
                    f"--force: replacing {c} ({synset_id(c)}) in {out}: "
                    f"{', '.join(str(p.relative_to(out)) for p in paths)}",
                    tool="make_demo_data",
                )
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


def build_parser():
    p = argparse.ArgumentParser(
        prog="make_demo_data.py",
        description="Generate the procedural demo data set (chairs, airplanes, cars with coloured parts) "
        "in the original DIFFER layout: RGB renders, masks, part-label maps, view angles, "
        "1024-point ground-truth clouds with colours and part labels, train/val/test splits.",
    )
    p.add_argument(
        "--out", default=str(DEFAULT_OUT), help="data folder to fill (default: the repository's data/, %(default)s)"
    )
    p.add_argument(
        "--categories",
        nargs="+",
        default=list(DEFAULT_CATEGORIES),
        help="categories to generate, space- or comma-separated, from: chair airplane car (default: all three)",
    )
    p.add_argument("--n_models", type=int, default=200, help="models per category (default: %(default)s)")
    p.add_argument("--n_views", type=int, default=10, help="rendered views per model (default: %(default)s)")
    p.add_argument("--img_size", type=int, default=64, help="image side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default: %(default)s)")
    p.add_argument(
        "--colours",
        choices=COLOUR_STYLES,
        default="flat",
        help="colour style: 'flat' one colour per part (default); 'two-sided' the hidden side of a "
        "part (a chair's backrest rear and seat underside, ...) in a second colour drawn at random; "
        "'textured' two-sided plus stripes, checks or gradients on the other faces; "
        "'complementary' two-sided with the hidden side in a fixed function of the visible "
        "colour (each 8-bit channel v becomes 286 - v), so one view of a part tells both sides",
    )
    p.add_argument(
        "--figure",
        default=None,
        metavar="PNG",
        help="only draw a figure of a few chairs in every colour style (front and back) into PNG, "
        "e.g. docs/demo_colours.png, and write no data",
    )
    p.add_argument(
        "--shading",
        action="store_true",
        help="shade the renders (Lambert); default flat colours, equal to the point colours",
    )
    p.add_argument(
        "--elevation",
        type=float,
        nargs=2,
        default=[-10.0, 40.0],
        metavar=("MIN", "MAX"),
        help="elevation range of the views in degrees (default: %(default)s)",
    )
    p.add_argument(
        "--supersample",
        type=int,
        default=SUPERSAMPLE,
        help="rays per pixel side; a pixel is foreground when any of its rays hits "
        "(default: %(default)s; 1 = one ray through the pixel centre)",
    )
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="worker processes (default: %(default)s)")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace the categories asked for when --out already holds them (others are kept)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar (on a terminal) or progress lines (in a log file)"
    )
    return p


def _main(argv=None):
    args = build_parser().parse_args(argv)
    categories = [c for item in args.categories for c in item.split(",") if c.strip()]
    if args.figure:
        colour_figure(args.figure, seed=args.seed)
        print(f"make_demo_data: figure written to {args.figure}")
        return 0
    info = generate(
        args.out,
        categories,
        n_models=args.n_models,
        n_views=args.n_views,
        img_size=args.img_size,
        seed=args.seed,
        shading=args.shading,
        workers=args.workers,
        el_range=args.elevation,
        supersample=args.supersample,
        force=args.force,
        progress=not args.quiet,
        colours=args.colours,
    )
    print(
        f"make_demo_data: {len(info['categories'])} categories x {info['n_models']} models x "
        f"{info['n_views']} views written to {Path(args.out).resolve()} in {info['seconds']} s"
    )
    return 0


def main(argv=None):
    """The command line (utils.common.cli): status 0, 2 after a one-line error, 128 + signal when interrupted."""
    return cli.run(
        "make_demo_data",
        _main,
        argv,
        expected=(ValueError, lock.FolderInUse),
        status=2,
        interrupted_hint="its working folder was removed, nothing else was changed; re-run the command",
    )


if __name__ == "__main__":
    sys.exit(main())
