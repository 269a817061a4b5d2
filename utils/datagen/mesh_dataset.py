"""Render a collection of real meshes into the data layout (``data/make_dataset.py``).

For every mesh found by :func:`utils.datagen.mesh_io.find_meshes` (any folder of
``.obj .glb .gltf .ply .off .stl`` files, or ShapeNetCore v1/v2):

1. load it with its appearance and part names (:func:`utils.datagen.mesh_io.load_mesh`),
   turn a z-up source upright (``--up z``), centre and scale it like
   ShapeNetCore's normalised models (unit bounding-box diagonal);
2. label its faces when asked: part names through a JSON map (``--part_map``)
   or the ShapeNet part annotations (``--part_annotations``, see
   :mod:`utils.datagen.part_transfer`);
3. render V views with the shared ray caster (:mod:`utils.datagen.mesh_render`, the
   demo's renderer): RGB, coverage mask as depth codes, part-label maps;
4. sample the surface twice, independently: densely (area-weighted), minus the samples that
   cannot be seen from outside the object (interior geometry), reduced to 1024 points by
   farthest point sampling; colours are looked up at the sampled points with
   the same function that colours the rendered pixels. The second cloud
   (``*_resample*.npy``) is the metrics' floor row, as for the demo data.

Steps 1-4 are the one path of every generated data set (:class:`utils.datagen.sources.MeshFileSource`
into :func:`utils.datagen.build.build_model`, written by :func:`utils.datagen.writer.write_model`);
the demo's procedural shapes take it too. This module adds the collection: finding the meshes,
the completion records and shards (:mod:`utils.datagen.shards`), splits and summary, and the
command line.

The outputs of a model depend only on the options, the seed and its
(synset, model id), whatever the number of workers. A model is written into a
temporary folder and its folders are then renamed into place; a record in
``<out>/.make_dataset/models/`` marks it complete, so a re-run skips it and an
interrupted model is redone. Splits, ``partseg/part_names.json``,
``dataset_info.json`` (and ``part_transfer.csv``) are rewritten at the end of
every run from the complete models.

Scaling out (``--shard k/n``, then ``--finalize``): the sorted model list is dealt round-robin
into n parts (:func:`utils.datagen.shards.shard_sources`); shard k renders only its part, with its own temporary
folder, and writes a report ``<out>/.make_dataset/shards/<k>-of-<n>.json`` instead of the splits
and summary, so n processes on any machines sharing the output folder fill one tree without
touching each other's files. ``--finalize`` then renders nothing: it writes the splits,
``part_names.json``, ``part_transfer.csv`` and ``dataset_info.json`` from the complete models,
exactly as one unsharded run would, listing the models that failed in a shard; while models
are neither complete nor reported failed (a shard not finished) it writes nothing and lists them.
"""

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from utils.common import atomic_io, cli
from utils.common.lock import FolderInUse
from utils.common.progress import Progress
from utils.data import N_GT_PTS, PART_NAMES_FILE, PART_TREE_DIR, shapenet, tree_dirs
from utils.datagen import part_transfer
from utils.datagen.build import RenderOptions, build_model
from utils.datagen.mesh_io import MESH_SUFFIXES, UP_AXES, MeshError, PartMap, find_meshes
from utils.datagen.mesh_render import SUPERSAMPLE
from utils.datagen.shards import (
    STATE_DIR,
    parse_shard,
    place_model,
    read_record,
    read_shard_reports,
    shard_name,
    shard_report_path,
    shard_sources,
    workers_tmp,
)
from utils.datagen.sources import MeshFileSource
from utils.datagen.splits import make_splits, parse_fractions, read_split_source, write_splits
from utils.datagen.writer import DEFAULT_WORKERS, check_out_folder, lock_data_folder, run_jobs

