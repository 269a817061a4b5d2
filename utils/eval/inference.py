"""Use a trained model on images of your own: image loading, batched prediction, outputs, export.

Shared by ``rgb/predict_rgb.py`` and ``partseg/predict_partseg.py``::

    python rgb/predict_rgb.py --exp experiments/demo_rgb photo.png more_photos/ --out predictions

* :func:`find_images` expands folders; :func:`read_image` decodes any PNG/JPEG and
  :func:`utils.eval.preprocess.prepare_image` turns it into what the network saw in training: float32
  (H, W, 3) RGB in [0, 1], the object found (alpha, ``--segment``) and composited on the training
  background (:func:`training_background`), framed as in the training renders (``--fit``,
  :mod:`utils.eval.framing`) at IMG_H x IMG_W (``args.json``), with a warning per image that is
  out of the model's reach.
* :class:`Predictor` restores a snapshot into one session (the network from
  :func:`utils.model.build_graph`, exactly as metrics build it) and runs images through it in
  batches of a static size, padding the last one.
* :func:`write_outputs` writes a coloured PLY (partseg: plus a ``label`` vertex property), a
  PNG sheet, optionally a turntable GIF and the raw arrays.
* :meth:`Predictor.export` writes a TensorFlow SavedModel (signature ``serving_default``:
  ``image`` -> ``xyz``, ``features``) that loads with plain TensorFlow, without this code.

A file that cannot be read as an image is reported with its path and skipped; the others go on.
"""

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

from utils import metrics
from utils.common import atomic_io, cli, tfv1, viewer, visualize
from utils.common.progress import Progress
from utils.common.tfv1 import tf
from utils.data import DataError, shapenet
from utils.eval import framing as input_framing
from utils.eval import preprocess
from utils.eval.evaluate import check_out_dir, open_trained
from utils.eval.preprocess import to_network_input
from utils.experiment import ExperimentStateError, WrongTask
from utils.model import GraphSettings, build_graph
from utils.task import Task, as_task
from utils.train import config
from utils.train.clouds import upright

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEMO_BACKGROUND = (0.0, 0.0, 0.0)  # utils/datagen/demo_data.py renders on black
FRAMES = ("shapenet", "network")
EXPORT_INFO = os.path.join("assets.extra", "differ.json")
SIGNATURE = "serving_default"

INPUT_NOTE = """\
what the model expects:
  It was trained on renders, so it does best on images that look like them: one object,
  centred, on a plain background, seen from about the training camera (distance 2 from the
  object's centre, focal 120 px at 64 px: a 30-degree field of view; the demo's objects fit a
  sphere of radius 0.46, so they fill most of the frame; demo elevations -10 to 40 degrees).
  The object is found (an alpha channel; else --segment: 'auto' removes a plain border-connected
  background that differs from the training one) and composited on the training background:
  measured on the training renders of args.json's data_dir when they are there, else black (the
  demo's); --background overrides. Then --fit 'object' (the default when there is a mask) scales
  and shifts the image so the object's bounding box has the training renders' median size and
  centre (<exp>/input_framing.json); 'crop'/'pad' centre-crop or pad to the trained aspect ratio.
  A 'warning:' line names each image that looks out of reach (background not removed, empty or
  cut-off mask, object share far from training's). Photos with clutter or a very different
  viewpoint give poorer clouds; the PNG sheet shows the mask and the network's actual input.
"""


class ImageError(ValueError):
    """An input file is missing, not an image, or cannot be decoded."""


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------
def find_images(paths):
    """Expand files and folders (their PNG/JPEG files, sorted, not recursive).

    Returns:
        (files, errors): list of paths; list of (path, reason) for paths that
        do not exist or folders without any image.
    """
    files, errors = [], []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(
                os.path.join(p, n)
                for n in os.listdir(p)
                if n.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(p, n))
            )
            if not found:
                errors.append((p, f"folder holds no image ({', '.join(IMAGE_EXTENSIONS)})"))
            files.extend(found)
        elif os.path.isfile(p):
            files.append(p)
        else:
            errors.append((p, "no such file or folder"))
    return files, errors


