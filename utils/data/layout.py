"""The data layout: folder and file names, split lists, part names (no file contents; see readers).

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
  :func:`utils.render.camera.world2cam` expects.
* ``depth_{k}.png``: a pixel is foreground where its (first channel) value is
  < 254.
* Clouds are stored in the ShapeNet frame and rotated into the renderer frame
  by :func:`utils.data.shapenet.preprocess_pcl_gt` on loading.
* ``pointcloud_labels.npy`` is 1-based; batches hold 0-based part indices.

Every problem with the files raises :class:`DataError` naming the file and what
was expected. ``.npy`` files are always loaded with ``allow_pickle=False``.
"""

import json
import os
import re

from utils.data import shapenet
from utils.data.readers import DataError, load_npy  # noqa: F401  (DataError: part of this module's API)

SPLITS = ("train", "val", "test")
VIEW_MODES = ("random", "fixed")
# Folder and file names of the layout (the writers, utils/datagen/writer.py, use the same ones).
# The part-labelled tree's sub-folder of the data root in the original release (its part task
# declares it as its data_tree; the data makers write it). Other trees are the root or a sub-folder.
PART_TREE_DIR = "partseg"
RENDERED_DIR, PCL_DIR, LABELS_DIR, SPLITS_DIR = "ShapeNet_rendered", "ShapeNet_pcl", "ShapeNet_labels", "splits"
N_GT_PTS = 1024  # points of every ground-truth cloud: the file names below say so
PCL_FILE = f"pcl_{N_GT_PTS}_fps_trimesh.npy"
PCL_COLOURS_FILE = f"pcl_{N_GT_PTS}_fps_trimesh_colors.npy"
PCL_LABELS_FILE = "pointcloud_labels.npy"
# A second, independent sampling of the same surface (the demo data writes it; the metrics' floor row):
# the same formats as the three files above. The authors' ShapeNet clouds have none.
RESAMPLE_PCL_FILE = f"pcl_{N_GT_PTS}_fps_trimesh_resample.npy"
RESAMPLE_COLOURS_FILE = f"pcl_{N_GT_PTS}_fps_trimesh_resample_colors.npy"
RESAMPLE_LABELS_FILE = "pointcloud_labels_resample.npy"
# depth_{k}.png of the generated data (utils/datagen): codes 0..253 span [DEPTH_NEAR, DEPTH_FAR] world
# units from the camera, 255 off the object. The loaders read only the mask (code < 254); analyses
# of generated data (utils/eval/breakdown.py) read the depth too. The authors' renders use their own.
DEPTH_NEAR, DEPTH_FAR = 1.0, 3.0
# Which ground-truth points lie on a part's hidden side (uint8 (N,), 1 = hidden side; the demo data
# writes it beside the colour cloud; the rgb metrics split the colour error by it). Others have none.
PCL_SIDES_FILE = f"pcl_{N_GT_PTS}_fps_trimesh_sides.npy"
VIEWS_FILE = "view.txt"
PART_NAMES_FILE = "part_names.json"


def render_file(view):
    """``render_{k}.png``: the RGB render of view k."""
    return f"render_{view}.png"


def depth_file(view):
    """``depth_{k}.png``: the depth code of view k (mask: value < MASK_THRESHOLD)."""
    return f"depth_{view}.png"


def label_map_file(view):
    """``labels_{k}.npy``: the part-label map of view k."""
    return f"labels_{view}.npy"


def split_list_file(synset, split, ext=".txt"):
    """``<synset>_<split>_list.txt`` (or ``.npy``)."""
    return f"{synset}_{split}_list{ext}"


# --------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------
def check_data_dir(data_dir, tree=""):
    """DataError unless ``data_dir`` is an existing folder holding the tree ``tree`` (a sub-folder
    name, a task's ``data_tree``; '' = the data root)."""
    if not os.path.isdir(data_dir):
        what = "is not a folder" if os.path.exists(data_dir) else "does not exist"
        raise DataError(
            f"data directory {os.path.abspath(data_dir)} {what} (--data_dir); expected the layout "
            "described in data/README.md (make the demo set with python data/make_demo_data.py)"
        )
    root = tree_root(data_dir, tree)
    if not os.path.isdir(root):
        raise DataError(
            f"data directory {os.path.abspath(data_dir)} has no {tree}/ folder; this task expects "
            f"{tree}/{RENDERED_DIR}, {tree}/{PCL_DIR}, {tree}/{SPLITS_DIR} there"
        )


def tree_root(data_dir, tree=""):
    """The folder of the tree ``tree`` (sub-folder name; '' = ``data_dir`` itself)."""
    if tree and (os.path.isabs(tree) or os.path.normpath(tree).startswith("..")):
        raise ValueError(f"tree must be a sub-folder name of the data root, got {tree!r}")
    return os.path.join(data_dir, tree) if tree else data_dir


def tree_dirs(data_dir, tree=""):
    """Folders of a tree: dict with 'rendered', 'pcl', 'labels' (used when it exists), 'splits'
    (a list of candidate folders, first match wins; writers use the first)."""
    root = tree_root(data_dir, tree)
    rendered = os.path.join(root, RENDERED_DIR)
    return dict(
        rendered=rendered,
        pcl=os.path.join(root, PCL_DIR),
        labels=os.path.join(root, LABELS_DIR),
        splits=[os.path.join(root, SPLITS_DIR), os.path.join(rendered, SPLITS_DIR)],
    )