INFO_FILE = "dataset_info.json"
TRANSFER_FILE = "part_transfer.csv"
# The files a model gets: 2 = with the second sampling of its surface (*_resample*.npy). A folder
# made by an earlier version (no format in its params.json) asks for --force.
FILE_FORMAT = 2
# options that change what a model's files hold: a data set is made with one set of them
OUTPUT_OPTIONS = (
    "n_views",
    "img_size",
    "azimuth",
    "elevation",
    "supersample",
    "shading",
    "up",
    "normalise",
    "n_dense",
    "keep_hidden",
    "seed",
    "part_map",
    "part_annotations",
    "min_agreement",
)


@dataclass
class Options:
    """Everything that decides a model's files (see ``--help`` for each)."""

    # the render -> sample path's own options, with its defaults
    n_views: int = RenderOptions.n_views
    img_size: int = RenderOptions.img_size
    azimuth: tuple = RenderOptions.azimuth
    elevation: tuple = RenderOptions.elevation
    supersample: int = RenderOptions.supersample
    shading: bool = RenderOptions.shading
    n_dense: int = RenderOptions.n_dense
    up: str = "y"
    normalise: str = "diagonal"
    keep_hidden: bool = False
    seed: int = 0
    part_map: dict = None  # PartMap as a dict {'patterns': [[pattern, label]], 'names': [...]}
    part_annotations: str = None  # folder of the ShapeNet part annotations
    min_agreement: float = 0.9
    allow_outside_files: bool = False  # read material/texture files named outside a mesh's folder

    def check(self):
        if self.n_views < 1 or self.img_size < 8 or self.supersample < 1:
            raise ValueError("need --n_views >= 1, --size >= 8 and --supersample >= 1")
        if self.n_dense < 2 * N_GT_PTS:
            raise ValueError(f"--n_dense must be at least {2 * N_GT_PTS}")
        if self.up not in UP_AXES:
            raise ValueError(f"--up must be one of {UP_AXES}")
        if self.elevation[0] > self.elevation[1] or self.azimuth[0] > self.azimuth[1]:
            raise ValueError("--azimuth and --elevation take MIN MAX with MIN <= MAX")
        if self.elevation[0] <= -90 or self.elevation[1] >= 90:
            raise ValueError("--elevation must stay inside (-90, 90) degrees")
        if self.part_map and self.part_annotations:
            raise ValueError("give --part_map or --part_annotations, not both")

    def part_map_obj(self):
        if not self.part_map:
            return None
        return PartMap(
            [tuple(p) for p in self.part_map["patterns"]],
            self.part_map["names"],
            self.part_map.get("source", "part map"),
        )

    def render_options(self):
        """The options of the one render -> sample path (:class:`utils.datagen.build.RenderOptions`)."""
        shared = {f.name: getattr(self, f.name) for f in fields(RenderOptions)}
        shared["azimuth"], shared["elevation"] = tuple(self.azimuth), tuple(self.elevation)
        return RenderOptions(**shared)

    def record(self):
        d = asdict(self)
        d["azimuth"], d["elevation"] = list(self.azimuth), list(self.elevation)
        return dict({k: d[k] for k in OUTPUT_OPTIONS}, file_format=FILE_FORMAT)


# --------------------------------------------------------------------------
# one model
# --------------------------------------------------------------------------
def render_model(source, opts):
    """Load, label, render and sample one mesh: :func:`utils.datagen.build.build_model` of its
    :class:`~utils.datagen.sources.MeshFileSource`. Pure function of its arguments.

    Args:
        source: :class:`utils.datagen.mesh_io.MeshSource`.
        opts: :class:`Options`.
    Returns:
        build_model's dict: ``views``, ``rgb``, ``depth``, ``pcl``, ``colours``, ``resample`` (the
        second sampling), with part labels also ``labels`` and ``point_labels``; ``report`` (a
        JSON-able dict: notes, faces, part transfer).
    Raises:
        MeshError (and AnnotationError): the model cannot be used.
    """
    return build_model(MeshFileSource(source, opts), opts.render_options())