MAX_SIDE = 4096  # a larger input is reduced to this many pixels on its longer side, with a note
MAX_PIXELS = 100_000_000  # a larger one (over 100 megapixels) is refused before it is decoded


def image_size(data):
    """(width, height) from a PNG's or JPEG's header (bytes or a uint8 array), or None when unknown."""
    buf = memoryview(data).cast("B")
    if buf[:8] == b"\x89PNG\r\n\x1a\n" and len(buf) >= 24:
        return int.from_bytes(buf[16:20], "big"), int.from_bytes(buf[20:24], "big")
    if buf[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(buf) and buf[i] == 0xFF:
            marker = buf[i + 1]
            if marker == 0xFF:
                i += 1
                continue
            if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
                return int.from_bytes(buf[i + 7 : i + 9], "big"), int.from_bytes(buf[i + 5 : i + 7], "big")
            if marker in (0xD9, 0xDA):
                return None
            i += 2 + int.from_bytes(buf[i + 2 : i + 4], "big")
    return None


def read_image(path, notes=None):
    """Decode a PNG/JPEG (8 or 16 bit, grey, RGB or RGBA) -> float32 (h, w, 3 or 4) RGB(A) in [0, 1],
    upright as a photo viewer shows it (its EXIF orientation applied, :func:`preprocess.apply_orientation`).

    An image over :data:`MAX_SIDE` px on its longer side is reduced to that size (area averaging)
    before anything else, with a sentence in ``notes`` (a list, when given); one over
    :data:`MAX_PIXELS` is refused before it is decoded. Raises ImageError naming the file when it
    cannot be read or decoded.
    """
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as err:
        raise ImageError(f"{path}: cannot read file ({err.strerror or err})") from None
    size = image_size(data) if data.size else None
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise ImageError(
            f"{path}: {size[0]}x{size[1]} px ({size[0] * size[1] / 1e6:.0f} megapixels), more than the "
            f"{MAX_PIXELS / 1e6:.0f} this tool reads; expected a smaller image (the network sees a few "
            "dozen pixels: reduce it first)"
        )
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None  # (no EXIF orientation applied)
    if img is None:
        raise ImageError(f"{path}: not a readable image; expected a PNG or JPEG file")
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{path}: unsupported pixel type {img.dtype}; expected 8- or 16-bit channels")
    img = preprocess.apply_orientation(img, preprocess.exif_orientation(data))
    h, w = img.shape[:2]
    if max(h, w) > MAX_SIDE:
        k = MAX_SIDE / max(h, w)
        small = (max(1, round(w * k)), max(1, round(h * k)))
        img = cv2.resize(img, small, interpolation=cv2.INTER_AREA).reshape(small[::-1] + img.shape[2:])
        if notes is not None:
            notes.append(
                f"{path}: {w}x{h} px, reduced to {small[0]}x{small[1]} px (inputs over {MAX_SIDE} px a side "
                "are reduced before use)"
            )
    img = img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 65535.0)
    if img.ndim == 2:
        img = img[..., None]
    channels = img.shape[-1]
    if channels == 1:
        return np.repeat(img, 3, axis=-1)
    if channels == 2:  # grey + alpha
        return np.concatenate([np.repeat(img[..., :1], 3, axis=-1), img[..., 1:]], axis=-1)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    raise ImageError(f"{path}: {channels} channels; expected grey, RGB or RGBA")


def load_image(path, img_h, img_w, fit="crop", background=DEMO_BACKGROUND):
    """:func:`read_image` then :func:`to_network_input`."""
    return to_network_input(read_image(path), img_h, img_w, fit, background)


