"""A packed cache of decoded views: memory-mapped arrays read instead of PNG files (``--view_cache auto``).

Decoding the PNG views of a batch and computing their distance transforms costs more CPU than
anything else outside the network. The cache does it once per data set, split and image size and
keeps the results in one ``.npy`` file per kind of array, read through ``numpy.memmap`` (a data
set larger than memory trains without being loaded whole; the operating system keeps the pages
it needs). One folder per (task, category, split, image size, cloud size, part classes)::

    <cache_dir>/<task>_<synset>_<split>_<H>x<W>_n<N>[_c<n_cls>]/
        rgb.npy         uint8   (T, H, W, 3)  every view's render, RGB (T: views of all models)
        mask.npy        bool    (T, H, W)     its mask (depth value < 254)
        dist.npy        uint16  (T, H, W)     squared px distance to the mask (float32 when
                                              H^2 + W^2 > 65535)
        angles.npy      float64 (T, 2)        azimuth, elevation, degrees (view.txt)
        labels.npy      uint8   (T, H, W)     partseg: part-label map (int32 past 255 classes)
        pcl.npy         float32 (M, N, 3)     ground-truth cloud, renderer frame
        pcl_rgb.npy     float32 (M, N, 3)     rgb: its colours in [0, 1]
        pcl_labels.npy  int32   (M, N)        partseg: 0-based point labels
        start.npy       int64   (M + 1,)      model m's views are rows start[m] .. start[m+1]-1
        manifest.json   format, parameters, model ids, source fingerprint, every file's shape,
                        dtype, size, CRC-32, and the CRC-32 of each chunk of rows (written last)

Default ``<cache_dir>`` is ``<data_dir>/.cache`` (``--cache_dir`` moves it).

**Identical batches.** Each array holds the value the PNG path (:mod:`utils.data.pipeline`)
has before its last conversion, made by the same readers: the uint8 pixels of
:func:`~utils.data.readers.read_rgb_u8`, the boolean mask of
:func:`~utils.data.readers.read_mask_bool`, the float64 angles of ``view.txt``, the clouds as the
readers return them. The distance transform of a view (exact Euclidean, squared) is an integer
number of px^2; it is stored as uint16 and the build checks that converting it back to float32
gives exactly :func:`~utils.data.distance_map.gt_distance_transform`'s values (else the cache
stores float32). The conversions to the batch's float32 are the PNG path's
(:func:`~utils.data.readers.rgb_to_float`, ``astype``, ``np.radians``), so batches are
bit-identical (``tests/test_view_cache.py``).

**A full disk.** Before building, the free space of the cache's disk must hold the cache plus a
margin (5 % of it, at least 64 MiB: :func:`required_space`); when it does not, the build is not
started (:class:`CacheNoSpace`) and the pipeline reads the PNG files after one line saying so. The
files are written front to back with plain ``write()`` calls, never through a memory map, so a
disk that fills meanwhile raises an ``OSError`` (no space left) that is handled the same way,
instead of killing the process with SIGBUS. The unfinished folder is removed; one left by a
killed build (``.<name>.tmp-<pid>-<hex>``, its ``.owner`` lock free) is removed at the next
:func:`open_cache` on the same ``<cache_dir>``.

**Valid or rebuilt, never half read.** A cache is built in a temporary folder beside its place
and renamed into place when complete (:class:`utils.common.atomic_io.WorkDir`). It is used only
when ``manifest.json`` exists and names this format, the same parameters and model list, and the
same **source fingerprint**: the SHA-256 of the split list's content and of (path, size,
modification time and inode change time, in ns) of every file in the models' folders. Editing,
replacing or touching any source file invalidates it, and so does a copy that keeps the
modification time (``cp -p``, ``rsync -a``): the kernel sets the change time of any file written
or renamed, and nothing can set it back. (Copying the whole data set elsewhere therefore rebuilds
its cache once.) Every array file must have the shape and dtype the manifest lists and exactly
the byte size its header implies. Anything else (stale sources, a missing manifest, a truncated
or resized file) is logged with its reason and the cache is rebuilt. Changes made while a run is
going are seen by the next run.

**Damaged bytes** (a file changed in place, same size): the build records the CRC-32 of every
chunk of :data:`CHUNK_BYTES` (4 MiB) of rows of every array. Opening a cache verifies
:data:`OPEN_SAMPLE_CHUNKS` (2) chunks of each array, chosen at random (every chunk of a smaller
array), and a damaged one is rebuilt at once. Every other chunk is
verified the first time a batch reads a row of it, before the batch is made: a damaged chunk
then rebuilds the cache in the middle of the run (the batches stay the PNG path's), and never
reaches the network. Cost: one CRC-32 pass over the cache per process, spread over the first
epoch (zlib's CRC-32: ``docs/failures.md`` gives the measurement), plus at most 8 MiB an array
at open. ``python -m utils.data.cache --verify`` checks every byte at
once (each file's CRC-32).

Build it ahead (otherwise the first training run with ``--view_cache auto`` does)::

    python -m utils.data.cache --data_dir data --category chair --task rgb partseg
"""

