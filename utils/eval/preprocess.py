"""Turn a photo into what a DIFFER network saw in training: find the object, put it on the training
background, frame it as in the training renders. Needs only numpy and OpenCV.

This file is meant to be copied: a SavedModel user (``predict_*.py --export``) applies the numbers
the export records in ``assets.extra/differ.json`` without the rest of this repository::

    import json, cv2, numpy as np
    from preprocess import prepare_image, exif_orientation, apply_orientation  # this file, copied
    info = json.load(open("saved_model/assets.extra/differ.json"))
    data = np.fromfile("photo.jpg", np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)  # keeps an alpha channel, ignores EXIF orientation
    bgr = apply_orientation(bgr, exif_orientation(data.tobytes()))  # upright, as a photo viewer shows it
    img = cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGBA if bgr.shape[2] == 4 else cv2.COLOR_BGR2RGB) / 255.0
    p = prepare_image(img, info["IMG_H"], info["IMG_W"], np.array(info["background_rgb"]) / 255.0,
                info.get("framing"), segment="auto", fit="auto")
    for w in p.warnings:
        print("warning:", w)
    # p.image: float32 (IMG_H, IMG_W, 3) RGB in [0, 1], the network's input

Before these steps, a photo is turned upright as a photo viewer shows it: its EXIF orientation
(:func:`exif_orientation`, a phone's sideways or mirrored capture) is applied to the pixels
(:func:`apply_orientation`); OpenCV's ``IMREAD_UNCHANGED``, which keeps the alpha channel, does not.

Steps (:func:`prepare_image`):

1. **Find the object** (``segment``). An alpha channel is the mask. Otherwise ``border`` removes the
   background connected to the image border: pixels within ``tolerance`` (largest channel
   difference, 0..1) of the border's median colour that are connected (4-neighbours) to the border;
   ``grabcut`` runs OpenCV's GrabCut with the image border as sure background and, as probable
   background, the ``border`` result and, when the border is not uniform, every colour common in a
   band along it (a textured background, such as a photographed backdrop); ``none`` keeps the
   image as it is. ``auto`` (the default) is ``border`` when the image has no alpha, its border is
   nearly uniform (at least :data:`UNIFORM_SHARE` of the border pixels within ``tolerance`` of
   their median) and that colour differs from the training background by more than ``tolerance``;
   else ``none``: an image whose background already is the training background (a render) is left
   alone, and a textured one needs ``grabcut`` asked for (the warning says so).
2. The mask is the alpha with which the object is composited on the training background.
3. **Frame it** (``fit``). ``object`` scales and shifts the image so that the mask's bounding box
   has the training renders' median size (its larger side, in network pixels) and centre
   (:func:`measure_framing`), padding with the background where the frame leaves the image, and
   samples it at IMG_H x IMG_W. ``crop`` / ``pad`` centre-crop or pad to the trained aspect ratio and
   resize. ``auto``: ``object`` when there is a mask and the framing is known, else ``crop``.
4. **Say when the input is out of reach**: :attr:`Prepared.warnings`, one sentence each (see
   :func:`prepare_image`).
"""

import math

import cv2
import numpy as np

SEGMENTS = ("auto", "none", "border", "grabcut")
FITS = ("auto", "object", "crop", "pad")
DEFAULT_TOLERANCE = 24 / 255  # largest channel difference that still counts as background (0..1)
UNIFORM_SHARE = 0.95  # a border is nearly uniform when this share of it is within tolerance
TOUCH_SIDES = 3  # warn when the mask touches at least this many of the 4 image sides
FULL_COVER = 0.9  # warn when the mask covers at least this share of the image
SHARE_FACTOR = 1.5  # warn when the fitted share is outside [p05 / this, p95 * this] of training
GRABCUT_MAX_SIDE = 256  # GrabCut runs on the image shrunk to at most this many pixels a side
BAND_SHARE = 0.1  # GrabCut's background colour model: a border band this share of the shorter side
COLOUR_BINS = 16  # ... as a colour histogram with this many levels per channel
RARE_COLOUR = 0.002  # a colour is probable object when under this share of the band has it