def training_background(targs, tree="", n_models=4):
    """The colour outside the object in the training renders, RGB in [0, 1], and where it came from.

    Measured as the per-channel median over the background pixels (depth >= 254) of the first
    views of a few training models, read as the training loader reads them (alpha dropped).
    Without the data set: the demo's black. ``tree``: the task's data tree (Task.data_tree).
    """
    from utils import data

    try:
        models = data.list_models(targs.data_dir, targs.category, "train", tree)[:n_models]
        rendered = os.path.join(data.tree_dirs(targs.data_dir, tree)["rendered"], shapenet.synset_id(targs.category))
        pixels = []
        for m in models:
            rgb = data.read_rgb(os.path.join(rendered, m, data.render_file(0)), targs.IMG_H, targs.IMG_W)
            mask = data.read_mask(os.path.join(rendered, m, data.depth_file(0)), targs.IMG_H, targs.IMG_W)
            pixels.append(rgb[mask < 0.5])
        pixels = np.concatenate(pixels)
        if len(pixels) == 0:
            raise data.DataError("no background pixels")
    except (data.DataError, OSError, ValueError):
        return DEMO_BACKGROUND, "the demo's black (training renders not found)"
    colour = tuple(float(c) for c in np.median(pixels, axis=0))
    return colour, f"measured on {len(models)} training renders in {targs.data_dir}"


def check_images(images, img_h, img_w):
    """The network's input as float32, or ValueError saying what was expected: a floating-point
    array (n, img_h, img_w, 3) of finite RGB values in [0, 1] (1e-3 of slack for resampling)."""
    a = np.asarray(images)
    want = f"expected float32 (n, {img_h}, {img_w}, 3) RGB in [0, 1]"
    if a.dtype.kind != "f":
        hint = "; divide 8-bit pixels by 255" if a.dtype.kind in "ui" else ""
        raise ValueError(f"images: {want}, got dtype {a.dtype}{hint}")
    if a.ndim != 4 or a.shape[1:] != (img_h, img_w, 3):
        hint = "; one image: add a batch axis (images[None])" if a.shape == (img_h, img_w, 3) else ""
        hint = hint or ("; resize it first (utils.eval.preprocess.prepare_image)" if a.ndim == 4 else "")
        raise ValueError(f"images: {want}, got shape {a.shape}{hint}")
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError(f"images: {want}, got NaN or inf values")
    if a.size and (a.min() < -1e-3 or a.max() > 1 + 1e-3):
        raise ValueError(f"images: {want}, got values from {a.min():g} to {a.max():g}")
    return a.astype(np.float32, copy=False)