import argparse
import errno
import hashlib
import importlib
import io
import json
import os
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from utils.common import atomic_io
from utils.data.distance_map import gt_distance_transform
from utils.data.layout import (
    N_GT_PTS,
    PCL_COLOURS_FILE,
    PCL_FILE,
    PCL_LABELS_FILE,
    SPLITS,
    VIEWS_FILE,
    _synset,
    check_views_match_renders,
    depth_file,
    label_map_file,
    list_models,
    n_parts,
    render_file,
    split_file,
    tree_dirs,
)
from utils.data.readers import (
    DataError,
    read_cloud,
    read_cloud_colours,
    read_cloud_labels,
    read_label_map,
    read_mask_bool,
    read_rgb_u8,
    read_views,
    rgb_to_float,
)

FORMAT = 2  # bump when the layout of a cache folder changes: older folders are then rebuilt
CHUNK_BYTES = 1 << 22  # rows of an array are checksummed in chunks of about this many bytes
OPEN_SAMPLE_CHUNKS = 2  # chunks of each array verified when a cache is opened (the rest when first read)
FREE_MARGIN_SHARE, FREE_MARGIN_MIN = 0.05, 64 << 20  # free space needed beyond the cache's size
MANIFEST = "manifest.json"
VIEW_CACHE_MODES = ("off", "auto")
CACHE_DIR_NAME = ".cache"
# The task targets a cache can hold, named by the task's point key (Task.point_key): per-point
# colours (their views are the renders, kept anyway, masked) or per-point part labels (their views
# get an array of label maps). A task with other targets reads the PNG files (supports()).
COLOUR_POINTS, LABEL_POINTS = "pcl_rgb", "pcl_labels"
PER_MODEL = ("start", "pcl", COLOUR_POINTS, LABEL_POINTS)  # arrays with a row per model; the rest, per view


class CacheInvalid(Exception):
    """A cache folder that must not be read (its reason is the message)."""


class CacheDamaged(CacheInvalid):
    """A chunk of an array file whose CRC-32 differs from the one recorded at build time."""


class CacheNoSpace(OSError):
    """The cache's disk has too little free space to build it (errno ENOSPC); nothing was written."""

    def __init__(self, folder, need, free, margin):
        super().__init__(
            errno.ENOSPC,
            f"not enough free space to build the view cache: it needs {need / 2**20:.1f} MiB plus a "
            f"{margin / 2**20:.1f} MiB margin, {free / 2**20:.1f} MiB are free on that disk",
            str(folder),
        )


def default_cache_dir(data_dir):
    """``<data_dir>/.cache``: where caches go without ``--cache_dir``."""
    return os.path.join(data_dir, CACHE_DIR_NAME)


def _log_stderr(msg):
    print(msg, file=sys.stderr, flush=True)


def supports(task):
    """True when a cache can hold ``task``'s targets (a :class:`utils.task.Task`, duck-typed)."""
    return getattr(task, "point_key", None) in (COLOUR_POINTS, LABEL_POINTS)