class Prepared:
    """The result of :func:`prepare_image`.

    Attributes:
        image: float32 (img_h, img_w, 3) RGB in [0, 1], the network's input.
        mask: float32 (img_h, img_w) in [0, 1], the object mask in the network's frame, or None.
        segment: the segmentation used: 'alpha', 'border', 'grabcut' or 'none'.
        fit: the framing used: 'object', 'crop' or 'pad'.
        share: the share of the network's frame the mask covers (None without a mask).
        warnings: list of one-sentence strings (without the image's name).
    """

    def __init__(self, image, mask, segment, fit, warnings):
        self.image, self.mask, self.segment, self.fit, self.warnings = image, mask, segment, fit, warnings
        self.share = None if mask is None else float(np.mean(mask > 0.5))


# --------------------------------------------------------------------------
# orientation
# --------------------------------------------------------------------------
EXIF_ORIENTATION_TAG = 0x0112


def _exif_block(data):
    """The TIFF block of the EXIF data of a JPEG (APP1 'Exif') or PNG (eXIf chunk) file's bytes, or None."""
    if data[:2] == b"\xff\xd8":  # JPEG: the markers before the image data
        i = 2
        while i + 4 <= len(data) and data[i] == 0xFF:
            marker = data[i + 1]
            if marker == 0xFF:  # a fill byte
                i += 1
                continue
            if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
                i += 2
                continue
            if marker in (0xD9, 0xDA):  # end of image, start of scan: no EXIF before
                return None
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\0\0":
                return data[i + 10 : i + 2 + length]
            i += 2 + length
        return None
    if data[:8] == b"\x89PNG\r\n\x1a\n":  # PNG: the chunks
        i = 8
        while i + 8 <= len(data):
            length, kind = int.from_bytes(data[i : i + 4], "big"), data[i + 4 : i + 8]
            if kind == b"eXIf":
                return data[i + 8 : i + 8 + length]
            if kind == b"IEND":
                return None
            i += 12 + length
    return None


def exif_orientation(data):
    """The EXIF orientation (1..8) of an image file's bytes (``bytes`` or a uint8 array; JPEG or PNG);
    1 (upright) when the file
    has none or it cannot be read. 6: the picture must be turned 90 degrees clockwise to be seen
    upright (a phone held upright), 8: counter-clockwise, 3: 180 degrees; 2, 4, 5, 7 are mirrored."""
    tiff = _exif_block(memoryview(data).cast("B"))  # bytes or a uint8 array, not copied
    if tiff is None or len(tiff) < 8:
        return 1
    order = {b"II": "little", b"MM": "big"}.get(bytes(tiff[:2]))
    if order is None:
        return 1

    def num(offset, size):
        return int.from_bytes(tiff[offset : offset + size], order)

    ifd = num(4, 4)
    if ifd + 2 > len(tiff):
        return 1
    for k in range(num(ifd, 2)):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(tiff):
            break
        if num(entry, 2) == EXIF_ORIENTATION_TAG and num(entry + 2, 2) == 3:  # a SHORT
            value = num(entry + 8, 2)
            return value if 1 <= value <= 8 else 1
    return 1


def apply_orientation(img, orientation):
    """The pixels ``img`` (h, w, ...) as a photo viewer shows them under EXIF ``orientation`` (1..8)."""
    img = np.asarray(img)
    turned = {
        2: lambda a: a[:, ::-1],  # mirrored left-right
        3: lambda a: a[::-1, ::-1],  # 180 degrees
        4: lambda a: a[::-1],  # mirrored top-bottom
        5: lambda a: a.swapaxes(0, 1),  # mirrored along the main diagonal
        6: lambda a: np.rot90(a, -1),  # 90 degrees clockwise
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],  # mirrored along the other diagonal
        8: lambda a: np.rot90(a, 1),  # 90 degrees counter-clockwise
    }.get(int(orientation))
    return img if turned is None else np.ascontiguousarray(turned(img))