# --------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------
class Predictor:
    """A trained experiment restored into one session; images in, clouds out.

    Args:
        exp_dir: experiment folder (args.json, snapshots/, best/).
        task: a Task (rgb.task.TASK, partseg.task.TASK, ...); must be the task the experiment trained.
        snapshot: 'best', 'latest' or an iteration number.
        batch_size: images per session run (static in the graph; the last batch is padded).
        threads: TensorFlow thread pools (0 = TensorFlow's choice).
    """

    def __init__(
        self, exp_dir: str, task: Task | str, snapshot: str = "best", batch_size: int = 8, threads: int = 0
    ) -> None:
        # args.json, the task and a checkpoint that reads back in full, before any graph is built
        args, _, self.checkpoint, self.step = open_trained(exp_dir, task, snapshot, "predict")
        self.args = task.resolve_args(args)
        self.task, self.batch_size, self.threads = task, int(batch_size), threads
        tfv1.use_graph_mode()  # a TF1-style graph and session (no-op when already switched)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.g = build_graph(GraphSettings.from_args(self.args, task), task, self.batch_size, training=False)
            saver = tf.train.Saver(tf.global_variables("recon_net"))
        self.sess = tf.Session(graph=self.graph, config=tfv1.session_config(threads))
        saver.restore(self.sess, self.checkpoint)

    @property
    def image_size(self) -> tuple[int, int]:
        """(IMG_H, IMG_W), the trained input size in pixels."""
        return int(self.args.IMG_H), int(self.args.IMG_W)

    def warm_up(self) -> None:
        """One run on a blank batch, so that TensorFlow's one-off set-up is not timed later."""
        H, W = self.image_size
        self.sess.run(self.g.xyz, {self.g.ph["image"]: np.zeros((self.batch_size, H, W, 3), np.float32)})

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 (n, H, W, 3) RGB in [0, 1] -> xyz (n, N, 3), features (n, N, C), network frame.

        Runs ceil(n / batch_size) session calls; the last batch is padded by
        repeating its last image and the padding is dropped from the result.
        Raises ValueError (:func:`check_images`) for another rank, size, dtype or value range.
        """
        images = check_images(images, *self.image_size)
        B, xyz, feat = self.batch_size, [], []
        for start in range(0, len(images), B):
            chunk = images[start : start + B]
            n = len(chunk)
            if n < B:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], B - n, axis=0)])
            x, f = self.sess.run([self.g.xyz, self.g.feat], {self.g.ph["image"]: chunk})
            xyz.append(x[:n])
            feat.append(f[:n])
        if not xyz:
            n_pts, n_feat = self.g.feat.shape.as_list()[1:]
            return np.zeros((0, n_pts, 3), np.float32), np.zeros((0, n_pts, n_feat), np.float32)
        return np.concatenate(xyz), np.concatenate(feat)

    def export(self, out_dir: str, info: dict | None = None) -> str:
        """Write a SavedModel of the network to ``out_dir`` (which must not exist or be empty).

        Signature ``serving_default``: input ``image`` float32 (batch, H, W, 3) RGB in [0, 1]
        (any batch size); outputs ``xyz`` float32 (batch, N, 3) in the network frame and
        ``features`` float32 (batch, N, C) (colours in [0, 1], or part probabilities).
        ``assets.extra/differ.json`` describes the model (sizes, frames, training flags) plus
        ``info`` (the CLI adds the background to composite transparent images on, part names).
        Written into a temporary folder and renamed into place.
        """
        out_dir = os.path.abspath(out_dir)
        if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
            raise FileExistsError(f"--export {out_dir}: already exists; choose a new folder or remove it")
        atomic_io.remove_leftovers(os.path.dirname(out_dir), names={os.path.basename(out_dir)}, warn=cli.warn)
        H, W = self.image_size
        meta = dict(
            task=self.task.name,
            signature=SIGNATURE,
            input="image",
            input_spec=f"float32 (batch, {H}, {W}, 3), RGB in [0, 1]; another rank, size or dtype is refused "
            "(InvalidArgumentError)",
            outputs=dict(
                xyz=f"float32 (batch, {self.args.N_PTS}, 3), network frame (world -x up)",
                features=f"float32 (batch, {self.args.N_PTS}, {self.g.feat.shape[-1]}), " + self.task.feature_phrase,
            ),
            to_shapenet_frame="(x, y, z) -> (z, -x, -y): the frame of the data set's clouds, y up",
            IMG_H=H,
            IMG_W=W,
            N_PTS=int(self.args.N_PTS),
            checkpoint=self.checkpoint,
            step=int(self.step),
            train_args=vars(self.args),
            **(info or {}),
        )
        graph = tf.Graph()
        # A working folder beside out_dir (removed on failure; a killed run's at the next export there)
        with atomic_io.WorkDir(out_dir) as work, graph.as_default():
            tmp = str(work.path / "model")  # the SavedModel builder makes its own folder
            # The signature's input: float32 (batch, H, W, 3). A loaded TF1 signature does not check
            # what it is fed, so a runtime check comes first: another rank or size fails there with
            # "Shape of tensor image [...] is not compatible with expected shape [?,H,W,3]" (not a
            # reshape into another number of clouds, nor an abort in a oneDNN kernel); another dtype
            # is refused by the signature itself. Batch None: no op of the network needs a static
            # batch size. Resource variables: TF2's tf.saved_model.load tracks them.
            image = tf.placeholder(tf.float32, [None, H, W, 3], "image")
            checked = tf.ensure_shape(image, [None, H, W, 3], name="image_checked")
            with tf.variable_scope(tf.get_variable_scope(), use_resource=True):
                g = build_graph(self.g.settings, self.task, None, training=False, image=checked)
            saver = tf.train.Saver(tf.global_variables("recon_net"))
            with tf.Session(graph=graph, config=tfv1.session_config(self.threads)) as sess:
                saver.restore(sess, self.checkpoint)
                signature = tf.saved_model.predict_signature_def(
                    inputs={"image": image}, outputs={"xyz": g.xyz, "features": g.feat}
                )
                builder = tf.saved_model.Builder(tmp)
                builder.add_meta_graph_and_variables(
                    sess, [tf.saved_model.SERVING], signature_def_map={SIGNATURE: signature}, strip_default_attrs=True
                )
                with atomic_io.naming(tmp):
                    builder.save()
            info_path = os.path.join(tmp, EXPORT_INFO)
            os.makedirs(os.path.dirname(info_path), exist_ok=True)
            with atomic_io.naming(info_path), open(info_path, "w") as f:
                json.dump(meta, f, indent=2, sort_keys=True, default=str)
            if os.path.isdir(out_dir):
                os.rmdir(out_dir)  # empty (checked above)
            os.replace(tmp, out_dir)
        return out_dir

    def close(self) -> None:
        self.sess.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# --------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------
def output_names(paths):
    """File stems for the outputs of ``paths``, made unique with _2, _3 ... suffixes."""
    names, seen = [], set()
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0] or "image"
        name, k = stem, 1
        while name in seen:
            k += 1
            name = f"{stem}_{k}"
        seen.add(name)
        names.append(name)
    return names


def _sheet_panels(photo, prep):
    """[(title, image)] for the PNG sheet: the photo, the mask used (if any), the network's input."""
    shown = photo if photo.shape[-1] == 3 else preprocess.composite(photo[..., :3], photo[..., 3], (1.0, 1.0, 1.0))
    panels = [("image", shown)]
    if prep.mask is not None:
        panels.append((f"mask ({prep.segment})", prep.mask))
    return panels + [(f"network input ({prep.fit})", prep.image)]