def _synset(category):
    try:
        return shapenet.synset_id(category)
    except ValueError as err:
        raise DataError(str(err)) from None


def split_file(data_dir, category, split, tree=""):
    """Path of the split list ``<synset>_<split>_list.txt`` (or ``.npy``); DataError when absent."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    syn = _synset(category)
    check_data_dir(data_dir, tree)
    tried = []
    for folder in tree_dirs(data_dir, tree)["splits"]:
        for ext in (".txt", ".npy"):
            path = os.path.join(folder, split_list_file(syn, split, ext))
            if os.path.isfile(path):
                return path
            tried.append(path)
    found = sorted(
        os.path.join(folder, name)
        for folder in tree_dirs(data_dir, tree)["splits"]
        if os.path.isdir(folder)
        for name in os.listdir(folder)
        if name.startswith(f"{syn}_") and "_list." in name
    )
    raise DataError(
        f"no split file for category {category} ({syn}), split '{split}'" + (f", tree '{tree}'" if tree else "") + ": "
        f"expected one of {', '.join(tried)}; split lists found for this category: "
        f"{', '.join(found) if found else 'none'}"
    )


_PLAIN_NAME = re.compile(r"[^/\\\x00]+")


def _check_model_id(path, mid):
    """A model id must be a plain folder name: no separators, not '.', '..' or absolute."""
    if not _PLAIN_NAME.fullmatch(mid) or mid in (".", ".."):
        raise DataError(
            f"{path}: model id {mid!r} is not a plain folder name; expected names like "
            "1a6f615e8b1b5ae4dbbc9440457e303e (no '/', '\\', '.' or '..')"
        )


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


def list_models(data_dir, category, split, tree=""):
    """Model ids of a category's split, in file order, after checking the folders exist.

    Raises DataError for a missing or empty split file, a missing or empty
    category folder, or a listed model without its rendered / cloud (/ label)
    folder.
    """
    path = split_file(data_dir, category, split, tree)
    ids = read_split(path)
    if not ids:
        raise DataError(f"{path}: split list is empty; expected at least one model id")
    syn = _synset(category)
    dirs = tree_dirs(data_dir, tree)
    for key in ("rendered", "pcl", "labels"):
        if key == "labels" and not os.path.isdir(dirs[key]):
            continue  # without a ShapeNet_labels tree the label maps sit beside the renders
        cat_dir = os.path.join(dirs[key], syn)
        if not os.path.isdir(cat_dir):
            raise DataError(f"category folder {cat_dir} is missing; expected one sub-folder per model of {category}")
        if not any(e.is_dir() for e in os.scandir(cat_dir)):
            raise DataError(f"category folder {cat_dir} is empty; expected one sub-folder per model of {category}")
        for mid in ids:
            if not os.path.isdir(os.path.join(cat_dir, mid)):
                raise DataError(f"model folder {os.path.join(cat_dir, mid)} is missing (listed in {path})")
    return ids


def n_parts(data_dir, category):
    """Number of part classes of a category (without background).

    Read from ``<data_dir>/<PART_TREE_DIR>/part_names.json`` (written by the demo
    generator) when it lists the category, else from the part counts of the
    ShapeNet part annotations (:data:`utils.data.shapenet.PART_COUNTS`).
    """
    return len(part_names(data_dir, category))


def part_names(data_dir, category):
    """Part names in label order (label k+1 in files, index k in batches)."""
    syn = _synset(category)
    path = os.path.join(data_dir, PART_TREE_DIR, PART_NAMES_FILE)
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
    raise DataError(f"no part annotation for category {name}: neither {path} nor the ShapeNet part table lists it")


def has_dataset(data_dir, category, tree=""):
    """True when the train split of ``category`` exists (in tree ``tree``) and lists readable model folders."""
    try:
        list_models(data_dir, category, "train", tree)
        return True
    except (DataError, OSError):
        return False


def missing_dataset(tool, data_dir, category, tree="", hint=""):
    """None when :func:`has_dataset`; else the one error line a tool prints before it exits with 2
    (``hint``: what else makes the data, e.g. " (run_ablation.sh does this)")."""
    if has_dataset(data_dir, category, tree):
        return None
    where = os.path.join(data_dir, tree) if tree else data_dir
    return (
        f"{tool}: no {category} data in {where}; make the demo data with 'python data/make_demo_data.py'{hint} "
        "or pass --data_dir"
    )


_RENDER = re.compile(render_file(r"(\d+)").replace(".", r"\."))  # render_<k>.png


def check_views_match_renders(path, n_views):
    """DataError unless the folder of ``view.txt`` holds exactly ``render_0..n_views-1.png``."""
    folder = os.path.dirname(path)
    found = {int(m.group(1)) for m in map(_RENDER.fullmatch, os.listdir(folder)) if m}
    expected = set(range(n_views))
    if found - expected:
        extra = sorted(found - expected)
        raise DataError(
            f"{path}: {n_views} view line(s), but {folder} also holds {render_file(extra[0])} "
            f"({len(found)} renders); expected one 'azimuth elevation' line per render"
        )
    if expected - found:
        raise DataError(
            f"{path}: lists {n_views} views, but {render_file(min(expected - found))} is missing "
            f"in {folder}; expected one render per line"
        )