def _job(job):
    """Worker: build the model, then place it (:func:`utils.datagen.shards.place_model`). Never
    raises for a bad mesh: returns ``(source, record or None, error message or None)``."""
    out, source, opts, tmp_root = job
    try:
        model = render_model(source, opts)
    except (MeshError, part_transfer.AnnotationError, ValueError, OSError, MemoryError) as err:
        return source, None, str(err) if str(source.path) in str(err) else f"{source.path}: {err}"
    except Exception as err:  # a bug or a library failure on an odd file: report, keep going
        return source, None, f"{source.path}: {type(err).__name__}: {err}"
    record = dict(
        path=str(Path(source.path).resolve()),
        synset=source.synset,
        model_id=source.model_id,
        layout=source.layout,
        **model["report"],
    )
    return source, place_model(out, tmp_root, source.synset, source.model_id, model, record), None


# --------------------------------------------------------------------------
# the whole collection
# --------------------------------------------------------------------------
def _check_params(out, opts, force):
    path = Path(out) / STATE_DIR / "params.json"
    new = opts.record()
    old = None
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
    if old is not None and old != new and not force:
        diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new if old.get(k) != new.get(k)]
        raise FileExistsError(
            f"{out} holds models made with other options ({'; '.join(diff)}); use another "
            f"--out, or --force to redo every model with the new options"
        )
    if old != new:  # (shards starting together find it written and leave it alone)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_io.write_text(path, json.dumps(new, indent=1) + "\n")


# --------------------------------------------------------------------------
# shards
# --------------------------------------------------------------------------
def make_dataset(
    meshes,
    out,
    opts,
    category=None,
    split=(0.8, 0.1, 0.1),
    splits_from=None,
    part_names=None,
    limit=0,
    workers=1,
    force=False,
    progress=True,
    log=print,
    shard=None,
    finalize=False,
):
    """Render every mesh of ``meshes`` into the data layout under ``out``.

    Args:
        meshes: folder (searched recursively) or one mesh file.
        out: data root to fill (created when absent).
        opts: :class:`Options`.
        category: category name or synset id of the meshes outside the
            ShapeNetCore layouts; also restricts ShapeNetCore models to it.
        split: train, val, test fractions (ignored with ``splits_from``).
        splits_from: folder of split lists or ShapeNet CSV to reuse.
        part_names: names of the part labels 1..K of ``--part_annotations``.
        limit: at most this many models per synset (0 = all), the first in
            model-id order.
        workers: processes; force: redo complete models.
        progress: a bar on a terminal, a line every 5% of the models otherwise (utils.common.progress).
        log: where messages go (failures as they happen, progress lines).
        shard: ``(k, n)``: render only the k-th of n parts (:func:`shard_sources`) and write its
            report instead of the splits and summary.
        finalize: render nothing; write the splits and summary from the models the shards
            completed (nothing when some are neither complete nor failed: ``info['missing']``).
    Returns:
        the summary dict written to ``dataset_info.json`` (a shard: its report).
    """
    if shard is not None and finalize:
        raise ValueError("give --shard (render one part) or --finalize (after every part), not both")
    opts.check()
    t0 = time.time()
    out = Path(out).resolve()
    synset = shapenet.synset_id(category) if category else None
    sources = find_meshes(meshes, synset)
    if limit:
        kept, count = [], {}
        for s in sources:  # sorted by (synset, model id): the first `limit` of each synset
            count[s.synset] = count.get(s.synset, 0) + 1
            if count[s.synset] <= limit:
                kept.append(s)
        sources = kept
    check_out_folder(out)
    fractions = parse_fractions(split if isinstance(split, str) else ",".join(map(repr, split)))
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    # Shards run side by side into one --out: each locks its own folder; other runs lock --out.
    lock_folder = out if shard is None else out / STATE_DIR / "shards" / shard_name(shard)
    try:
        lock_folder.mkdir(parents=True, exist_ok=True)
        with lock_data_folder(lock_folder):
            return _make_locked(
                meshes,
                sources,
                out,
                opts,
                fractions,
                splits_from,
                part_names,
                workers,
                force,
                progress,
                log,
                t0,
                shard,
                finalize,
            )
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # no empty --out left behind
        raise


