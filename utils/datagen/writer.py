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

from utils import atomic_io
from utils.data import (PCL_COLOURS_FILE, PCL_FILE, PCL_LABELS_FILE, SPLITS, VIEWS_FILE, depth_file, label_map_file,
                        render_file, split_list_file)

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, val, test
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)  # the generators' worker processes (--workers)
SPLIT_SALT = 7  # split_models seeds its permutation with (seed, synset, SPLIT_SALT)


def quantise(colour):
    """Colours as they survive an 8-bit PNG, so cloud colours equal pixel colours."""
    return np.round(np.clip(colour, 0, 1) * 255.0) / 255.0


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


def write_part_cloud(folder, pcl, labels, files=(PCL_FILE, PCL_LABELS_FILE)):
    """``pcl_1024_fps_trimesh.npy`` (N, 3) and ``pointcloud_labels.npy`` (N,), labels 1-based.

    ``files``: the two file names (``(RESAMPLE_PCL_FILE, RESAMPLE_LABELS_FILE)`` for the second sampling).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / files[0], pcl)
    np.save(folder / files[1], labels)


def split_models(ids, seed, synset, fractions=SPLIT_FRACTIONS):
    """Deterministic train/val/test partition of ``ids`` (each list sorted).

    A permutation seeded by (seed, synset) of ``ids`` in the given order; the
    val and test shares are rounded, and get at least one model each when
    there are 3 models or more.
    """
    n = len(ids)
    perm = np.random.default_rng([int(seed), int(synset), SPLIT_SALT]).permutation(n)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3:
        n_val, n_test = max(1, n_val), max(1, n_test)
    n_train = n - n_val - n_test
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