def write_outputs(
    out_dir, name, image, xyz, feat, task, frame="shapenet", sheet=True, gif=False, npy=False, legend=None, panels=None
):
    """Write one prediction. Returns the list of written paths.

    Args:
        image: float32 (H, W, 3), the network's input.
        xyz: float32 (N, 3), network frame. feat: float32 (N, C).
        frame: 'shapenet' (y up, the frame of the data set's cloud files) or 'network' (world -x up)
            for the PLY and .npy files; the pictures are drawn upright either way.
    Files: <name>.ply (colours; partseg also a ``label`` vertex property: the argmax part index,
    0-based), <name>.png (input + the cloud from 4 angles; with ``panels``, a list of (title, image
    (h, w, 3) or (h, w)), those images instead of ``image``), <name>.gif (turntable),
    <name>_xyz.npy (N, 3) and <name>_features.npy (N, C).
    """
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
    out_xyz = shapenet.undo_preprocess_pcl_gt(xyz).astype(np.float32) if frame == "shapenet" else xyz
    colours = task.point_colours(feat)
    written = [os.path.join(out_dir, name + ".ply")]
    visualize.save_ply(written[-1], out_xyz, colours, properties=task.point_properties(feat))
    shown = metrics.scale_to_unit_cube_np(xyz, visualize.PICTURE_BOX_CLIP)
    if sheet:
        written.append(os.path.join(out_dir, name + ".png"))
        visualize.save_screenshot(written[-1], image, [(shown, colours)], titles=[name], legend=legend, panels=panels)
    if gif:
        written.append(os.path.join(out_dir, name + ".gif"))
        visualize.save_turntable_gif(written[-1], [(shown, colours)])
    if npy:
        written += [os.path.join(out_dir, name + "_xyz.npy"), os.path.join(out_dir, name + "_features.npy")]
        for path, array in ((written[-2], out_xyz), (written[-1], feat)):
            with atomic_io.writing(path, keep_suffix=True) as tmp:  # whole or not at all
                np.save(tmp, array)
    return written


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------
def _background_arg(text):
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected R,G,B with values in 0..255 (e.g. 0,0,0 or 255,255,255), got {text!r}"
        )
    return tuple(v / 255.0 for v in values)


def _tolerance_arg(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"expected a colour difference in 0..255 (e.g. 24), got {text!r}")
    return value / 255.0


