"""Writers of the data layout that :mod:`utils.data` reads (see ``data/README.md``).

Shared by the demo generator (:mod:`utils.datagen.demo_data`) and the mesh-collection
renderer (:mod:`utils.datagen.mesh_dataset`), so both write byte for byte the same kind
of files: 8-bit PNG renders and depth codes, ``view.txt`` in degrees, ``.npy``
clouds in the ShapeNet frame, split lists.
"""
import multiprocessing
import os
import sys
from pathlib import Path

import cv2
import numpy as np

from utils import atomic_io, cli, lock
from utils.data import (PCL_COLOURS_FILE, PCL_FILE, PCL_LABELS_FILE, SPLITS, VIEWS_FILE, depth_file, label_map_file,
                        render_file, split_list_file)
from utils.data.layout import PCL_SIDES_FILE

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, val, test
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)  # the generators' worker processes (--workers)
SPLIT_SALT = 7  # split_models seeds its permutation with (seed, synset, SPLIT_SALT)


def quantise(colour):
    """Colours as they survive an 8-bit PNG, so cloud colours equal pixel colours."""
    return np.round(np.clip(colour, 0, 1) * 255.0) / 255.0


class DataFolderInUse(lock.FolderInUse):
    """Another data tool (make_demo_data.py, make_dataset.py) is writing into the same --out."""


def lock_data_folder(out):
    """The data tools' exclusive lock on their output folder (utils.lock; refused naming the holder)."""
    return lock.FolderLock(out, "data folder", "data tool", error=DataFolderInUse,
                           advice="Wait for it to finish or stop it, or choose another --out", remove=True)


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


def split_counts(n, fractions=SPLIT_FRACTIONS):
    """(n_train, n_val, n_test) for ``n`` models: non-negative, summing to ``n``.

    The val and test shares are rounded, and get at least one model each when there are 3
    models or more and their fraction is not zero; a zero fraction always gets none. The rest
    goes to train, or, when the train fraction is zero, to test (or val).
    """
    f_train, f_val, f_test = (float(f) for f in fractions)
    if min(f_train, f_val, f_test) < 0:
        raise ValueError(f"split fractions must be non-negative, got {tuple(fractions)}")
    n_val = int(round(f_val * n)) if f_val > 0 else 0
    n_test = int(round(f_test * n)) if f_test > 0 else 0
    if n >= 3:
        n_val, n_test = (max(1, n_val) if f_val > 0 else 0), (max(1, n_test) if f_test > 0 else 0)
    excess = n_val + n_test - n  # rounding up both: the larger share gives way
    if excess > 0:
        if n_val >= n_test:
            n_val -= excess
        else:
            n_test -= excess
    n_train = n - n_val - n_test
    if f_train == 0 and n_train:  # nothing may go to train: the rest to test (or val)
        if f_test > 0:
            n_test += n_train
        else:
            n_val += n_train
        n_train = 0
    elif f_train > 0 and n_train == 0 and n >= 3:  # a train share gets a model too
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
        n_train = 1
    return n_train, n_val, n_test


def split_models(ids, seed, synset, fractions=SPLIT_FRACTIONS):
    """Deterministic train/val/test partition of ``ids`` (each list sorted): disjoint, covering
    ``ids``, sizes from :func:`split_counts`.

    A permutation seeded by (seed, synset) of ``ids`` in the given order, cut at those sizes.
    """
    n = len(ids)
    perm = np.random.default_rng([int(seed), int(synset), SPLIT_SALT]).permutation(n)
    n_train, n_val, _ = split_counts(n, fractions)
    pick = lambda a, b: sorted(ids[i] for i in perm[a:b])  # noqa: E731
    return {"train": pick(0, n_train), "val": pick(n_train, n_train + n_val), "test": pick(n_train + n_val, n)}


def write_splits(folder, synset, splits, ext=".txt"):
    """``<synset>_{train,val,test}_list.txt`` (one id per line) or ``.npy`` (1-D string array)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        ids = splits.get(name, [])
        path = folder / split_list_file(synset, name, ext)
        if ext == ".npy":
            np.save(path, np.array(ids, dtype=str))
        else:
            atomic_io.write_text(path, "".join(i + "\n" for i in ids))


def run_jobs(fn, jobs, workers, chunksize=1):
    """Yield ``fn(job)`` for every job of ``jobs`` (a list), in the order they finish: in up to
    ``workers`` processes (forked on Linux), or in this process when ``workers`` <= 1."""
    if workers > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ctx.Pool(min(workers, len(jobs))) as pool:
            yield from pool.imap_unordered(fn, jobs, chunksize=chunksize)
    else:
        yield from map(fn, jobs)