class CacheSpec:
    """What a cache holds: one task, category and split at one image and cloud size.

    ``task``: a :class:`utils.task.Task` (duck-typed: ``name``, ``data_tree``, ``point_key``)
    whose targets the cache supports (:func:`supports`).
    """

    def __init__(self, data_dir, category, split, task, img_h=64, img_w=64, n_pts=N_GT_PTS, n_cls=None):
        if not supports(task):
            raise ValueError(
                f"the view cache holds per-point colours or part labels; task "
                f"{getattr(task, 'name', task)!r} has other targets"
            )
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.data_dir, self.category, self.split = str(data_dir), category, split
        self.task, self.tree, self.point_key = task.name, task.data_tree, task.point_key
        self.synset = _synset(category)
        self.img_h, self.img_w, self.n_pts = int(img_h), int(img_w), int(n_pts)
        labels = self.point_key == LABEL_POINTS
        if labels and not n_cls:
            n_cls = n_parts(data_dir, category)
        self.n_cls = int(n_cls) if labels else None

    def params(self):
        return dict(
            task=self.task,
            synset=self.synset,
            split=self.split,
            img_h=self.img_h,
            img_w=self.img_w,
            n_pts=self.n_pts,
            n_cls=self.n_cls,
        )

    def name(self):
        tail = f"_c{self.n_cls}" if self.n_cls is not None else ""
        return f"{self.task}_{self.synset}_{self.split}_{self.img_h}x{self.img_w}_n{self.n_pts}{tail}"

    def folder(self, cache_dir=None):
        return Path(cache_dir or default_cache_dir(self.data_dir)) / self.name()

    def dist_dtype(self):
        """uint16 holds every squared distance of an H x W image (at most H^2 + W^2) up to 181 x 181."""
        return np.uint16 if self.img_h**2 + self.img_w**2 <= np.iinfo(np.uint16).max else np.float32

    def label_dtype(self):
        return np.uint8 if (self.n_cls or 0) <= np.iinfo(np.uint8).max else np.int32


# --------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------
def _model_dirs(spec, model_id):
    """The model's folders that the loaders read (rendered, pcl, and labels when that tree exists)."""
    dirs = tree_dirs(spec.data_dir, spec.tree)
    out = [os.path.join(dirs["rendered"], spec.synset, model_id), os.path.join(dirs["pcl"], spec.synset, model_id)]
    if "labels" in dirs and os.path.isdir(dirs["labels"]):
        out.append(os.path.join(dirs["labels"], spec.synset, model_id))
    return out


