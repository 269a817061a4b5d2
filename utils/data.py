"""Data loaders for the original DIFFER layout and the batch pipeline (numpy only).

Layout (``data/README.md`` has the full description)::

    <data_dir>/ShapeNet_rendered/<synset>/<model>/render_{k}.png, depth_{k}.png, view.txt
    <data_dir>/ShapeNet_pcl/<synset>/<model>/pcl_1024_fps_trimesh.npy            (N, 3)
    <data_dir>/ShapeNet_pcl/<synset>/<model>/pcl_1024_fps_trimesh_colors.npy     (N, 6)
    <data_dir>/splits/<synset>_{train,val,test}_list.{txt,npy}
    <data_dir>/partseg/ShapeNet_rendered/...       as above (the input images)
    <data_dir>/partseg/ShapeNet_labels/<synset>/<model>/labels_{k}.npy   (H, W), 0 = background
    <data_dir>/partseg/ShapeNet_pcl/<synset>/<model>/pcl_1024_fps_trimesh.npy, pointcloud_labels.npy
    <data_dir>/partseg/splits/<synset>_{train,val,test}_list.{txt,npy}

Conventions, following the original loader:

* ``view.txt`` line k: "azimuth elevation [anything else]" in degrees for view
  k; the batch holds them in radians, exactly the ``az``/``el`` that
  :func:`utils.camera.world2cam` expects.
* ``depth_{k}.png``: a pixel is foreground where its (first channel) value is
  < 254.
* Clouds are stored in the ShapeNet frame and rotated into the renderer frame
  by :func:`utils.shapenet.preprocess_pcl_gt` on loading.
* ``pointcloud_labels.npy`` is 1-based; batches hold 0-based part indices.

Every problem with the files raises :class:`DataError` naming the file and what
was expected. ``.npy`` files are always loaded with ``allow_pickle=False``.
"""
import json
import math
import os
import re
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from utils import shapenet
from utils.config import SPLITS, TASKS
from utils.distance_map import gt_distance_transform

VIEW_MODES = ("random", "fixed")
# Folder and file names of the layout (the writers, utils/data_writer.py, use the same ones).
PARTSEG_DIR = "partseg"  # root of the partseg task's tree inside the data root
RENDERED_DIR, PCL_DIR, LABELS_DIR, SPLITS_DIR = "ShapeNet_rendered", "ShapeNet_pcl", "ShapeNet_labels", "splits"
N_GT_PTS = 1024  # points of every ground-truth cloud: the file names below say so
PCL_FILE = f"pcl_{N_GT_PTS}_fps_trimesh.npy"
PCL_COLOURS_FILE = f"pcl_{N_GT_PTS}_fps_trimesh_colors.npy"
PCL_LABELS_FILE = "pointcloud_labels.npy"
VIEWS_FILE = "view.txt"
PART_NAMES_FILE = "part_names.json"
MASK_THRESHOLD = 254  # depth_{k}.png: foreground where value < 254
# Salt of the seed of each epoch's sample order, rng([seed, epoch, EPOCH_ORDER_SALT]): it keeps that
# stream apart from the per-sample generators, rng([seed, step, i]) with i < batch size.
EPOCH_ORDER_SALT = 0x5EED
CACHED_EPOCH_ORDERS = 4  # permutations kept in memory (an epoch boundary may fall inside a batch)


def render_file(view):
    """``render_{k}.png``: the RGB render of view k."""
    return f"render_{view}.png"


def depth_file(view):
    """``depth_{k}.png``: the depth code of view k (mask: value < MASK_THRESHOLD)."""
    return f"depth_{view}.png"


def label_map_file(view):
    """``labels_{k}.npy``: the part-label map of view k (partseg)."""
    return f"labels_{view}.npy"


def split_list_file(synset, split, ext=".txt"):
    """``<synset>_<split>_list.txt`` (or ``.npy``)."""
    return f"{synset}_{split}_list{ext}"


class DataError(ValueError):
    """A data file is missing, unreadable or not what the loaders expect."""