# --------------------------------------------------------------------------
# find the object
# --------------------------------------------------------------------------
def _border(a):
    """The outermost ring of pixels of an (h, w, ...) array, as (n, ...)."""
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def border_colour(rgb):
    """Median colour of the image's outermost pixel ring: float (3,) in [0, 1]."""
    return np.median(_border(np.asarray(rgb, np.float32)), axis=0)


def border_is_uniform(rgb, tolerance=DEFAULT_TOLERANCE):
    """True when at least UNIFORM_SHARE of the border pixels are within ``tolerance`` of their median."""
    ring = _border(np.asarray(rgb, np.float32))
    return float(np.mean(np.abs(ring - np.median(ring, axis=0)).max(axis=1) <= tolerance)) >= UNIFORM_SHARE


def segment_border(rgb, tolerance=DEFAULT_TOLERANCE):
    """Object mask: everything but the background connected to the image border.

    Background = pixels within ``tolerance`` (largest channel difference) of the border's median
    colour and 4-connected to the border through such pixels. Returns float32 (h, w) in {0, 1}.
    """
    rgb = np.asarray(rgb, np.float32)
    near = (np.abs(rgb - border_colour(rgb)).max(axis=-1) <= tolerance).astype(np.uint8)
    _, labels = cv2.connectedComponents(near, connectivity=4)
    touching = np.unique(_border(labels))
    background = np.isin(labels, touching[touching > 0]) & (near > 0)
    return (~background).astype(np.float32)


def _ring(h, w, width):
    """Bool (h, w): the outer ring of pixels ``width`` px wide."""
    ring = np.zeros((h, w), bool)
    ring[:width], ring[-width:], ring[:, :width], ring[:, -width:] = True, True, True, True
    return ring


def border_colour_frequency(img8, band, bins=COLOUR_BINS):
    """How common each pixel's colour is in the ``band`` pixels (the background's colour model).

    A colour histogram of the band (``bins`` levels per channel), smoothed by [1/4, 1/2, 1/4] along
    each channel axis so that nearby shades count too, divided by the number of band pixels.

    Args:
        img8: uint8 (h, w, 3). band: bool (h, w), the pixels that model the background.
    Returns:
        float64 (h, w): the smoothed share of band pixels in each pixel's colour bin (0..1).
    """
    q = img8.astype(np.int64) // (256 // bins)
    flat = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    hist = np.bincount(flat[band], minlength=bins**3).astype(np.float64).reshape((bins,) * 3)
    for axis in range(3):
        padded = np.pad(hist, [(1, 1) if a == axis else (0, 0) for a in range(3)])
        part = [np.take(padded, np.arange(k, k + bins), axis=axis) for k in range(3)]
        hist = 0.25 * part[0] + 0.5 * part[1] + 0.25 * part[2]
    return hist.reshape(-1)[flat] / max(1, int(band.sum()))