def source_fingerprint(spec, models):
    """(SHA-256 hex, number of files) of the split list's content and of (path relative to the data
    dir, size, modification time, inode change time, in ns) of every file in the models' folders and
    of the split list. The change time catches a file replaced by a copy that keeps its
    modification time (``cp -p``, ``rsync -a``)."""
    h = hashlib.sha256()
    n = 0
    root = os.path.abspath(spec.data_dir)

    def add(path, st):
        nonlocal n
        h.update(f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n".encode())
        n += 1

    split = split_file(spec.data_dir, spec.category, spec.split, spec.tree)
    with open(split, "rb") as f:
        h.update(hashlib.sha256(f.read()).digest())
    add(os.path.abspath(split), os.stat(split))
    for mid in models:
        for folder in _model_dirs(spec, mid):
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except FileNotFoundError:
                h.update(f"{os.path.relpath(os.path.abspath(folder), root)}\0missing\n".encode())
                continue
            for e in entries:
                if e.is_file():
                    add(os.path.abspath(e.path), e.stat())
    return h.hexdigest(), n


def _label_map_path(spec, model_id, view):
    """The label map of a view: ShapeNet_labels/..., else beside the renders (as the pipeline)."""
    dirs = tree_dirs(spec.data_dir, spec.tree)
    path = os.path.join(dirs["labels"], spec.synset, model_id, label_map_file(view))
    if not os.path.isfile(path):
        alt = os.path.join(dirs["rendered"], spec.synset, model_id, label_map_file(view))
        path = alt if os.path.isfile(alt) else path
    return path


# --------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------
class _Inexact(Exception):
    """A distance map that the compact type does not hold exactly."""


def _shapes(spec, n_models, n_views):
    """{name: (shape, dtype)} of the cache's arrays."""
    H, W, N, T = spec.img_h, spec.img_w, spec.n_pts, n_views
    out = dict(
        rgb=((T, H, W, 3), np.uint8),
        mask=((T, H, W), np.bool_),
        dist=((T, H, W), spec.dist_dtype()),
        angles=((T, 2), np.float64),
        pcl=((n_models, N, 3), np.float32),
        start=((n_models + 1,), np.int64),
    )
    if spec.point_key == LABEL_POINTS:
        out["labels"] = ((T, H, W), spec.label_dtype())
        out["pcl_labels"] = ((n_models, N), np.int32)
    else:
        out["pcl_rgb"] = ((n_models, N, 3), np.float32)
    return out


def _crc32(path, chunk=1 << 22):
    crc = 0
    with open(path, "rb") as f:
        while True:
            buf = f.read(chunk)
            if not buf:
                return crc
            crc = zlib.crc32(buf, crc)


def _npy_header(shape, dtype):
    """The bytes ``numpy.save`` puts before the data of a C-ordered array (format 1.0)."""
    out = io.BytesIO()
    header = dict(descr=np.lib.format.dtype_to_descr(np.dtype(dtype)), fortran_order=False, shape=tuple(shape))
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue()


def chunk_rows(shape, dtype):
    """Rows of an array of ``shape`` and ``dtype`` per checksummed chunk (about CHUNK_BYTES)."""
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    return max(1, CHUNK_BYTES // max(1, row_bytes))


def required_space(spec, n_models, n_views, dist_dtype=None):
    """(bytes of the cache's array files, margin): the free space a build asks for is their sum."""
    shapes = _shapes(spec, n_models, n_views)
    if dist_dtype is not None:
        shapes["dist"] = (shapes["dist"][0], dist_dtype)
    need = sum(
        len(_npy_header(shape, dt)) + int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
        for shape, dt in shapes.values()
    )
    need += 1 << 20  # the manifest (chunk checksums included), generously
    return need, max(FREE_MARGIN_MIN, int(FREE_MARGIN_SHARE * need))


class _ArrayFile:
    """One ``.npy`` file written front to back with plain ``write()`` calls, never through a memory
    map (a full disk then raises OSError ENOSPC, where a memory-mapped store dies of SIGBUS), with
    the CRC-32 of the whole file and of every chunk of :func:`chunk_rows` rows."""

    def __init__(self, path, shape, dtype):
        self.path, self.shape, self.dtype = Path(path), tuple(shape), np.dtype(dtype)
        self.chunk_rows = chunk_rows(self.shape, self.dtype)
        self.rows, self.chunks, self._part, self._part_rows = 0, [], 0, 0
        header = _npy_header(self.shape, self.dtype)
        self.crc = zlib.crc32(header)
        self._f = open(self.path, "wb")
        self._f.write(header)

    def write(self, rows):
        """Append ``rows`` (converted to the file's dtype as an assignment would: (k,) + shape[1:])."""
        a = np.ascontiguousarray(np.asarray(rows).astype(self.dtype, copy=False))
        if a.shape[1:] != self.shape[1:] or self.rows + len(a) > self.shape[0]:
            raise ValueError(f"{self.path.name}: rows of shape {a.shape} do not fit {self.shape} after {self.rows}")
        flat = a.reshape(len(a), -1).view(np.uint8)
        i = 0
        while i < len(a):
            take = min(len(a) - i, self.chunk_rows - self._part_rows)
            part = flat[i : i + take]
            self._part = zlib.crc32(part, self._part)
            self.crc = zlib.crc32(part, self.crc)
            self._f.write(part)
            self._part_rows += take
            i += take
            if self._part_rows == self.chunk_rows:
                self.chunks.append(self._part)
                self._part, self._part_rows = 0, 0
        self.rows += len(a)

    def finish(self):
        """Close the file (a full disk may show only here); the manifest's record of it."""
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.path.name}: {self.rows} rows written, {self.shape[0]} expected")
        if self._part_rows:
            self.chunks.append(self._part)
            self._part, self._part_rows = 0, 0
        self._f.close()
        return dict(
            shape=list(self.shape),
            dtype=self.dtype.str,
            bytes=self.path.stat().st_size,
            crc32=self.crc,
            chunk_rows=self.chunk_rows,
            chunk_crc32=self.chunks,
        )

    def close(self):
        """Close without raising (after an error: the buffered rest cannot be written either)."""
        if not self._f.closed:
            try:
                self._f.close()
            except OSError:
                pass


def _write_arrays(spec, models, angles, folder, dist_dtype):
    """Write the array files of ``folder`` model by model (at most one model's views in memory);
    returns the manifest's ``files``."""
    dirs = tree_dirs(spec.data_dir, spec.tree)
    H, W = spec.img_h, spec.img_w
    counts = [len(a) for a in angles]
    shapes = _shapes(spec, len(models), sum(counts))
    shapes["dist"] = (shapes["dist"][0], dist_dtype)
    out = {}
    try:
        for k, (shape, dt) in shapes.items():
            with atomic_io.naming(folder / f"{k}.npy"):
                out[k] = _ArrayFile(folder / f"{k}.npy", shape, dt)
        arr = {k: _Named(f) for k, f in out.items()}
        arr["start"].write(np.concatenate([[0], np.cumsum(counts)]))
        for m, mid in enumerate(models):
            rdir = os.path.join(dirs["rendered"], spec.synset, mid)
            pdir = os.path.join(dirs["pcl"], spec.synset, mid)
            views = range(counts[m])
            arr["angles"].write(angles[m])
            arr["rgb"].write(np.stack([read_rgb_u8(os.path.join(rdir, render_file(v)), H, W) for v in views]))
            masks = np.stack([read_mask_bool(os.path.join(rdir, depth_file(v)), H, W) for v in views])
            arr["mask"].write(masks)
            dist = gt_distance_transform(masks.astype(np.float32))  # what the PNG path computes per batch
            compact = dist.astype(dist_dtype)
            if not np.array_equal(compact.astype(np.float32), dist):
                raise _Inexact(mid)
            arr["dist"].write(compact)
            arr["pcl"].write(read_cloud(os.path.join(pdir, PCL_FILE), spec.n_pts)[None])
            if "pcl_rgb" in out:
                arr["pcl_rgb"].write(read_cloud_colours(os.path.join(pdir, PCL_COLOURS_FILE), spec.n_pts)[None])
            if "labels" in out:
                maps = [read_label_map(_label_map_path(spec, mid, v), H, W, spec.n_cls) for v in views]
                arr["labels"].write(np.stack(maps))
            if "pcl_labels" in out:
                labels = read_cloud_labels(os.path.join(pdir, PCL_LABELS_FILE), spec.n_pts, spec.n_cls)
                arr["pcl_labels"].write(labels[None])
        return {k: a.finish() for k, a in arr.items()}
    finally:
        for f in out.values():
            f.close()


class _Named:
    """An :class:`_ArrayFile` whose OSErrors name its file (a failed ``write()`` names none)."""

    def __init__(self, f):
        self.f = f

    def write(self, rows):
        with atomic_io.naming(self.f.path):
            self.f.write(rows)

    def finish(self):
        with atomic_io.naming(self.f.path):
            return self.f.finish()


def check_free_space(spec, n_models, n_views, folder):
    """Raise :class:`CacheNoSpace` unless the disk of ``folder`` has room for the cache and its margin."""
    need, margin = required_space(spec, n_models, n_views)
    free = shutil.disk_usage(folder).free
    if free < need + margin:
        raise CacheNoSpace(folder, need, free, margin)


def build(spec, models, folder, fingerprint, log=_log_stderr, reason=None):
    """Decode every view of ``models`` into a new cache at ``folder`` (replacing what is there).

    Reads with the PNG path's readers (DataError naming the file for bad data); checks the free
    space first (:class:`CacheNoSpace`), then logs that it builds (and ``reason``); writes into a
    temporary folder beside ``folder``, renamed into place when complete, removed on any error.
    Returns the manifest.
    """
    folder = Path(folder)
    t0 = time.time()
    angles = []
    dirs = tree_dirs(spec.data_dir, spec.tree)
    for mid in models:
        path = os.path.join(dirs["rendered"], spec.synset, mid, VIEWS_FILE)
        a = read_views(path)
        check_views_match_renders(path, len(a))
        angles.append(a)
    folder.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(spec, len(models), sum(len(a) for a in angles), folder.parent)
    log(f"view cache: building {folder} ({len(models)} models" + (f"; {reason})" if reason else ")"))
    with atomic_io.WorkDir(folder) as work:
        for dist_dtype in dict.fromkeys([spec.dist_dtype(), np.float32]):
            try:
                files = _write_arrays(spec, models, angles, work.path, dist_dtype)
                break
            except _Inexact as err:  # not expected (squared distances of pixel centres are integers)
                log(f"view cache: distance map of {err} not exact as {np.dtype(dist_dtype).name}; storing float32")
        manifest = dict(
            format=FORMAT,
            params=spec.params(),
            models=list(models),
            fingerprint=fingerprint[0],
            source_files=fingerprint[1],
            files=files,
            built=time.strftime("%Y-%m-%d %H:%M:%S"),
            build_seconds=round(time.time() - t0, 2),
        )
        atomic_io.write_json(work.path / MANIFEST, manifest, indent=None)
        work.commit()
    return manifest


# --------------------------------------------------------------------------
# checking and reading
# --------------------------------------------------------------------------
def _map(path, shape, dtype):
    """Read-only memmap of a .npy file after checking its header and its exact size (CacheInvalid)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                raise ValueError(f".npy format version {version}")
            got_shape, fortran, got_dtype = read_header(f)
            offset = f.tell()
    except FileNotFoundError:
        raise CacheInvalid(f"{path.name} is missing") from None
    except (OSError, ValueError) as err:
        raise CacheInvalid(f"{path.name} has no valid .npy header ({err})") from None
    if list(got_shape) != list(shape) or got_dtype != np.dtype(dtype) or fortran:
        raise CacheInvalid(
            f"{path.name} holds {got_dtype} {tuple(got_shape)}, the manifest says {np.dtype(dtype)} {tuple(shape)}"
        )
    size, want = path.stat().st_size, offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size != want:
        raise CacheInvalid(f"{path.name} is {size} bytes, expected {want} (truncated or damaged)")
    if want == offset:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))


def check(folder, spec, models, fingerprint):
    """(manifest, {name: read-only array}) of a valid cache at ``folder``; CacheInvalid otherwise."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise CacheInvalid("not built yet")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise CacheInvalid(f"{MANIFEST} is missing (an incomplete cache)") from None
    except (OSError, ValueError) as err:
        raise CacheInvalid(f"{MANIFEST} cannot be read ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CacheInvalid(
            f"format {manifest.get('format') if isinstance(manifest, dict) else None}, this code reads format {FORMAT}"
        )
    if manifest.get("params") != spec.params():
        raise CacheInvalid(f"built for {manifest.get('params')}, needed {spec.params()}")
    if manifest.get("models") != list(models):
        raise CacheInvalid("the split lists other models")
    if manifest.get("fingerprint") != fingerprint[0]:
        raise CacheInvalid(
            f"source files changed ({fingerprint[1]} files now, {manifest.get('source_files')} "
            "when built; the split list, a size, or a modification or change time differs: a file "
            "edited, replaced, touched or copied over)"
        )
    want = _shapes(spec, len(models), None)
    files = manifest.get("files") or {}
    if set(files) != set(want):
        raise CacheInvalid(f"holds arrays {sorted(files)}, expected {sorted(want)}")
    arrays = {}
    try:
        for name, info in files.items():
            arrays[name] = _map(folder / f"{name}.npy", info["shape"], np.dtype(info["dtype"]))
            n_chunks = -(-int(info["shape"][0]) // int(info["chunk_rows"]))
            if info["chunk_rows"] < 1 or len(info["chunk_crc32"]) != n_chunks:
                raise CacheInvalid(f"{MANIFEST} is malformed (the chunk checksums of {name}.npy)")
    except (KeyError, TypeError, ValueError) as err:
        raise CacheInvalid(f"{MANIFEST} is malformed ({err})") from None
    start, T = arrays["start"], arrays["rgb"].shape[0]
    if (
        start.shape != (len(models) + 1,)
        or start[0] != 0
        or start[-1] != T
        or np.any(np.diff(start) < 1)
        or arrays["pcl"].shape[:2] != (len(models), spec.n_pts)
        or any(a.shape[0] != T for k, a in arrays.items() if k not in PER_MODEL)
        or arrays["rgb"].shape[1:3] != (spec.img_h, spec.img_w)
    ):
        raise CacheInvalid("array shapes disagree with each other or with the parameters")
    verify_sample(manifest, arrays)
    return manifest, arrays


def verify_chunk(name, array, info, k):
    """CacheDamaged unless chunk ``k`` of ``array`` (rows k * chunk_rows ...) has its recorded CRC-32."""
    per = int(info["chunk_rows"])
    part = np.ascontiguousarray(array[k * per : (k + 1) * per])
    if zlib.crc32(part.reshape(-1).view(np.uint8)) != info["chunk_crc32"][k]:
        last = min(len(array), (k + 1) * per) - 1
        raise CacheDamaged(
            f"{name}.npy rows {k * per}..{last}: CRC-32 differs from the one recorded at build (damaged)"
        )


def verify_sample(manifest, arrays, n=None, rng=None):
    """Verify ``n`` (default :data:`OPEN_SAMPLE_CHUNKS`) random chunks of every array (all chunks of
    an array with no more); CacheDamaged names the first bad one. Returns {name: chunks verified}."""
    n = OPEN_SAMPLE_CHUNKS if n is None else n
    rng = np.random.default_rng() if rng is None else rng  # another sample every time
    done = {}
    for name, info in manifest["files"].items():
        n_chunks = len(info["chunk_crc32"])
        ks = range(n_chunks) if n_chunks <= n else sorted(rng.choice(n_chunks, n, replace=False))
        for k in ks:
            verify_chunk(name, arrays[name], info, int(k))
        done[name] = [int(k) for k in ks]
    return done


def verify_checksums(folder, manifest):
    """CacheInvalid unless every file's CRC-32 equals the manifest's (reads every byte)."""
    for name, info in manifest["files"].items():
        if _crc32(Path(folder) / f"{name}.npy") != info.get("crc32"):
            raise CacheInvalid(f"{name}.npy: CRC-32 differs from the manifest's (damaged)")


class ViewCache:
    """The arrays of one valid cache folder, and the batch the PNG path would make from them."""

    def __init__(self, folder, manifest, arrays):
        self.folder, self.manifest = Path(folder), manifest
        self.arrays = {k: np.asarray(a) for k, a in arrays.items()}  # plain views of the maps: faster indexing
        self.start = np.asarray(arrays["start"])  # small: kept in memory
        # chunks whose CRC-32 this object verified (check() verified a sample before)
        self._verified = {k: np.zeros(len(f["chunk_crc32"]), bool) for k, f in manifest["files"].items()}

    def verify_rows(self, name, rows):
        """Verify (once per process) the chunks of array ``name`` that hold ``rows``: CacheDamaged
        names a chunk whose CRC-32 differs from the build's. Threads may call it together (a chunk
        is then at worst verified twice)."""
        info = self.manifest["files"][name]
        ids = np.unique(np.asarray(rows, np.int64).reshape(-1) // int(info["chunk_rows"]))
        done = self._verified[name]
        for k in ids[~done[ids]]:
            verify_chunk(name, self.arrays[name], info, int(k))
            done[k] = True

    def verified_share(self):
        """The share of the cache's chunks verified so far (0..1)."""
        n = sum(len(v) for v in self._verified.values())
        return sum(int(v.sum()) for v in self._verified.values()) / max(n, 1)

    @property
    def n_models(self):
        return len(self.start) - 1

    def angles(self, m):
        """View angles of model ``m``: float64 (V_m, 2) degrees (azimuth, elevation)."""
        return np.asarray(self.arrays["angles"][self.start[m] : self.start[m + 1]])

    def batch(self, models, input_views, views):
        """Arrays of a batch, exactly as the PNG path computes them.

        Args:
            models: int (B,) model indices; input_views: int (B,); views: int (B, V) per model.
        Returns:
            dict: 'image' float32 (B,H,W,3) in [0,1]; 'input_az', 'input_el' float32 (B,) radians;
            'mask', 'dist' float32 (B,V,H,W); 'az', 'el' float32 (B,V) radians; 'pcl' float32
            (B,N,3); rgb: 'rgb' float32 (B,V,H,W,3) (0 off the mask), 'pcl_rgb' float32 (B,N,3);
            partseg: 'labels' int32 (B,V,H,W), 'pcl_labels' int32 (B,N).
        """
        a = self.arrays
        models = np.asarray(models, np.int64)
        first = self.start[models]
        rows_in = first + np.asarray(input_views, np.int64)
        rows = first[:, None] + np.asarray(views, np.int64)
        # every byte below is verified before it is used (CacheDamaged otherwise)
        both = np.concatenate([rows_in, rows.reshape(-1)])
        used = {name: rows for name in a if name not in PER_MODEL}  # per view: the supervision views
        used.update({name: models for name in a if name in PER_MODEL and name != "start"})
        used["angles"] = both
        used["rgb"] = both if "pcl_rgb" in a else rows_in  # the input image (and the colour views)
        for name, r in used.items():
            self.verify_rows(name, r)
        ang_in, ang = a["angles"][rows_in], a["angles"][rows]
        fg = a["mask"][rows]
        masks = fg.astype(np.float32)
        out = dict(
            image=rgb_to_float(a["rgb"][rows_in]),
            input_az=np.radians(ang_in[:, 0]).astype(np.float32),
            input_el=np.radians(ang_in[:, 1]).astype(np.float32),
            az=np.radians(ang[..., 0]).astype(np.float32),
            el=np.radians(ang[..., 1]).astype(np.float32),
            mask=masks,
            dist=a["dist"][rows].astype(np.float32),
            pcl=np.array(a["pcl"][models], np.float32),
        )
        if "pcl_rgb" in a:
            out["rgb"] = rgb_to_float(a["rgb"][rows])
            # x * 0 or 1, as the PNG path's rgb * mask[..., None], without a length-3 broadcast loop
            out["rgb"] *= np.repeat(fg[..., None], 3, axis=-1)
            out["pcl_rgb"] = np.array(a["pcl_rgb"][models], np.float32)
        if "labels" in a:
            out["labels"] = a["labels"][rows].astype(np.int32)
            out["pcl_labels"] = np.array(a["pcl_labels"][models], np.int32)
        return out


def open_cache(spec, models=None, cache_dir=None, rebuild=False, log=_log_stderr):
    """The valid cache of ``spec``, built (or rebuilt, with the reason logged) when needed.

    Args:
        spec: :class:`CacheSpec`; models: the split's model ids (default: read from the split list).
        cache_dir: folder of the caches (default ``<data_dir>/.cache``); rebuild: build even if valid.
    Folders left in ``cache_dir`` by killed builds are removed first (one line each).

    Raises:
        DataError: a source file is bad (from the readers, naming it). OSError: the cache folder
        cannot be written; :class:`CacheNoSpace` (an OSError): its disk has too little free space.
    """
    models = list_models(spec.data_dir, spec.category, spec.split, spec.tree) if models is None else list(models)
    folder = spec.folder(cache_dir)
    atomic_io.remove_leftovers(folder.parent, warn=lambda text: log(f"view cache: {text}"))
    fingerprint = source_fingerprint(spec, models)
    if not rebuild:
        try:
            return ViewCache(folder, *check(folder, spec, models, fingerprint))
        except CacheInvalid as err:
            reason = str(err)
    else:
        reason = "rebuild asked for"
    try:
        build(spec, models, folder, fingerprint, log, reason)
    except OSError as err:
        try:  # another process may have put a valid cache in place meanwhile
            return ViewCache(folder, *check(folder, spec, models, fingerprint))
        except CacheInvalid:
            raise err from None
    cache = ViewCache(folder, *check(folder, spec, models, fingerprint))
    log(
        f"view cache: {folder.name} ready: {cache.n_models} models, {len(cache.arrays['rgb'])} views, "
        f"{sum(f['bytes'] for f in cache.manifest['files'].values()) / 2**20:.1f} MiB, "
        f"built in {cache.manifest['build_seconds']} s"
    )
    return cache


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------
def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m utils.data.cache",
        description="Build (or check) the packed view caches that training reads with --view_cache auto: "
        "decoded views, masks, distance maps, angles and clouds as memory-mapped .npy files. A "
        "cache whose sources changed, or that is damaged, is rebuilt.",
    )
    p.add_argument("--data_dir", required=True, help="root of the data layout (see data/README.md)")
    p.add_argument("--category", default="chair", help="category name or synset id (default: %(default)s)")
    p.add_argument("--split", nargs="+", choices=SPLITS, default=list(SPLITS), help="splits (default: all)")
    p.add_argument(
        "--task",
        nargs="+",
        required=True,
        help="tasks whose caches to build: names of task folders (e.g. the colour and part-label tasks)",
    )
    p.add_argument("--IMG_H", type=int, default=64, help="image height in px, as training (default: 64)")
    p.add_argument("--IMG_W", type=int, default=64, help="image width in px (default: 64)")
    p.add_argument(
        "--n_cls",
        type=int,
        default=0,
        help="partseg part classes, as training's --n_cls (default: 0 = from the data set)",
    )
    p.add_argument("--cache_dir", default=None, help="folder of the caches (default: <data_dir>/.cache)")
    p.add_argument("--rebuild", action="store_true", help="rebuild even when the cache is valid")
    p.add_argument("--verify", action="store_true", help="also check every file's CRC-32 (reads all of it)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    status = 0
    for task in args.task:
        for split in args.split:
            try:
                task_obj = importlib.import_module(f"{task}.task").TASK  # the task folder's plug-in
                spec = CacheSpec(
                    args.data_dir, args.category, split, task_obj, args.IMG_H, args.IMG_W, n_cls=args.n_cls or None
                )
                cache = open_cache(spec, cache_dir=args.cache_dir, rebuild=args.rebuild)
                if args.verify:
                    try:
                        verify_checksums(cache.folder, cache.manifest)
                    except CacheInvalid as err:
                        print(f"view cache: {cache.folder}: {err}; rebuilding", file=sys.stderr)
                        cache = open_cache(spec, cache_dir=args.cache_dir, rebuild=True)
                print(f"{task} {split}: {cache.folder} ({cache.n_models} models, {len(cache.arrays['rgb'])} views)")
            except (DataError, OSError, ImportError, ValueError) as err:
                print(f"view cache: {task} {split}: {err}", file=sys.stderr)
                status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