def predict_parser(task):
    """argparse parser for ``<task>/predict_<task>.py``; ``task``: a Task (or its name)."""
    task = as_task(task)
    p = argparse.ArgumentParser(
        prog=f"predict_{task.name}.py",
        description=f"Reconstruct {task.output_phrase} point clouds from your own images with a trained DIFFER "
        f"({task.name})\nexperiment, and/or export it as a TensorFlow SavedModel. Writes per image into "
        f"--out:\n<name>.ply ({task.ply_phrase}), <name>.png (input + the cloud from 4 angles),\n"
        "with --gif <name>.gif (turntable), with --npy <name>_xyz.npy and <name>_features.npy;\n"
        f"per run {viewer.VIEWER_FILE} (every input beside its cloud, to turn in a browser, offline).",
        epilog=INPUT_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs", nargs="*", metavar="IMAGE_OR_FOLDER", help="PNG/JPEG files of any size, or folders of them"
    )
    p.add_argument("--exp", required=True, help="experiment folder written by training (holds args.json)")
    p.add_argument("--snapshot", default="best", help="'best', 'latest' or an iteration number (default: best)")
    p.add_argument("--out", default=None, help="output folder (default: <exp>/predictions)")
    p.add_argument(
        "--segment",
        choices=preprocess.SEGMENTS,
        default="auto",
        help="find the object in images without alpha: 'border' removes the background connected "
        "to the image border (colours within --tolerance of the border's), 'grabcut' runs "
        "OpenCV's GrabCut from the border (also on a textured background), 'none' keeps the image "
        "(default auto: border when the border is nearly uniform and differs from the training "
        "background, else none)",
    )
    p.add_argument(
        "--tolerance",
        type=_tolerance_arg,
        default=preprocess.DEFAULT_TOLERANCE,
        metavar="T",
        help=f"0..255 colour difference (largest channel) still counted as background "
        f"(default: {round(255 * preprocess.DEFAULT_TOLERANCE)})",
    )
    p.add_argument(
        "--fit",
        choices=preprocess.FITS,
        default="auto",
        help="'object': scale and shift so the object fills the frame as in the training renders; "
        "'crop'/'pad': centre-crop or pad with the background to the trained aspect ratio "
        "(default auto: object when there is a mask, else crop)",
    )
    p.add_argument(
        "--background",
        type=_background_arg,
        default=None,
        metavar="R,G,B",
        help="0..255 colour under transparent pixels and in the padding (default: the training "
        "renders' background, see below)",
    )
    p.add_argument(
        "--frame",
        choices=FRAMES,
        default="shapenet",
        help="frame of the PLY/.npy coordinates: 'shapenet' (y up, like the data set's clouds) "
        "or 'network' (the network's output, world -x up) (default: shapenet)",
    )
    p.add_argument("--batch_size", type=cli.positive_int, default=8, help="images per session run (default: 8)")
    p.add_argument("--gif", action="store_true", help="also write a turntable GIF per image")
    p.add_argument("--npy", action="store_true", help="also write the raw arrays (xyz, features) as .npy")
    p.add_argument("--no_sheet", action="store_true", help="skip the PNG sheets (faster on large folders)")
    p.add_argument(
        "--no_viewer",
        action="store_true",
        help=f"skip {viewer.VIEWER_FILE}, the offline HTML page that shows each input beside its cloud to turn "
        f"in a browser (the first {viewer.MAX_SAMPLES} images of the run)",
    )
    p.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="write a TensorFlow SavedModel (signature serving_default: image -> xyz, features) "
        "to DIR; loads with plain TensorFlow, without this repository",
    )
    p.add_argument("--gpu", default=None, help="GPU index to use (sets CUDA_VISIBLE_DEVICES)")
    p.add_argument("--no_progress", action="store_true", help="no progress bar (it only shows on a terminal)")
    p.add_argument("--verbose", action="store_true", help=config.VERBOSE_HELP)
    return p