# --------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------
def check_data_dir(data_dir, task="rgb"):
    """DataError unless ``data_dir`` is an existing folder holding the task's tree."""
    if not os.path.isdir(data_dir):
        what = "is not a folder" if os.path.exists(data_dir) else "does not exist"
        raise DataError(f"data directory {os.path.abspath(data_dir)} {what} (--data_dir); expected the layout "
                        "described in data/README.md (make the demo set with python data/make_demo_data.py)")
    root = _task_root(data_dir, task)
    if not os.path.isdir(root):
        raise DataError(f"data directory {os.path.abspath(data_dir)} has no partseg/ folder; the partseg task "
                        "expects partseg/ShapeNet_rendered, partseg/ShapeNet_pcl, partseg/splits there")


def _task_root(data_dir, task):
    return os.path.join(data_dir, PARTSEG_DIR) if task == "partseg" else data_dir


def task_dirs(data_dir, task):
    """Folders of a task's tree: dict with 'rendered', 'pcl', 'labels' (partseg), 'splits' (a list
    of candidate folders, first match wins; writers use the first)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    root = _task_root(data_dir, task)
    rendered = os.path.join(root, RENDERED_DIR)
    dirs = dict(rendered=rendered, pcl=os.path.join(root, PCL_DIR),
                splits=[os.path.join(root, SPLITS_DIR), os.path.join(rendered, SPLITS_DIR)])
    if task == "partseg":
        dirs["labels"] = os.path.join(root, LABELS_DIR)
    return dirs


def _synset(category):
    try:
        return shapenet.synset_id(category)
    except ValueError as err:
        raise DataError(str(err)) from None


def split_file(data_dir, category, split, task="rgb"):
    """Path of the split list ``<synset>_<split>_list.txt`` (or ``.npy``); DataError when absent."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    syn = _synset(category)
    check_data_dir(data_dir, task)
    tried = []
    for folder in task_dirs(data_dir, task)["splits"]:
        for ext in (".txt", ".npy"):
            path = os.path.join(folder, split_list_file(syn, split, ext))
            if os.path.isfile(path):
                return path
            tried.append(path)
    found = sorted(os.path.join(folder, name) for folder in task_dirs(data_dir, task)["splits"]
                   if os.path.isdir(folder) for name in os.listdir(folder)
                   if name.startswith(f"{syn}_") and "_list." in name)
    raise DataError(f"no split file for category {category} ({syn}), split '{split}', task '{task}': "
                    f"expected one of {', '.join(tried)}; split lists found for this category: "
                    f"{', '.join(found) if found else 'none'}")


_PLAIN_NAME = re.compile(r"[^/\\\x00]+")


def _check_model_id(path, mid):
    """A model id must be a plain folder name: no separators, not '.', '..' or absolute."""
    if not _PLAIN_NAME.fullmatch(mid) or mid in (".", ".."):
        raise DataError(f"{path}: model id {mid!r} is not a plain folder name; expected names like "
                        "1a6f615e8b1b5ae4dbbc9440457e303e (no '/', '\\', '.' or '..')")


def read_split(path):
    """Model ids listed by a split file (.txt: one per line; .npy: 1-D array of strings).

    Every id must be a plain folder name (DataError otherwise), so a split file
    can never make the loaders read outside the data directory.
    """
    if path.endswith(".npy"):
        arr = load_npy(path)
        if arr.ndim != 1 or arr.dtype.kind not in "US":
            raise DataError(f"{path}: expected a 1-D array of model-id strings, got {arr.dtype} {arr.shape}")
        ids = [a.decode() if isinstance(a, bytes) else str(a) for a in arr.tolist()]
    else:
        try:
            with open(path) as f:
                ids = f.read().split()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: cannot read split list ({err})") from None
    ids = [i.strip() for i in ids if i.strip()]
    for mid in ids:
        _check_model_id(path, mid)
    return ids