def remove_leftovers(out):
    """Remove the temporary files of atomic writes that killed runs left (split lists, part names,
    the info file, completion records, shard reports: ``.<name>.<pid>.tmp``), one warning line each.
    Called under the folder's lock; the workers' folder is emptied separately."""
    out = Path(out)
    folders = [out, out / STATE_DIR, out / STATE_DIR / "shards"]
    folders += sorted(p for p in (out / STATE_DIR / "models").glob("*") if p.is_dir())
    for tree in ("", PART_TREE_DIR):
        folders += [Path(f) for f in tree_dirs(str(out), tree)["splits"]] + [out / tree]
    for folder in dict.fromkeys(folders):
        atomic_io.remove_leftovers(folder, warn=lambda text: cli.warn(text, tool="make_dataset"))


def _make_locked(
    meshes, sources, out, opts, fractions, splits_from, part_names, workers, force, progress, log, t0, shard, finalize
):
    remove_leftovers(out)
    _check_params(out, opts, force and not finalize)
    if finalize:
        return _finalize(meshes, out, opts, sources, fractions, splits_from, part_names, t0)
    mine = shard_sources(sources, *shard) if shard is not None else sources
    tmp_root = workers_tmp(out, shard)
    shutil.rmtree(tmp_root, ignore_errors=True)  # leftovers of an interrupted run (of this shard)
    try:
        return _render_all(
            meshes,
            sources,
            mine,
            out,
            opts,
            fractions,
            splits_from,
            part_names,
            workers,
            force,
            progress,
            log,
            t0,
            shard,
            tmp_root,
        )
    finally:  # also after Ctrl-C / SIGTERM (utils.common.cli): the workers' temporaries go, as on the next start
        shutil.rmtree(tmp_root, ignore_errors=True)