def run(task, args):
    """Predict (and/or export) as described by the parsed flags.

    Returns a dict: 'outputs' {input path: [written files]}, 'errors' [(path, message)],
    'warnings' [(path, message)] (inputs out of the model's reach, :func:`preprocess.prepare_image`),
    'export' (path or None), 'images_per_s' (network only) and 'total_s'.
    """
    tfv1.use_graph_mode()  # the process-wide switch, here in the entry point, not at import
    tfv1.select_gpu(args.gpu)
    tfv1.set_verbose(args.verbose)
    result = dict(outputs={}, errors=[], warnings=[], export=None, viewer=None, images_per_s=None, total_s=0.0)
    t_start = time.perf_counter()
    with Predictor(args.exp, task, args.snapshot, args.batch_size) as pred:
        print(
            f"{task.name} model: {args.exp}, snapshot {args.snapshot} (iteration {pred.step}), "
            f"input {pred.image_size[0]}x{pred.image_size[1]}, {pred.args.N_PTS} points"
        )
        background, source = (
            (args.background, "--background")
            if args.background is not None
            else training_background(pred.args, task.data_tree)
        )
        framing, framing_source = input_framing.training_framing(args.exp, pred.args, task.data_tree)
        if args.fit == "object" and framing is None:
            raise ValueError(f"--fit object: the training framing is {framing_source}; use --fit crop")
        if args.export:
            legend = task.legend(pred.args.data_dir, pred.args.category, pred.g.settings.n_feat)
            info = dict(
                background_rgb=[round(255 * c) for c in background],
                background_source=source,
                framing=framing,
                framing_source=framing_source,
                preprocess="utils/eval/preprocess.py (numpy + OpenCV): prepare_image(image, IMG_H, IMG_W, "
                "background_rgb / 255, framing); see docs/inference.md",
            )
            if legend:
                info["part_names"] = [name for name, _ in legend]
            result["export"] = pred.export(args.export, info)
            print(f"SavedModel: {result['export']} (signature '{SIGNATURE}': image -> xyz, features)")
        if args.inputs:
            print(
                f"background for transparent pixels and padding: RGB "
                f"{tuple(round(255 * c) for c in background)} ({source})\n"
                f"training framing for --fit object: {framing_source}"
            )
            _predict_files(pred, task, args, background, result, framing)
    result["total_s"] = time.perf_counter() - t_start
    if result["errors"]:
        print(f"skipped {len(result['errors'])} input(s), listed above", file=sys.stderr)
    return result


def main(task, argv=None):
    """Entry point of predict_<task>.py; returns :func:`run`'s result."""
    parser = predict_parser(task)
    args = parser.parse_args(argv)
    if not args.inputs and not args.export:
        parser.error("give images or folders to predict, and/or --export DIR")
    if args.inputs:  # refused before anything is loaded or created
        check_out_dir(args.out or os.path.join(args.exp, "predictions"), "--out")
    if args.export and os.path.exists(args.export) and (not os.path.isdir(args.export) or os.listdir(args.export)):
        raise cli.CLIError(f"--export {os.path.abspath(args.export)}: already exists; expected a new or empty folder")
    return run(task, args)


# Failures whose one-line message says everything (utils.common.cli): no traceback.
EXPECTED_ERRORS = (DataError, ExperimentStateError, WrongTask, ImageError)


def cli_main(task):
    """``predict_<task>.py`` on the command line: :func:`main` behind utils.common.cli's one error path;
    status 1 when an input was skipped."""
    cli.exit_with(f"predict_{task.name}", lambda argv: 1 if main(task, argv)["errors"] else 0, expected=EXPECTED_ERRORS)


SMALL_INPUT_FACTOR = 2  # an input whose side is under 1/2 of the network's is announced


def small_input_note(path, shape, img_h, img_w):
    """A warning text when an image of ``shape`` (h, w, ...) is far smaller than the network's input, else None."""
    h, w = shape[:2]
    if h * SMALL_INPUT_FACTOR <= img_h or w * SMALL_INPUT_FACTOR <= img_w:
        return (
            f"{path}: {w}x{h} px, far smaller than the network's {img_w}x{img_h} input; it is enlarged "
            f"and the cloud is likely poor"
        )
    return None


def _skip(result, path, message, write=None):
    result["errors"].append((path, message))
    (write or print)(f"skipped: {message}", file=sys.stderr)


