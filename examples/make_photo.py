"""Make a photo-like test image from a training-style render: the object, enlarged and moved, on
another background (a plain colour or a picture), as a product photo would show it.

    python examples/make_photo.py data/ShapeNet_rendered/03001627/chair_0031/render_3.png \\
        --background 128,128,128 --scale 2.4 --shift 8,-20 --out outputs/photo_grey.png

The mask is the render's ``depth_<k>.png`` beside it (object where < 254). ``--background
backdrop`` is a textured photograph that ships with matplotlib (:func:`sample_backdrop`). Used by
the docs' example (docs/inference.md) and by tests/test_preprocess.py.
"""

import argparse
import os

import cv2
import numpy as np

# The studio backdrop of matplotlib's grace_hopper.jpg (rows, columns of its 600 x 512 pixels): mottled
# blue, with no other object in it, as behind a product photo.
BACKDROP_ROWS, BACKDROP_COLS = (0, 260), (380, 512)


def sample_photo():
    """matplotlib's sample photograph grace_hopper.jpg (installed with it): float32 (600, 512, 3) RGB in [0, 1]."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        bgr = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255


def sample_backdrop():
    """A textured background: the studio backdrop of :func:`sample_photo`, float32 (260, 132, 3) RGB in [0, 1]."""
    return sample_photo()[slice(*BACKDROP_ROWS), slice(*BACKDROP_COLS)]


def photo_like(rgb, alpha, background, scale, dy, dx, h=180, w=220):
    """The render enlarged ``scale`` times (bilinear: a soft, anti-aliased edge) and composited on
    ``background`` in an h x w frame, shifted (dy, dx) px from the centre.

    Args:
        rgb: float (H, W, 3) in [0, 1]. alpha: float (H, W) in [0, 1], the object's mask.
        background: RGB in [0, 1], or an image float (h', w', 3) resized to fill the frame.
    Returns:
        (photo float32 (h, w, 3), the true alpha float32 (h, w)).
    """
    big = cv2.resize(np.asarray(rgb, np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    a = np.clip(
        cv2.resize(np.asarray(alpha, np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR), 0, 1
    )
    canvas = np.empty((h, w, 3), np.float32)
    canvas[:] = (
        cv2.resize(np.asarray(background, np.float32), (w, h), interpolation=cv2.INTER_AREA)
        if np.ndim(background) == 3
        else background
    )
    top, left = (h - a.shape[0]) // 2 + dy, (w - a.shape[1]) // 2 + dx
    if top < 0 or left < 0 or top + a.shape[0] > h or left + a.shape[1] > w:
        raise ValueError(
            f"the object ({a.shape[0]}x{a.shape[1]} px at row {top}, column {left}) leaves the "
            f"{h}x{w} frame; choose a smaller --scale or --shift"
        )
    full = np.zeros((h, w), np.float32)
    rows, cols = slice(top, top + a.shape[0]), slice(left, left + a.shape[1])
    full[rows, cols] = a
    region = canvas[rows, cols]
    canvas[rows, cols] = big * a[..., None] + region * (1 - a[..., None])
    return canvas, full


def _pair(text):
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two integers A,B, got {text!r}") from None
    return a, b


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("render", help="render_<k>.png (its depth_<k>.png beside it gives the mask)")
    p.add_argument(
        "--background",
        default="255,255,255",
        help="R,G,B (0..255), a picture file, or 'backdrop' (a textured photograph shipped with "
        "matplotlib) to put behind the object (default: white)",
    )
    p.add_argument("--scale", type=float, default=2.0, help="enlargement of the render (default: 2)")
    p.add_argument("--shift", type=_pair, default=(0, 0), metavar="ROWS,COLS", help="offset from the centre (px)")
    p.add_argument("--size", type=_pair, default=(180, 220), metavar="H,W", help="photo size (default: 180,220)")
    p.add_argument("--out", required=True, help="PNG to write")
    args = p.parse_args(argv)
    depth = args.render.replace("render_", "depth_")
    bgr, dep = cv2.imread(args.render), cv2.imread(depth)
    if bgr is None or dep is None:
        p.error(f"{args.render if bgr is None else depth}: not a readable image")
    if args.background == "backdrop":
        background = sample_backdrop()
    elif os.path.isfile(args.background):
        background = cv2.cvtColor(cv2.imread(args.background), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    else:
        try:
            background = [int(v) / 255 for v in args.background.split(",")]
            assert len(background) == 3
        except (ValueError, AssertionError):
            p.error(f"--background: expected R,G,B or a picture file, got {args.background!r}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    try:
        photo, _ = photo_like(
            rgb, (dep[..., 0] < 254).astype(np.float32), background, args.scale, *args.shift, *args.size
        )
    except ValueError as err:
        p.error(str(err))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(np.round(photo * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