def _render_all(
    meshes,
    sources,
    mine,
    out,
    opts,
    fractions,
    splits_from,
    part_names,
    workers,
    force,
    progress,
    log,
    t0,
    shard,
    tmp_root,
):

    todo = [s for s in mine if force or read_record(out, s.synset, s.model_id) is None]
    failures = []
    jobs = [(str(out), s, opts, str(tmp_root)) for s in todo]
    bar = Progress(len(jobs), "make_dataset", unit="model", enabled=bool(progress and jobs), lines=0.05, write=log)

    def finish(result):
        source, rec, err = result
        if err is not None:
            failures.append(dict(path=str(source.path), error=err))
            bar.write(f"make_dataset: skipped {err}")
        for note in (rec or {}).get("notes", []):
            bar.write(f"make_dataset: warning: {source.path}: {note}")
        bar.update()

    for result in run_jobs(_job, jobs, workers):
        finish(result)
    bar.close()
    shutil.rmtree(tmp_root, ignore_errors=True)
    if shard is not None:
        report = dict(
            shard=list(shard),
            models=len(mine),
            rendered_now=len(todo) - len(failures),
            already_complete=len(mine) - len(todo),
            failed=failures,
            seconds=round(time.time() - t0, 1),
        )
        path = shard_report_path(out, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_io.write_json(path, report, indent=1)
        return dict(report, found=len(sources))
    return _write_outputs(
        meshes,
        out,
        opts,
        sources,
        fractions,
        splits_from,
        part_names,
        failures,
        dict(rendered_now=len(todo) - len(failures), already_complete=len(sources) - len(todo)),
        t0,
    )


def _finalize(meshes, out, opts, sources, fractions, splits_from, part_names, t0):
    """The end of a sharded run: splits and summary once no model is missing (see make_dataset)."""
    reports = read_shard_reports(out)
    complete = {(s.synset, s.model_id) for s in sources if read_record(out, s.synset, s.model_id) is not None}
    done_paths = {str(s.path) for s in sources if (s.synset, s.model_id) in complete}
    failures = {f["path"]: f for rep in reports.values() for f in rep.get("failed", []) if f["path"] not in done_paths}
    failed_paths, failures = set(failures), [failures[p] for p in sorted(failures)]
    missing = [s for s in sources if (s.synset, s.model_id) not in complete and str(s.path) not in failed_paths]
    if missing:
        counts = sorted({n for _, n in reports})
        unreported = {n: [k for k in range(1, n + 1) if (k, n) not in reports] for n in counts}
        return dict(
            finalized=False,
            found=len(sources),
            complete=len(complete),
            failed=failures,
            missing=[str(s.path) for s in missing],
            shards_reported=sorted(map(list, reports)),
            shards_not_reported={f"of {n}": ks for n, ks in unreported.items() if ks},
        )
    info = _write_outputs(
        meshes,
        out,
        opts,
        sources,
        fractions,
        splits_from,
        part_names,
        failures,
        dict(rendered_now=0, already_complete=len(complete)),
        t0,
    )
    return dict(info, finalized=True)


def _write_outputs(meshes, out, opts, sources, fractions, splits_from, part_names, failures, counts, t0):
    """Splits, part names, part-transfer report and dataset_info.json from every complete model."""
    records = [r for r in (read_record(out, s.synset, s.model_id) for s in sources) if r is not None]
    by_synset = {}
    for r in records:
        by_synset.setdefault(r["synset"], []).append(r)
    summary_cats, left_out = {}, {}
    names_path = out / PART_TREE_DIR / PART_NAMES_FILE
    part_table = json.loads(names_path.read_text()) if names_path.is_file() else {}
    for syn, recs in sorted(by_synset.items()):
        reuse = read_split_source(splits_from, syn) if splits_from else None
        splits, missing = make_splits([r["model_id"] for r in recs], syn, opts.seed, fractions, reuse)
        if missing:
            left_out[syn] = missing
        write_splits(tree_dirs(out)["splits"][0], syn, splits)
        seg_ids = {r["model_id"] for r in recs if r["partseg"]}
        if seg_ids:
            write_splits(
                tree_dirs(out, PART_TREE_DIR)["splits"][0],
                syn,
                {k: [i for i in v if i in seg_ids] for k, v in splits.items()},
            )
            labels = [k for r in recs if r["partseg"] for k in r.get("part_labels", [])]
            part_table[syn] = _part_names(opts, syn, max(labels), part_names)
        summary_cats[syn] = dict(
            models=len(recs), partseg=len(seg_ids), **{name: len(ids) for name, ids in splits.items()}
        )
    if part_table:
        names_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_io.write_text(names_path, json.dumps(part_table, indent=1) + "\n")
    transfers = [r for r in records if "transfer" in r]
    if transfers:
        _write_transfer_report(out / TRANSFER_FILE, transfers)

    info = dict(
        generator="utils.datagen.mesh_dataset",
        meshes=str(Path(meshes).resolve()),
        options=opts.record(),
        split=list(fractions) if not splits_from else f"from {splits_from}",
        found=len(sources),
        rendered_now=counts["rendered_now"],
        already_complete=counts["already_complete"],
        failed=failures,
        not_in_reused_splits=left_out,
        categories=summary_cats,
        without_part_labels=sum(1 for r in records if not r["partseg"])
        if (opts.part_map or opts.part_annotations)
        else None,
        seconds=round(time.time() - t0, 1),
    )
    atomic_io.write_text(out / INFO_FILE, json.dumps(info, indent=1) + "\n")
    return info


def _part_names(opts, synset, top, given):
    """Names of labels 1..K for part_names.json."""
    if opts.part_map:
        names = list(opts.part_map["names"])
    elif given:
        names = list(given)
    else:
        name = shapenet.SYNSET_TO_CATEGORY.get(synset)
        k = max(top, shapenet.PART_COUNTS.get(name, 0))
        names = [f"part{i}" for i in range(1, k + 1)]
    if len(names) < top:
        raise ValueError(f"--part_names lists {len(names)} names but labels reach {top} (synset {synset})")
    return names


def _write_transfer_report(path, records):
    rows = ["synset,model_id,n_points,agreement,rmse,scale,rotation,partseg"]
    for r in sorted(records, key=lambda r: (r["synset"], r["model_id"])):
        t = r["transfer"]
        rot = " ".join(str(v) for row in t["rotation"] for v in row)
        rows.append(
            f"{r['synset']},{r['model_id']},{t['n_points']},{t['agreement']:.4f},{t['rmse']:.5f},"
            f"{t['scale']:.5f},{rot},{int(r['partseg'])}"
        )
    atomic_io.write_text(path, "\n".join(rows) + "\n")


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(
        prog="make_dataset.py",
        description="Render a collection of 3D models (any folder of meshes, or ShapeNetCore v1/v2) into the "
        "data layout of data/README.md: RGB renders, coverage masks, view angles and 1024-point "
        "coloured clouds for the rgb task, and, with part labels, label maps and labelled clouds for "
        "the partseg task, plus train/val/test splits. Uses the ray-casting renderer of the demo.",
    )
    g = p.add_argument_group("input and output")
    g.add_argument(
        "--meshes",
        required=True,
        metavar="SRC",
        help=f"folder searched recursively for {' '.join(MESH_SUFFIXES)} files (or one file). "
        "ShapeNetCore v1 (<synset>/<model>/model.obj) and v2 "
        "(<synset>/<model>/models/model_normalized.obj) are recognised: synset and model ids come "
        "from the folders. Other files get the model id <path below SRC>, folders joined by '__'",
    )
    g.add_argument("--out", required=True, metavar="DIR", help="data root to fill (e.g. data/); created if absent")
    g.add_argument(
        "--category",
        default=None,
        metavar="NAME",
        help="category name (chair, car, ...) or any 8-digit synset id for the meshes outside the "
        "ShapeNetCore layouts (required for them); restricts ShapeNetCore sources to that synset",
    )
    g.add_argument(
        "--limit",
        type=int,
        default=0,
        metavar="N",
        help="render at most N models per synset, the first by model id (default: 0 = all)",
    )
    g = p.add_argument_group("geometry and frame")
    g.add_argument(
        "--up",
        choices=UP_AXES,
        default="y",
        help="the source's up axis: y (ShapeNet, glTF) or z (ModelNet, most scans, CAD and Blender "
        "scenes): z-up meshes are rotated by (x, y, z) -> (x, z, -y) into the y-up ShapeNet frame "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--normalise",
        choices=("diagonal", "sphere"),
        default="diagonal",
        help="diagonal: bounding box centred at the origin with a diagonal of 1, as ShapeNetCore's "
        "normalised models (the default); sphere: centred and scaled into a sphere of radius 0.46, "
        "as the demo",
    )
    g = p.add_argument_group("views")
    g.add_argument("--n_views", type=int, default=10, metavar="V", help="views per model (default: %(default)s)")
    g.add_argument("--size", type=int, default=64, metavar="PX", help="image side in pixels (default: %(default)s)")
    g.add_argument(
        "--azimuth",
        type=float,
        nargs=2,
        default=[0.0, 360.0],
        metavar=("MIN", "MAX"),
        help="azimuth range in degrees (turn about the up axis), drawn uniformly per view (default: 0 360)",
    )
    g.add_argument(
        "--elevation",
        type=float,
        nargs=2,
        default=[-10.0, 40.0],
        metavar=("MIN", "MAX"),
        help="elevation range in degrees (positive: from above), drawn uniformly per view (default: -10 40)",
    )
    g.add_argument(
        "--supersample",
        type=int,
        default=SUPERSAMPLE,
        help="rays per pixel side; a pixel is foreground when any of its rays hits (coverage mask) and "
        "takes the colour of the hit nearest its centre; 1 = one ray through the centre "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--shading",
        action="store_true",
        help="shade the renders (Lambert term); default flat colours, equal to the cloud colours",
    )
    p.add_argument(
        "--allow_outside_files",
        action="store_true",
        help="read the material, texture and buffer files a mesh names outside its folder (the model's "
        "folder in the ShapeNetCore layouts); by default they are not read and each is named in a warning",
    )
    g = p.add_argument_group("ground-truth clouds")
    g.add_argument(
        "--n_dense",
        type=int,
        default=16384,
        help="dense area-weighted surface samples, reduced to 1024 by farthest point sampling (default: %(default)s)",
    )
    g.add_argument(
        "--keep_hidden",
        action="store_true",
        help="keep samples that cannot be seen from outside the object (interior geometry); by "
        "default they are dropped, so the cloud's colours are the ones the views show",
    )
    g = p.add_argument_group("part labels (partseg tree)")
    g.add_argument(
        "--part_map",
        default=None,
        metavar="JSON",
        help="label faces by their part names (OBJ 'o'/'g', glTF node or mesh names): a JSON object "
        '{pattern: label name or number} or {"labels": [names], "parts": {pattern: label}}; '
        "patterns use * ? [..], first match wins, case ignored; see data/README.md",
    )
    g.add_argument(
        "--part_annotations",
        default=None,
        metavar="DIR",
        help="ShapeNet part annotations of Yi et al. 2016 (DIR/<synset>/points/<model>.pts and "
        "points_label/<model>.seg), transferred to the faces after aligning the frames; the "
        "agreement per model goes to part_transfer.csv",
    )
    g.add_argument(
        "--part_names",
        default=None,
        metavar="A,B,..",
        help="names of the annotation labels 1..K for part_names.json (default: part1..partK)",
    )
    g.add_argument(
        "--min_agreement",
        type=float,
        default=0.9,
        help="a transfer whose agreement is lower leaves the model out of the partseg tree (default: %(default)s)",
    )
    g = p.add_argument_group("splits")
    g.add_argument(
        "--split",
        default="0.8,0.1,0.1",
        metavar="TRAIN,VAL,TEST",
        help="fractions of a seeded random split, per synset (default: %(default)s)",
    )
    g.add_argument(
        "--splits_from",
        default=None,
        metavar="PATH",
        help="reuse split lists instead: a folder of <synset>_{train,val,test}_list.{txt,npy} files "
        "or a CSV with columns synsetId, modelId, split (ShapeNetCore's all.csv); rendered models "
        "missing from the lists are left out and counted",
    )
    g = p.add_argument_group("running")
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the views, samples and split; same seed, same files (default: %(default)s)",
    )
    g.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="worker processes (default: %(default)s)")
    g.add_argument(
        "--force",
        action="store_true",
        help="redo models that are already complete (also needed to change options for an --out that holds models)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    g = p.add_argument_group("many machines (data/README.md: a Slurm job array)")
    g.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="render only the K-th of N disjoint parts of the model list (every N-th model in "
        "(synset, model id) order, from the K-th; 1 <= K <= N), so N jobs sharing --out fill one "
        "tree; each writes a report, not the splits: run --finalize when all are done",
    )
    g.add_argument(
        "--finalize",
        action="store_true",
        help="after every --shard job: render nothing, write the splits and dataset_info.json from "
        "the complete models (same command and options as the shards, without --shard); "
        "lists failed models, and refuses (status 1) while models are missing",
    )
    return p