def list_models(data_dir, category, split, task="rgb"):
    """Model ids of a category's split, in file order, after checking the folders exist.

    Raises DataError for a missing or empty split file, a missing or empty
    category folder, or a listed model without its rendered / cloud (/ label)
    folder.
    """
    path = split_file(data_dir, category, split, task)
    ids = read_split(path)
    if not ids:
        raise DataError(f"{path}: split list is empty; expected at least one model id")
    syn = _synset(category)
    dirs = task_dirs(data_dir, task)
    for key in ("rendered", "pcl", "labels"):
        if key not in dirs or (key == "labels" and not os.path.isdir(dirs[key])):
            continue  # without a ShapeNet_labels tree the label maps sit beside the renders
        cat_dir = os.path.join(dirs[key], syn)
        if not os.path.isdir(cat_dir):
            raise DataError(f"category folder {cat_dir} is missing; expected one sub-folder per model of "
                            f"{category}")
        if not any(e.is_dir() for e in os.scandir(cat_dir)):
            raise DataError(f"category folder {cat_dir} is empty; expected one sub-folder per model of "
                            f"{category}")
        for mid in ids:
            if not os.path.isdir(os.path.join(cat_dir, mid)):
                raise DataError(f"model folder {os.path.join(cat_dir, mid)} is missing (listed in {path})")
    return ids


def n_parts(data_dir, category):
    """Number of part classes of a category (without background).

    Read from ``<data_dir>/partseg/part_names.json`` (written by the demo
    generator) when it lists the category, else from the part counts of the
    ShapeNet part annotations (:data:`utils.shapenet.PART_COUNTS`).
    """
    return len(part_names(data_dir, category))


def part_names(data_dir, category):
    """Part names in label order (label k+1 in files, index k in batches)."""
    syn = _synset(category)
    path = os.path.join(data_dir, PARTSEG_DIR, PART_NAMES_FILE)
    if os.path.isfile(path):
        try:
            with open(path) as f:
                table = json.load(f)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: expected a JSON object synset -> list of part names ({err})") from None
        if syn in table:
            return list(table[syn])
    name = shapenet.category_name(syn)
    if name in shapenet.DEMO_PART_NAMES:
        return list(shapenet.DEMO_PART_NAMES[name])
    if name in shapenet.PART_COUNTS:
        return [f"part{k + 1}" for k in range(shapenet.PART_COUNTS[name])]
    raise DataError(f"no part annotation for category {name}: neither {path} nor the ShapeNet part "
                    f"table lists it")


def has_dataset(data_dir, category, task="rgb"):
    """True when the train split of ``category`` exists and lists readable model folders."""
    try:
        list_models(data_dir, category, "train", task)
        return True
    except (DataError, OSError):
        return False


# --------------------------------------------------------------------------
# single files
# --------------------------------------------------------------------------
def _require(path):
    if not os.path.isfile(path):
        raise DataError(f"missing file {path}")