def segment_grabcut(rgb, tolerance=DEFAULT_TOLERANCE, iterations=5):
    """Object mask by OpenCV's GrabCut, initialised from the border.

    The outer ring (2 % of the shorter side, at least 1 px) is sure background. Probable object:
    the pixels that :func:`segment_border` keeps; when the border is not uniform
    (:func:`border_is_uniform`: a textured background, such as a photographed backdrop or a
    fabric), only those whose colour is also rare in a band along the border (:data:`BAND_SHARE`
    of the shorter side wide; rare: under :data:`RARE_COLOUR` of the band's pixels share it,
    :func:`border_colour_frequency`), which keeps the texture out of the object's first colour
    model. The rest is probable background.
    Runs on the image shrunk to at most GRABCUT_MAX_SIDE px a side; keeps the connected parts of
    at least a tenth of the largest one. Deterministic (reseeds OpenCV's global RNG).
    Returns float32 (h, w) in {0, 1}.
    """
    rgb = np.asarray(rgb, np.float32)
    h, w = rgb.shape[:2]
    k = min(1.0, GRABCUT_MAX_SIDE / max(h, w))
    small = (
        cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA) if k < 1 else rgb
    )
    sh, sw = small.shape[:2]
    img8 = np.clip(np.round(small * 255), 0, 255).astype(np.uint8)
    probable = segment_border(small, tolerance) > 0
    if not border_is_uniform(small, tolerance):  # textured: the border's colours are background too
        band = _ring(sh, sw, max(1, round(BAND_SHARE * min(sh, sw))))
        probable &= border_colour_frequency(img8, band) < RARE_COLOUR
    gc = np.where(probable, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    gc[_ring(sh, sw, max(1, round(0.02 * min(sh, sw))))] = cv2.GC_BGD
    if np.any(gc == cv2.GC_PR_FGD):
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's global RNG: the same mask every call
        cv2.grabCut(img8, gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    mask = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n > 2:  # drop specks: parts under a tenth of the largest
        areas = stats[1:, cv2.CC_STAT_AREA]
        mask = np.isin(labels, 1 + np.flatnonzero(areas >= 0.1 * areas.max())).astype(np.uint8)
    if (sh, sw) != (h, w):
        mask = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
    return mask.astype(np.float32)


def composite(rgb, alpha, background):
    """rgb * alpha + background * (1 - alpha): float32 (h, w, 3)."""
    a = np.asarray(alpha, np.float32)[..., None]
    return np.asarray(rgb, np.float32) * a + np.asarray(background, np.float32).reshape(1, 1, 3) * (1.0 - a)


# --------------------------------------------------------------------------
# framing
# --------------------------------------------------------------------------
def bounding_box(mask):
    """(top, bottom, left, right) of mask > 0.5, bottom/right exclusive (pixels); None when empty."""
    rows, cols = np.flatnonzero(np.any(mask > 0.5, axis=1)), np.flatnonzero(np.any(mask > 0.5, axis=0))
    if not len(rows):
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def measure_framing(masks):
    """How the object sits in the training renders: medians over masks of one size.

    Args:
        masks: iterable of (img_h, img_w) arrays, object where > 0.5 (empty ones are skipped).
    Returns:
        dict: img_h, img_w; bbox_size (median larger side of the bounding box, px);
        bbox_centre [row, col] (median centre, px, pixel i spans [i, i + 1)); share (median share of
        the frame covered by the object) and share_range [5th, 95th percentile]; n_renders.
    """
    sizes, centres, shares, shape = [], [], [], None
    for m in masks:
        m = np.asarray(m)
        if shape is None:
            shape = m.shape
        elif m.shape != shape:
            raise ValueError(f"masks of different sizes: {shape} and {m.shape}")
        box = bounding_box(m)
        if box is None:
            continue
        top, bottom, left, right = box
        sizes.append(max(bottom - top, right - left))
        centres.append(((top + bottom) / 2, (left + right) / 2))
        shares.append(float(np.mean(m > 0.5)))
    if not sizes:
        raise ValueError("no mask with an object to measure the framing on")
    return dict(
        img_h=int(shape[0]),
        img_w=int(shape[1]),
        bbox_size=float(np.median(sizes)),
        bbox_centre=[float(c) for c in np.median(centres, axis=0)],
        share=float(np.median(shares)),
        share_range=[float(np.percentile(shares, 5)), float(np.percentile(shares, 95))],
        n_renders=len(sizes),
    )


def fit_object(rgb, mask, framing, img_h, img_w, background):
    """Scale and shift so the mask's bounding box has the training median size and centre.

    Args:
        rgb: float (h, w, 3), already composited on ``background``. mask: float (h, w) in [0, 1].
        framing: :func:`measure_framing`'s dict (its px are rescaled when img_h, img_w differ).
    Returns:
        (image float32 (img_h, img_w, 3), mask float32 (img_h, img_w)); the frame is padded with
        ``background`` (mask 0) where it leaves the image.
    """
    y0, y1, x0, x1 = bounding_box(mask)  # top, bottom, left, right
    sy, sx = img_h / framing["img_h"], img_w / framing["img_w"]
    size = framing["bbox_size"] * math.sqrt(sy * sx)
    cy, cx = framing["bbox_centre"][0] * sy, framing["bbox_centre"][1] * sx
    k = size / max(y1 - y0, x1 - x0)  # network px per image px
    top, left = (y0 + y1) / 2 - cy / k, (x0 + x1) / 2 - cx / k  # the frame's corner in image px
    rgb, mask = np.asarray(rgb, np.float32), np.asarray(mask, np.float32)
    h, w = rgb.shape[:2]
    ky = kx = 1.0
    if k < 1:  # shrink first with area averaging (no aliasing), then place with sub-pixel accuracy
        nh, nw = max(1, round(h * k)), max(1, round(w * k))
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_AREA)
        ky, kx = nh / h, nw / w
    # continuous coordinates: out = k * (y - top) with y = y_resized / ky; OpenCV's pixel centres at +0.5
    ay, ax = k / ky, k / kx
    m = np.array([[ax, 0, 0.5 * ax - k * left - 0.5], [0, ay, 0.5 * ay - k * top - 0.5]], np.float64)
    bg = tuple(float(c) for c in np.asarray(background, np.float32).reshape(3))
    out = cv2.warpAffine(rgb, m, (img_w, img_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=bg)
    out_mask = cv2.warpAffine(
        mask, m, (img_w, img_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0
    )
    return np.clip(out, 0.0, 1.0).astype(np.float32), np.clip(out_mask, 0.0, 1.0).astype(np.float32)


def frame_image(img, img_h, img_w, fit="crop", background=(0.0, 0.0, 0.0)):
    """Centre-crop ('crop') or pad with ``background`` ('pad') to the aspect ratio img_w / img_h,
    then resize to (img_h, img_w). Works on any number of channels (float (h, w, C))."""
    if fit not in ("crop", "pad"):
        raise ValueError(f"fit must be 'crop' or 'pad', got {fit!r}")
    img = np.asarray(img, np.float32)
    channels = img.shape[2:]
    h, w = img.shape[:2]
    if h * img_w != w * img_h:  # not the target aspect ratio
        if fit == "crop":
            ch, cw = min(h, round(w * img_h / img_w)), min(w, round(h * img_w / img_h))
            top, left = (h - ch) // 2, (w - cw) // 2
            img = img[top : top + ch, left : left + cw]
        else:
            ph, pw = max(h, math.ceil(w * img_h / img_w)), max(w, math.ceil(h * img_w / img_h))
            canvas = np.empty((ph, pw) + img.shape[2:], np.float32)
            canvas[:] = np.asarray(background, np.float32)
            top, left = (ph - h) // 2, (pw - w) // 2
            canvas[top : top + h, left : left + w] = img
            img = canvas
    if img.shape[:2] != (img_h, img_w):
        shrink = img.shape[0] > img_h or img.shape[1] > img_w
        img = cv2.resize(img, (img_w, img_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        img = img.reshape((img_h, img_w) + channels)  # OpenCV drops a single channel's axis
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def to_network_input(img, img_h, img_w, fit="crop", background=(0.0, 0.0, 0.0)):
    """An RGB(A) image of any size -> float32 (img_h, img_w, 3) in [0, 1], without segmentation.

    Args:
        img: float (h, w, 3) RGB or (h, w, 4) RGBA (straight alpha) in [0, 1].
        img_h, img_w: the trained input size (px).
        fit: 'crop' (centre crop) or 'pad' (pad with ``background``) to the
            aspect ratio img_w / img_h before resizing.
        background: RGB in [0, 1] under transparent pixels and in the padding.
    An image already of the right size and without alpha passes through unchanged.
    """
    img = np.asarray(img, np.float32)
    if img.shape[-1] == 4:
        img = composite(img[..., :3], img[..., 3], background)
    return frame_image(img, img_h, img_w, fit, background)


# --------------------------------------------------------------------------
# all steps
# --------------------------------------------------------------------------
def _rgb_text(c):
    return "RGB " + ", ".join(str(round(255 * float(v))) for v in c)


def prepare_image(
    img, img_h, img_w, background=(0.0, 0.0, 0.0), framing=None, segment="auto", fit="auto", tolerance=DEFAULT_TOLERANCE
):
    """Segment, composite on ``background`` and frame one image for the network.

    Args:
        img: float (h, w, 3) RGB or (h, w, 4) RGBA in [0, 1].
        img_h, img_w: the trained input size (px).
        background: the training background, RGB in [0, 1].
        framing: :func:`measure_framing`'s dict (``differ.json``'s ``framing``), or None (unknown).
        segment: one of SEGMENTS. fit: one of FITS. tolerance: colour tolerance, 0..1.
    Returns:
        :class:`Prepared`. Its warnings say: the background differs from the training background and
        nothing was segmented; the mask is empty (the image is then used unmasked); the mask touches
        the image border on TOUCH_SIDES or more sides; it covers FULL_COVER or more of the image; the
        object's share of the network's frame is outside the training renders' 5th-95th percentile
        range widened by SHARE_FACTOR.
    Raises:
        ValueError: an unknown segment / fit, or fit='object' without a framing.
    """
    if segment not in SEGMENTS:
        raise ValueError(f"segment must be one of {SEGMENTS}, got {segment!r}")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
    if fit == "object" and framing is None:
        raise ValueError("fit='object' needs the training framing (measure_framing / differ.json's 'framing')")
    img = np.asarray(img, np.float32)
    rgb, bg = img[..., :3], np.asarray(background, np.float32).reshape(3)
    warnings, mask, used = [], None, "none"
    border = border_colour(rgb)
    uniform = border_is_uniform(rgb, tolerance)
    differs = float(np.abs(border - bg).max()) > tolerance
    if img.shape[-1] == 4:
        mask, used = img[..., 3], "alpha"
    else:
        if segment == "auto":
            segment = "border" if uniform and differs else "none"
        if segment == "border":
            mask, used = segment_border(rgb, tolerance), "border"
        elif segment == "grabcut":
            mask, used = segment_grabcut(rgb, tolerance), "grabcut"
    if mask is not None:
        box = bounding_box(mask)
        if box is None:
            warnings.append(f"the object mask ({used}) is empty; the image is used without a mask")
            if used != "alpha":
                mask, used = None, "none"
        else:
            top, bottom, left, right = box
            h, w = mask.shape
            sides = (top == 0) + (bottom == h) + (left == 0) + (right == w)
            if sides >= TOUCH_SIDES:
                warnings.append(
                    f"the object mask ({used}) touches the image border on {sides} of 4 sides: "
                    "the object may be cut off, or the background was not removed"
                )
            cover = float(np.mean(mask > 0.5))
            if cover >= FULL_COVER:
                warnings.append(
                    f"the object mask ({used}) covers {cover:.0%} of the image: the background was probably not found"
                )
    if used == "none" and img.shape[-1] == 3 and (differs or not uniform):
        what = f"border {_rgb_text(border)}" if uniform else "the border is not uniform"
        warnings.append(
            f"the background differs from the training background ({what}; training "
            f"{_rgb_text(bg)}) and no segmentation was applied; try --segment border "
            "(plain background) or --segment grabcut"
        )
    if fit == "auto":
        fit = "object" if mask is not None and bounding_box(mask) is not None and framing is not None else "crop"
    if fit == "object" and (mask is None or bounding_box(mask) is None):
        warnings.append("--fit object needs an object mask; centre-cropped instead (--fit crop)")
        fit = "crop"
    if mask is not None:
        rgb = composite(rgb, mask, bg)
    if fit == "object":
        image, net_mask = fit_object(rgb, mask, framing, img_h, img_w, bg)
    else:
        image = frame_image(rgb, img_h, img_w, fit, bg)
        net_mask = None if mask is None else frame_image(mask[..., None], img_h, img_w, fit, (0.0,))[..., 0]
    result = Prepared(image, net_mask, used, fit, warnings)
    if result.share is not None and framing is not None:
        lo, hi = framing["share_range"]
        if not lo / SHARE_FACTOR <= result.share <= hi * SHARE_FACTOR:
            warnings.append(
                f"the object covers {result.share:.0%} of the network's input, far from the "
                f"training renders' {framing['share']:.0%} (5th-95th percentile {lo:.0%}-{hi:.0%})"
            )
    return result