def _predict_files(pred, task, args, background, result, framing=None):
    files, errors = find_images(args.inputs)
    for path, reason in errors:
        _skip(result, path, f"{path}: {reason}")
    out_dir = args.out or os.path.join(args.exp, "predictions")  # made when the first output is written
    atomic_io.remove_leftovers(out_dir, warn=cli.warn)  # files half-written by a killed run
    names = dict(zip(files, output_names(files)))
    legend = task.legend(pred.args.data_dir, pred.args.category, pred.g.settings.n_feat)
    H, W = pred.image_size
    B = pred.batch_size
    if files:
        pred.warm_up()
    net_s, n_done, t_start = 0.0, 0, time.perf_counter()
    page = []  # the viewer page's samples (the first viewer.MAX_SAMPLES)
    with Progress(len(files), f"predict {task.name}", unit="image", enabled=not args.no_progress) as bar:
        for start in range(0, len(files), B):
            batch, images, panels = [], [], []
            for path in files[start : start + B]:
                try:
                    notes = []
                    photo = read_image(path, notes)
                    note = small_input_note(path, photo.shape, H, W)
                    for text in notes + ([note] if note else []):
                        cli.warn(text)
                except ImageError as err:
                    _skip(result, path, str(err), bar.write)
                    continue
                prep = preprocess.prepare_image(
                    photo, H, W, background, framing, args.segment, args.fit, args.tolerance
                )
                for warning in prep.warnings:
                    cli.warn(f"{path}: {warning}")
                result["warnings"].extend((path, w) for w in prep.warnings)
                images.append(prep.image)
                panels.append(_sheet_panels(photo, prep))
                batch.append(path)
            if batch:
                t0 = time.perf_counter()
                xyz, feat = pred.predict(np.stack(images))
                net_s += time.perf_counter() - t0
                n_done += len(batch)
                os.makedirs(out_dir, exist_ok=True)
                for i, path in enumerate(batch):
                    result["outputs"][path] = write_outputs(
                        out_dir,
                        names[path],
                        images[i],
                        xyz[i],
                        feat[i],
                        task,
                        frame=args.frame,
                        sheet=not args.no_sheet,
                        gif=args.gif,
                        npy=args.npy,
                        legend=legend,
                        panels=panels[i],
                    )
                    if len(page) < viewer.MAX_SAMPLES:
                        cloud = ("prediction", upright(xyz[i], visualize.PICTURE_BOX_CLIP), task.point_colours(feat[i]))
                        page.append(dict(title=names[path], image=images[i], clouds=[cloud]))
            bar.update(len(files[start : start + B]))
    if n_done and not args.no_viewer:
        _viewer_page(pred, task, args, out_dir, page, n_done, result, legend)
    if n_done:
        result["images_per_s"] = n_done / net_s
        total = time.perf_counter() - t_start
        print(
            f"predicted {n_done} image(s) -> {os.path.abspath(out_dir)}\n"
            f"speed: network {result['images_per_s']:.1f} images/s at batch {B}; with reading and "
            f"writing {n_done / total:.1f} images/s"
        )


def _viewer_page(pred, task, args, out_dir, page, n_done, result, legend=None):
    """``<out>/viewer.html`` (utils.common.viewer): each input image beside its predicted cloud."""
    path = os.path.join(out_dir, viewer.VIEWER_FILE)
    lines = [
        f"snapshot {args.snapshot} (iteration {pred.step}); left: the network's input (after --segment and --fit), "
        f"right: the predicted {task.output_phrase} cloud, scaled to the unit cube, y up"
    ]
    info = viewer.write_viewer(path, page, f"{task.name} predictions: {args.exp}", lines, n_given=n_done, legend=legend)
    result["viewer"] = path
    shown = f"{n_done} image{'s' * (n_done != 1)}"
    if info["n_shown"] < n_done:
        shown = f"the first {info['n_shown']} of {n_done} images"
    print(f"viewer: {path} ({shown}, {info['bytes'] / 2**20:.1f} MiB; open it in a browser, no network needed)")