def _main(argv=None):
    args = build_parser().parse_args(argv)
    part_map = None
    if args.part_map:
        pm = PartMap.from_json(args.part_map)
        part_map = dict(patterns=[list(x) for x in pm.patterns], names=pm.names, source=str(args.part_map))
    if args.part_annotations and not Path(args.part_annotations).is_dir():
        raise ValueError(f"--part_annotations {args.part_annotations}: no such folder")
    opts = Options(
        n_views=args.n_views,
        img_size=args.size,
        azimuth=tuple(args.azimuth),
        elevation=tuple(args.elevation),
        supersample=args.supersample,
        shading=args.shading,
        up=args.up,
        normalise=args.normalise,
        n_dense=args.n_dense,
        keep_hidden=args.keep_hidden,
        seed=args.seed,
        part_map=part_map,
        part_annotations=str(Path(args.part_annotations).resolve()) if args.part_annotations else None,
        min_agreement=args.min_agreement,
        allow_outside_files=args.allow_outside_files,
    )
    names = [n.strip() for n in args.part_names.split(",")] if args.part_names else None
    info = make_dataset(
        args.meshes,
        args.out,
        opts,
        category=args.category,
        split=parse_fractions(args.split),
        splits_from=args.splits_from,
        part_names=names,
        limit=args.limit,
        workers=args.workers,
        force=args.force,
        progress=not args.quiet,
        shard=parse_shard(args.shard) if args.shard else None,
        finalize=args.finalize,
    )
    if args.shard:
        print(shard_text(info, args.out))
        return 0 if info["rendered_now"] + info["already_complete"] > 0 or not info["models"] else 1
    if args.finalize and not info["finalized"]:
        print(missing_text(info, args.out), file=sys.stderr)
        return 1
    print(summary_text(info, args.out))
    return 0 if info["rendered_now"] + info["already_complete"] > 0 else 1


