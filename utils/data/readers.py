"""Readers of single data files: PNG views and masks, label maps, clouds, ``view.txt``.

Every problem raises :class:`utils.data.layout.DataError` naming the file and what was expected;
``.npy`` files are always loaded with ``allow_pickle=False``.
"""

import os

import cv2
import numpy as np

from utils.data import shapenet

MASK_THRESHOLD = 254  # depth_{k}.png: foreground where value < 254


class DataError(ValueError):
    """A data file is missing, unreadable or not what the loaders expect."""


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
    if shape is not None and (
        arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape))
    ):
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
        raise DataError(
            f"{path}: view {bad[0]} has a non-finite angle ({angles[bad[0]].tolist()}); expected "
            "finite 'azimuth elevation' degrees on every line"
        )
    return angles


def _read_png(path, img_h, img_w):
    _require(path)
    img = cv2.imread(path, cv2.IMREAD_COLOR)  # 8-bit BGR, alpha dropped, like the original
    if img is None:
        raise DataError(f"{path}: cannot decode image; expected a {img_h}x{img_w} PNG")
    if img.shape[:2] != (img_h, img_w):
        raise DataError(f"{path}: expected a {img_h}x{img_w} image, got {img.shape[0]}x{img.shape[1]}")
    return img


def read_rgb_u8(path, img_h, img_w):
    """``render_{k}.png`` -> uint8 (H, W, 3) RGB, as stored (the view cache keeps this)."""
    return cv2.cvtColor(_read_png(path, img_h, img_w), cv2.COLOR_BGR2RGB)


def rgb_to_float(rgb):
    """uint8 RGB (..., 3) -> float32 in [0, 1]: the one conversion of the PNG path and the view cache."""
    out = rgb.astype(np.float32)
    out /= 255.0  # in place: the same float32 division, without a second large array
    return out


def read_rgb(path, img_h, img_w):
    """``render_{k}.png`` -> float32 (H, W, 3) RGB in [0, 1]."""
    return rgb_to_float(read_rgb_u8(path, img_h, img_w))


def read_mask_bool(path, img_h, img_w):
    """``depth_{k}.png`` -> bool (H, W) mask, True where the value is < 254."""
    return _read_png(path, img_h, img_w)[:, :, 0] < MASK_THRESHOLD


def read_mask(path, img_h, img_w):
    """``depth_{k}.png`` -> float32 (H, W) mask, 1 where the value is < 254."""
    return read_mask_bool(path, img_h, img_w).astype(np.float32)


def read_label_map(path, img_h, img_w, n_cls=None):
    """``labels_{k}.npy`` -> int32 (H, W), 0 = background, k = part k (1 <= k <= n_cls)."""
    lab = load_npy(path, (img_h, img_w), "iub")
    if lab.size and lab.min() < 0:
        raise DataError(f"{path}: expected labels >= 0 (0 = background), found {lab.min()}")
    if n_cls is not None and lab.size and lab.max() > n_cls:
        raise DataError(
            f"{path}: found label {lab.max()}; expected 0 (background) .. {n_cls} (the number of parts, --n_cls)"
        )
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


def read_point_sides(path, n_pts):
    """``pcl_1024_fps_trimesh_sides.npy`` (N,) of 0 / 1 -> bool (N,): True where a ground-truth point
    lies on a part's hidden side (the demo data's record, utils.data.layout.PCL_SIDES_FILE)."""
    sides = load_npy(path, (n_pts,), "iub")
    if sides.size and not np.isin(sides, (0, 1)).all():
        raise DataError(
            f"{path}: expected 0 (not on a hidden side) or 1 (on a part's hidden side) per point, "
            f"found {sorted(set(np.unique(sides).tolist()) - {0, 1})[:5]}"
        )
    return sides.astype(bool)


def read_cloud_labels(path, n_pts, n_cls=None):
    """``pointcloud_labels.npy`` (N,), 1-based -> int32 (N,) 0-based part index (< n_cls)."""
    lab = load_npy(path, (n_pts,), "iu").astype(np.int64)
    if lab.size and lab.min() < 1:
        raise DataError(f"{path}: expected 1-based part labels (>= 1), found {lab.min()}")
    if n_cls is not None and lab.size and lab.max() > n_cls:
        raise DataError(f"{path}: found part label {lab.max()}; expected 1 .. {n_cls} (the number of parts, --n_cls)")
    return (lab - 1).astype(np.int32)