def load_npy(path, shape=None, kinds=None):
    """``np.load(path, allow_pickle=False)`` with checks.

    Args:
        shape: expected shape, ``None`` entries match any size.
        kinds: accepted ``dtype.kind`` letters (e.g. "iu" for integers).
    """
    _require(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:  # corrupt file, pickled objects, ...
        raise DataError(f"{path}: cannot load as a plain .npy array ({type(err).__name__}: {err})") from None
    if shape is not None and (arr.ndim != len(shape) or
                              any(s is not None and s != a for s, a in zip(shape, arr.shape))):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise DataError(f"{path}: expected shape {want}, got {arr.shape}")
    if kinds is not None and arr.dtype.kind not in kinds:
        raise DataError(f"{path}: expected dtype kind in '{kinds}', got {arr.dtype}")
    return arr


def read_views(path):
    """Angles of every view from ``view.txt``: float64 (V, 2) degrees (azimuth, elevation)."""
    _require(path)
    rows = []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    rows.append([float(v) for v in line.split()[:2]])
                    if len(rows[-1]) != 2:
                        raise ValueError(f"line {n} has fewer than two numbers")
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: expected one 'azimuth elevation' line (degrees) per view ({err})") from None
    if not rows:
        raise DataError(f"{path}: no views; expected one 'azimuth elevation' line (degrees) per view")
    angles = np.array(rows, np.float64)
    bad = np.flatnonzero(~np.all(np.isfinite(angles), axis=1))
    if len(bad):
        raise DataError(f"{path}: view {bad[0]} has a non-finite angle ({angles[bad[0]].tolist()}); expected "
                        "finite 'azimuth elevation' degrees on every line")
    return angles


_RENDER = re.compile(render_file(r"(\d+)").replace(".", r"\."))  # render_<k>.png


def check_views_match_renders(path, n_views):
    """DataError unless the folder of ``view.txt`` holds exactly ``render_0..n_views-1.png``."""
    folder = os.path.dirname(path)
    found = {int(m.group(1)) for m in map(_RENDER.fullmatch, os.listdir(folder)) if m}
    expected = set(range(n_views))
    if found - expected:
        extra = sorted(found - expected)
        raise DataError(f"{path}: {n_views} view line(s), but {folder} also holds {render_file(extra[0])} "
                        f"({len(found)} renders); expected one 'azimuth elevation' line per render")
    if expected - found:
        raise DataError(f"{path}: lists {n_views} views, but {render_file(min(expected - found))} is missing "
                        f"in {folder}; expected one render per line")


def _read_png(path, img_h, img_w):
    _require(path)
    img = cv2.imread(path, cv2.IMREAD_COLOR)  # 8-bit BGR, alpha dropped, like the original
    if img is None:
        raise DataError(f"{path}: cannot decode image; expected a {img_h}x{img_w} PNG")
    if img.shape[:2] != (img_h, img_w):
        raise DataError(f"{path}: expected a {img_h}x{img_w} image, got {img.shape[0]}x{img.shape[1]}")
    return img


def read_rgb(path, img_h, img_w):
    """``render_{k}.png`` -> float32 (H, W, 3) RGB in [0, 1]."""
    img = _read_png(path, img_h, img_w)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def read_mask(path, img_h, img_w):
    """``depth_{k}.png`` -> float32 (H, W) mask, 1 where the value is < 254."""
    img = _read_png(path, img_h, img_w)
    return (img[:, :, 0] < MASK_THRESHOLD).astype(np.float32)


def read_label_map(path, img_h, img_w, n_cls=None):
    """``labels_{k}.npy`` -> int32 (H, W), 0 = background, k = part k (1 <= k <= n_cls)."""
    lab = load_npy(path, (img_h, img_w), "iub")
    if lab.size and lab.min() < 0:
        raise DataError(f"{path}: expected labels >= 0 (0 = background), found {lab.min()}")
    if n_cls is not None and lab.size and lab.max() > n_cls:
        raise DataError(f"{path}: found label {lab.max()}; expected 0 (background) .. {n_cls} "
                        f"(the number of parts, --n_cls)")
    return lab.astype(np.int32)


def read_cloud(path, n_pts):
    """``pcl_1024_fps_trimesh.npy`` -> float32 (N, 3), renderer frame (after preprocess_pcl_gt)."""
    xyz = load_npy(path, (n_pts, 3), "f")
    if not np.all(np.isfinite(xyz)):
        raise DataError(f"{path}: expected finite coordinates, found NaN/inf")
    return shapenet.preprocess_pcl_gt(xyz.astype(np.float32))


def read_cloud_colours(path, n_pts):
    """``pcl_1024_fps_trimesh_colors.npy`` (N, 6) -> float32 (N, 3) RGB in [0, 1].

    Colours stored as 0..255 (any value above 1) are divided by 255.
    """
    arr = load_npy(path, (n_pts, 6), "fiu").astype(np.float32)
    rgb = arr[:, 3:]
    if rgb.size and rgb.max() > 1.0:
        rgb = rgb / 255.0
    if not np.all(np.isfinite(rgb)) or (rgb.size and (rgb.min() < 0.0 or rgb.max() > 1.0)):
        raise DataError(f"{path}: expected colours in [0, 1] (or 0..255) in columns 3..5")
    return rgb


def read_cloud_labels(path, n_pts, n_cls=None):
    """``pointcloud_labels.npy`` (N,), 1-based -> int32 (N,) 0-based part index (< n_cls)."""
    lab = load_npy(path, (n_pts,), "iu").astype(np.int64)
    if lab.size and lab.min() < 1:
        raise DataError(f"{path}: expected 1-based part labels (>= 1), found {lab.min()}")
    if n_cls is not None and lab.size and lab.max() > n_cls:
        raise DataError(f"{path}: found part label {lab.max()}; expected 1 .. {n_cls} "
                        f"(the number of parts, --n_cls)")
    return (lab - 1).astype(np.int32)


# --------------------------------------------------------------------------
# batches
# --------------------------------------------------------------------------
class BatchPipeline:
    """Batches of (input image, V supervision views, ground-truth cloud) for one category/split.

    Entry points and scripts build it from the training flags with :meth:`from_args`.
    Sizes: ``n_models``, ``n_samples`` (per epoch) and ``steps_per_epoch``; there is no
    ``len()``, which could be read as any of them.

    Determinism: batch ``step`` depends only on ``(seed, step)`` and the data.
    The samples (one per model, or one per (model, view) pair with
    ``all_input_views``) form an endless stream of epochs; epoch ``e`` visits
    them in the order of a permutation seeded by ``(seed, e)`` (identity when
    ``shuffle=False``), and batch ``step`` takes stream positions
    ``[step*B, (step+1)*B)`` (an epoch boundary may fall inside a batch).
    Per sample ``i`` of batch ``step``, a generator seeded by ``(seed, step, i)``
    draws the input view (unless ``all_input_views``) and, with
    ``view_mode='random'``, the supervision views. A run resumed with
    ``start_step=s`` therefore sees exactly the batches of an uninterrupted run.

    Views: ``view_mode='fixed'`` supervises with views 0..V-1 (modulo the
    model's view count, as the original); ``'random'`` with V distinct views
    drawn at random (repeated only when V exceeds the count).
    ``use_input_view=True`` makes the first supervision view the input view
    (with V=1 this is the original's ``--CORR``).

    Checks (DataError naming the file): ``view.txt`` has one finite
    'azimuth elevation' line per ``render_k.png``; part labels (partseg) lie in
    ``0..n_cls`` (label maps) and ``1..n_cls`` (point labels), ``n_cls`` being
    the number of parts of the category when not given.

    Iteration (``next(pipeline)``, ``for batch in pipeline``) yields batches
    ``start_step, start_step+1, ...`` computed ahead by ``num_workers`` threads
    (``prefetch`` batches in flight), forever; with ``repeat=False`` it yields one
    pass over the samples (``steps_per_epoch`` batches) and stops. The last batch
    of a pass is **padded** to ``batch_size`` by repeating its last sample; the
    key ``'valid'`` (bool, (B,)) marks the real samples. ``get_batch(step)``
    computes any batch synchronously (padding applies when ``repeat=False``).

    Batch dict (numpy): 'image' float32 (B,H,W,3) in [0,1]; 'input_az',
    'input_el' float32 (B,) radians; 'input_view' int32 (B,); 'views' int32
    (B,V); 'mask' float32 (B,V,H,W) in {0,1}; 'dist' float32 (B,V,H,W) squared
    px distance to the nearest foreground pixel (:mod:`utils.distance_map`); 'az', 'el' float32 (B,V)
    radians; 'pcl' float32 (B,N,3) renderer frame; task rgb: 'rgb' float32
    (B,V,H,W,3) in [0,1], background 0, and 'pcl_rgb' float32 (B,N,3); task
    partseg: 'labels' int32 (B,V,H,W) (0 background, k part k) and
    'pcl_labels' int32 (B,N) (0-based); 'model_id' str (B,); 'valid' bool (B,).
    """

    def __init__(self, data_dir, category, split, task="rgb", batch_size=1, n_views=1, img_h=64, img_w=64,
                 n_pts=N_GT_PTS, view_mode="random", use_input_view=False, shuffle=True, seed=0, num_workers=2,
                 prefetch=4, start_step=0, repeat=True, all_input_views=False, n_cls=None):
        if view_mode not in VIEW_MODES:
            raise ValueError(f"view_mode must be one of {VIEW_MODES}, got {view_mode!r}")
        if batch_size < 1 or n_views < 1:
            raise ValueError("batch_size and n_views must be >= 1")
        if seed < 0 or start_step < 0:
            raise ValueError("seed and start_step must be >= 0")
        self.data_dir, self.task, self.split = data_dir, task, split
        self.category, self.synset = category, _synset(category)
        self.batch_size, self.n_views = int(batch_size), int(n_views)
        self.img_h, self.img_w, self.n_pts = int(img_h), int(img_w), int(n_pts)
        self.view_mode, self.use_input_view = view_mode, bool(use_input_view)
        self.shuffle, self.seed, self.repeat = bool(shuffle), int(seed), bool(repeat)
        self.all_input_views = bool(all_input_views)
        self.dirs = task_dirs(data_dir, task)
        self.models = list_models(data_dir, category, split, task)
        if task == "partseg" and not n_cls:
            n_cls = n_parts(data_dir, category)
        self.n_cls = int(n_cls) if task == "partseg" else None
        self._angles = {}
        self._angles_lock = threading.Lock()
        self._perms, self._perm_lock = {}, threading.Lock()
        if self.all_input_views:
            self.samples = [(m, v) for m in range(len(self.models)) for v in range(len(self._views_deg(m)))]
        else:
            self.samples = [(m, None) for m in range(len(self.models))]
        self._check_first_model()

        self.num_workers, self.prefetch = max(0, int(num_workers)), max(1, int(prefetch))
        self._executor = ThreadPoolExecutor(self.num_workers, "batch") if self.num_workers else None
        self._pending = deque()
        self._next_step = self._next_submit = int(start_step)
        self._closed = False

    @classmethod
    def from_args(cls, args, task, split, **overrides):
        """The pipeline the training flags describe, for ``split``.

        Args:
            args: the training Namespace (``utils.config.parse_train_args`` or args.json): reads
                data_dir, category, batch_size, N_VIEWS, IMG_H, IMG_W, views, CORR, seed,
                num_workers, input_views and (partseg) n_cls.
            task: 'rgb' or 'partseg'.
            split: 'train', 'val' or 'test'.
            overrides: constructor arguments that replace the mapped ones (e.g. ``shuffle=False,
                repeat=False, view_mode='fixed', batch_size=1, start_step=k``).
        """
        kw = dict(task=task, batch_size=args.batch_size, n_views=args.N_VIEWS, img_h=args.IMG_H, img_w=args.IMG_W,
                  view_mode=args.views, use_input_view=args.CORR, seed=args.seed, num_workers=args.num_workers,
                  all_input_views=args.input_views == "all", n_cls=getattr(args, "n_cls", None) or None)
        kw.update(overrides)
        return cls(args.data_dir, args.category, split, **kw)

    # ---------------------------------------------------------------- sizes
    @property
    def n_models(self):
        """Models in the split (a model has one sample, or one per input view with ``all_input_views``)."""
        return len(self.models)

    @property
    def n_samples(self):
        """Samples per epoch: models, or (model, view) pairs with ``all_input_views``."""
        return len(self.samples)

    @property
    def steps_per_epoch(self):
        """Batches per pass over the samples (the last one possibly padded)."""
        return math.ceil(self.n_samples / self.batch_size)

    # ---------------------------------------------------------------- files
    def _model_dir(self, key, m):
        return os.path.join(self.dirs[key], self.synset, self.models[m])

    def _views_deg(self, m):
        """The model's view angles, degrees (V, 2); read once, then cached."""
        with self._angles_lock:
            angles = self._angles.get(m)
        if angles is None:
            path = os.path.join(self._model_dir("rendered", m), VIEWS_FILE)
            angles = read_views(path)
            check_views_match_renders(path, len(angles))
            with self._angles_lock:
                self._angles[m] = angles
        return angles

    def _check_first_model(self):
        """Fail early (in the caller's thread) when the first model is incomplete."""
        self._load_sample(0, 0, 0)

    # ---------------------------------------------------------------- sampling
    def _sample_index(self, step, i):
        """Index into ``samples`` of item ``i`` of batch ``step`` (and whether it is padding)."""
        n, pos = self.n_samples, step * self.batch_size + i
        if self.repeat:
            valid = True
            epoch, k = divmod(pos, n)
        else:  # one pass; positions past its end repeat the last sample (padding)
            valid = pos < n
            epoch, k = 0, min(pos, n - 1)
        if self.shuffle:
            k = int(self._permutation(epoch)[k])
        return k, valid

    def _permutation(self, epoch):
        """Sample order of an epoch, seeded by (seed, epoch); the last few are cached."""
        with self._perm_lock:
            perm = self._perms.get(epoch)
            if perm is None:
                perm = np.random.default_rng([self.seed, epoch, EPOCH_ORDER_SALT]).permutation(self.n_samples)
                if len(self._perms) >= CACHED_EPOCH_ORDERS:
                    self._perms.pop(next(iter(self._perms)))
                self._perms[epoch] = perm
            return perm

    def _choose_views(self, rng, n_avail, input_view):
        V = self.n_views
        if self.view_mode == "fixed":
            views = [v % n_avail for v in range(V)]
        else:
            views = []
            while len(views) < V:
                views.extend(rng.permutation(n_avail).tolist())
            views = views[:V]
        if self.use_input_view:
            rest = [v for v in views if v != input_view]
            views = ([input_view] + rest)[:V]
            views += [views[j % len(views)] for j in range(V - len(views))]
        return views

    def _load_sample(self, step, i, k):
        m, input_view = self.samples[k]
        angles = self._views_deg(m)
        n_avail = len(angles)
        rng = np.random.default_rng([self.seed, step, i])
        if input_view is None:
            input_view = int(rng.integers(n_avail))
        views = self._choose_views(rng, n_avail, input_view)
        rdir, pdir = self._model_dir("rendered", m), self._model_dir("pcl", m)
        H, W = self.img_h, self.img_w
        out = dict(image=read_rgb(os.path.join(rdir, render_file(input_view)), H, W),
                   input_view=input_view, views=np.array(views, np.int32),
                   input_az=np.radians(angles[input_view, 0]), input_el=np.radians(angles[input_view, 1]),
                   az=np.radians(angles[views, 0]), el=np.radians(angles[views, 1]),
                   model_id=self.models[m])
        masks = np.stack([read_mask(os.path.join(rdir, depth_file(v)), H, W) for v in views])
        out["mask"] = masks
        out["dist"] = gt_distance_transform(masks)
        out["pcl"] = read_cloud(os.path.join(pdir, PCL_FILE), self.n_pts)
        if self.task == "rgb":
            out["rgb"] = np.stack([read_rgb(os.path.join(rdir, render_file(v)), H, W) for v in views])
            out["rgb"] *= masks[..., None]
            out["pcl_rgb"] = read_cloud_colours(os.path.join(pdir, PCL_COLOURS_FILE), self.n_pts)
        else:
            ldir = self._model_dir("labels", m)
            lab = []
            for v in views:
                path = os.path.join(ldir, label_map_file(v))
                if not os.path.isfile(path):  # some copies keep the label maps beside the renders
                    alt = os.path.join(rdir, label_map_file(v))
                    path = alt if os.path.isfile(alt) else path
                lab.append(read_label_map(path, H, W, self.n_cls))
            out["labels"] = np.stack(lab)
            out["pcl_labels"] = read_cloud_labels(os.path.join(pdir, PCL_LABELS_FILE), self.n_pts, self.n_cls)
        return out

    def get_batch(self, step):
        """Batch number ``step`` (a pure function of seed, step and the data), computed now."""
        items, valid = [], []
        for i in range(self.batch_size):
            k, ok = self._sample_index(step, i)
            items.append(self._load_sample(step, i, k))
            valid.append(ok)
        batch = {}
        for key in items[0]:
            vals = [it[key] for it in items]
            if key == "model_id":
                batch[key] = np.array(vals, dtype=str)
            elif key in ("labels", "pcl_labels", "views", "input_view"):
                batch[key] = np.asarray(vals, np.int32)
            else:
                batch[key] = np.asarray(vals, np.float32)
        batch["valid"] = np.array(valid, bool)
        return batch

    # ---------------------------------------------------------------- iteration
    def _end(self):
        return None if self.repeat else self.steps_per_epoch

    def _fill(self):
        end = self._end()
        while len(self._pending) < self.prefetch and (end is None or self._next_submit < end):
            self._pending.append(self._executor.submit(self.get_batch, self._next_submit))
            self._next_submit += 1

    def __iter__(self):
        return self

    def __next__(self):
        if self._closed:
            raise RuntimeError("BatchPipeline is closed")
        end = self._end()
        if end is not None and self._next_step >= end:
            raise StopIteration
        if self._executor is None:
            batch = self.get_batch(self._next_step)
        else:
            self._fill()
            batch = self._pending.popleft().result()  # re-raises a worker's DataError here
            self._fill()
        self._next_step += 1
        return batch

    def close(self):
        """Stop the worker threads (pending batches are dropped)."""
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            for fut in self._pending:
                fut.cancel()
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        # A pipeline dropped without close() stops its threads here. Nothing is swallowed: Python
        # reports an error raised in __del__ ("Exception ignored in ...") on stderr.
        if getattr(self, "_closed", True) is False:
            self.close()
