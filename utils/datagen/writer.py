"""Writers of the data layout that :mod:`utils.data` reads (see ``data/README.md``).

:func:`write_model` writes one model built by :func:`utils.datagen.build.build_model` (whatever
its source) into both trees; the demo generator (:mod:`utils.datagen.demo_data`) and the
mesh-collection renderer (:mod:`utils.datagen.mesh_dataset`) both call it, so both write byte for
byte the same kind of files: 8-bit PNG renders and depth codes, ``view.txt`` in degrees, ``.npy``
clouds in the ShapeNet frame (and the second sampling beside them). Also here: the output
folder's checks and lock, the worker pool. Split lists: :mod:`utils.datagen.splits`.
"""

import multiprocessing
import os
import signal
import sys
from pathlib import Path

import cv2
import numpy as np

from utils.common import cli, lock
from utils.data import (
    PART_TREE_DIR,
    PCL_COLOURS_FILE,
    PCL_FILE,
    PCL_LABELS_FILE,
    VIEWS_FILE,
    depth_file,
    label_map_file,
    render_file,
    tree_dirs,
)
from utils.data.layout import PCL_SIDES_FILE, RESAMPLE_COLOURS_FILE, RESAMPLE_LABELS_FILE, RESAMPLE_PCL_FILE

DEFAULT_WORKERS = min(2, os.cpu_count() or 1)  # the generators' worker processes (--workers)


def quantise(colour):
    """Colours as they survive an 8-bit PNG, so cloud colours equal pixel colours."""
    return np.round(np.clip(colour, 0, 1) * 255.0) / 255.0


class DataFolderInUse(lock.FolderInUse):
    """Another data tool (make_demo_data.py, make_dataset.py) is writing into the same --out."""


def lock_data_folder(out):
    """The data tools' exclusive lock on their output folder (utils.common.lock; refused naming the holder)."""
    return lock.FolderLock(
        out,
        "data folder",
        "data tool",
        error=DataFolderInUse,
        advice="Wait for it to finish or stop it, or choose another --out",
        remove=True,
    )


def check_out_folder(out, flag="--out"):
    """Refuse (CLIError) an output folder that is a file or cannot be created or written; creates nothing."""
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise cli.CLIError(f"{flag} {out}: is a file; expected a folder (created when absent)")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise cli.CLIError(f"{flag} {out}: {parent} is not writable; expected a folder this user can write")


def _png(image, what):
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {what}")
    return buf.tobytes()


def write_views(folders, views, rgb, depth):
    """``render_{k}.png``, ``depth_{k}.png`` and ``view.txt`` into each folder of ``folders``.

    Args:
        views: float (V, 2) degrees, azimuth and elevation of each view.
        rgb: uint8 (V, H, W, 3) RGB renders.
        depth: uint8 (V, H, W) depth codes, 255 off the object (mask: value < 254).
    """
    folders = [Path(f) for f in folders]
    for d in folders:
        d.mkdir(parents=True, exist_ok=True)
    for k in range(len(views)):
        png_rgb = _png(cv2.cvtColor(rgb[k], cv2.COLOR_RGB2BGR), f"{folders[0]} render {k}")
        png_dep = _png(depth[k], f"{folders[0]} depth {k}")
        for d in folders:
            (d / render_file(k)).write_bytes(png_rgb)
            (d / depth_file(k)).write_bytes(png_dep)
    view_txt = "".join(f"{a:.6f} {e:.6f}\n" for a, e in views)
    for d in folders:
        (d / VIEWS_FILE).write_text(view_txt)


def write_label_maps(folder, labels):
    """``labels_{k}.npy`` for each view: ``labels`` uint8 (V, H, W), 0 = background, k = part k."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for k, lab in enumerate(labels):
        np.save(folder / label_map_file(k), lab)


def write_rgb_cloud(folder, pcl, colours, files=(PCL_FILE, PCL_COLOURS_FILE)):
    """``pcl_1024_fps_trimesh.npy`` (N, 3) and ``..._colors.npy`` (N, 6): xyz then RGB in [0, 1].

    ``files``: the two file names (``(RESAMPLE_PCL_FILE, RESAMPLE_COLOURS_FILE)`` for the second sampling).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / files[0], pcl)
    np.save(folder / files[1], np.concatenate([pcl, colours], 1))


def write_point_sides(folder, sides):
    """``pcl_1024_fps_trimesh_sides.npy`` (N,) uint8: 1 where a ground-truth point lies on a part's
    hidden side, 0 elsewhere (the demo data; the rgb metrics split the colour error by it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / PCL_SIDES_FILE, np.asarray(sides, np.uint8))


def write_part_cloud(folder, pcl, labels, files=(PCL_FILE, PCL_LABELS_FILE)):
    """``pcl_1024_fps_trimesh.npy`` (N, 3) and ``pointcloud_labels.npy`` (N,), labels 1-based.

    ``files``: the two file names (``(RESAMPLE_PCL_FILE, RESAMPLE_LABELS_FILE)`` for the second sampling).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / files[0], pcl)
    np.save(folder / files[1], labels)


def model_folders(synset, model_id, partseg):
    """The model's folders, relative to the data root: the colour tree's rendered and cloud folders,
    then, with ``partseg``, the part tree's rendered, label-map and cloud folders."""
    rel = Path(synset) / model_id
    rgb, seg = tree_dirs(""), tree_dirs("", PART_TREE_DIR)
    out = [Path(rgb["rendered"]) / rel, Path(rgb["pcl"]) / rel]
    if partseg:
        out += [Path(seg["rendered"]) / rel, Path(seg["labels"]) / rel, Path(seg["pcl"]) / rel]
    return out


def write_model(root, synset, model_id, model):
    """Write one model (:func:`utils.datagen.build.build_model`) under ``root``: the colour tree always,
    the part tree when it has part labels; its second sampling beside the first cloud, its side
    record when it has one."""
    partseg = "labels" in model
    folders = [Path(root) / f for f in model_folders(synset, model_id, partseg)]
    write_views([folders[0]] + ([folders[2]] if partseg else []), model["views"], model["rgb"], model["depth"])
    if partseg:
        write_label_maps(folders[3], model["labels"])
    again = model.get("resample")
    write_rgb_cloud(folders[1], model["pcl"], model["colours"])
    if "sides" in model:
        write_point_sides(folders[1], model["sides"])
    if again is not None:
        write_rgb_cloud(folders[1], again["pcl"], again["colours"], files=(RESAMPLE_PCL_FILE, RESAMPLE_COLOURS_FILE))
    if partseg:
        write_part_cloud(folders[4], model["pcl"], model["point_labels"])
        if again is not None:
            write_part_cloud(
                folders[4], again["pcl"], again["point_labels"], files=(RESAMPLE_PCL_FILE, RESAMPLE_LABELS_FILE)
            )


PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _die_with_parent(parent):
    """Pool initializer: a worker ends (SIGTERM, silently) when the process that made it dies, even
    by kill -9, instead of finishing its model and then printing a BrokenPipeError traceback when
    it hands the result to nobody (Linux; elsewhere the worker only checks its parent at start)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(0)


def run_jobs(fn, jobs, workers, chunksize=1):
    """Yield ``fn(job)`` for every job of ``jobs`` (a list), in the order they finish: in up to
    ``workers`` processes (forked on Linux), or in this process when ``workers`` <= 1. Workers end
    with the process that made them (:func:`_die_with_parent`)."""
    if workers > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ctx.Pool(min(workers, len(jobs)), initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
            yield from pool.imap_unordered(fn, jobs, chunksize=chunksize)
    else:
        yield from map(fn, jobs)