def shard_text(info, out):
    k, n = info["shard"]
    lines = [
        f"make_dataset: shard {k}/{n}: {info['models']} of {info['found']} models; {info['rendered_now']} "
        f"rendered now, {info['already_complete']} already complete, {len(info['failed'])} failed in "
        f"{info['seconds']} s -> {Path(out).resolve()} (run --finalize once every shard is done)"
    ]
    lines += [f"  failed: {f['error']}" for f in info["failed"]]
    return "\n".join(lines)


def missing_text(info, out, show=20):
    lines = [
        f"make_dataset: --finalize: {len(info['missing'])} of {info['found']} models are neither complete nor "
        f"reported failed in {Path(out).resolve()} ({info['complete']} complete, {len(info['failed'])} "
        "failed); nothing written. Finish (or re-run) their shards, then --finalize again."
    ]
    for n, ks in info["shards_not_reported"].items():
        lines.append(f"  shards {n} without a report: {', '.join(map(str, ks))}")
    lines += [f"  missing: {p}" for p in info["missing"][:show]]
    if len(info["missing"]) > show:
        lines.append(f"  ... and {len(info['missing']) - show} more")
    return "\n".join(lines)


def main(argv=None):
    """The command line (utils.common.cli): 0, 1 when no model could be rendered, 2 after a one-line error,
    128 + signal when interrupted."""
    return cli.run(
        "make_dataset",
        _main,
        argv,
        expected=(MeshError, ValueError, FolderInUse),
        status=2,
        interrupted_hint="complete models are kept, the model in progress was removed; re-run the "
        "same command to continue",
    )


def summary_text(info, out):
    lines = [
        f"make_dataset: {info['found']} meshes found; {info['rendered_now']} rendered now, "
        f"{info['already_complete']} already complete, {len(info['failed'])} failed to load or render "
        f"(skipped) in {info['seconds']} s -> {Path(out).resolve()}"
    ]
    for f in info["failed"]:
        lines.append(f"  failed: {f['error']}")
    for syn, c in info["categories"].items():
        lines.append(
            f"  {syn} ({shapenet.SYNSET_TO_CATEGORY.get(syn, 'custom')}): {c['models']} models "
            f"(train {c['train']}, val {c['val']}, test {c['test']}), {c['partseg']} with part labels"
        )
    if info.get("without_part_labels"):
        lines.append(
            f"  {info['without_part_labels']} models have no part labels (see {INFO_FILE}"
            f"{' and ' + TRANSFER_FILE if info['options']['part_annotations'] else ''})"
        )
    for syn, ids in info["not_in_reused_splits"].items():
        lines.append(f"  {syn}: {len(ids)} rendered models are in none of the reused split lists")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
