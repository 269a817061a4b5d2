"""Pictures of clouds and projections: PNG grids, turntable GIFs, PLY files, a 3D window.

Everything here is numpy + matplotlib (Agg for files; the interactive window
uses whatever GUI backend matplotlib finds) + imageio + trimesh; no TensorFlow.
Clouds are drawn in the data's frame with world -x pointing up (the axis the
camera orbits around, see utils/render/camera.py).
"""

import os

import numpy as np

from utils.common import atomic_io

# Pictures of a predicted cloud scale it by its bounding box measured on coordinates clipped
# to +-PICTURE_BOX_CLIP (world units), so a few stray points do not shrink the drawing.
PICTURE_BOX_CLIP = 0.5

# Part colours (RGB in [0, 1]); index 0 is part 0 (the background has no points).
PART_COLOURS = np.array(
    [
        [0.00, 0.73, 1.00],
        [0.24, 1.00, 0.00],
        [1.00, 0.27, 0.00],
        [0.73, 0.00, 1.00],
        [1.00, 0.85, 0.10],
        [0.50, 0.50, 0.50],
        [0.90, 0.10, 0.50],
        [0.10, 0.40, 0.20],
    ]
)


def part_colours(labels):
    """int (...,) 0-based part labels -> float (..., 3) RGB."""
    return PART_COLOURS[np.asarray(labels) % len(PART_COLOURS)]


def label_map_to_rgb(label_map):
    """int (..., H, W) label map with 0 = background -> float (..., H, W, 3), background white."""
    label_map = np.asarray(label_map)
    out = np.ones(label_map.shape + (3,))
    fg = label_map > 0
    out[fg] = part_colours(label_map[fg] - 1)
    return out


def to_uint8(img):
    """float image in [0, 1] (or a mask) -> uint8 RGB (H, W, 3)."""
    img = np.clip(np.asarray(img, np.float64), 0.0, 1.0)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return (img * 255 + 0.5).astype(np.uint8)


def save_image_row(path, images, scale=3):
    """Save images (each (H, W) or (H, W, 3) in [0, 1]) side by side as one PNG, upscaled."""
    import imageio.v2 as imageio

    tiles = [np.kron(to_uint8(im), np.ones((scale, scale, 1), np.uint8)) for im in images]
    sep = np.full((tiles[0].shape[0], 2, 3), 128, np.uint8)
    row = np.concatenate([t for tile in tiles for t in (tile, sep)][:-1], axis=1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_io.writing(path, keep_suffix=True) as tmp:
        imageio.imwrite(tmp, row)


def draw_cloud(ax, xyz, colours, elev=20, azim=-60, point_size=6.0):
    """Scatter a cloud (N, 3), colours (N, 3) in [0, 1], on a matplotlib 3D axis; angles in degrees."""
    # The camera orbits about world x and world -x is "up" in the renders (utils/render/camera.py,
    # utils/data/shapenet.py): matplotlib z (up) <- -x, x <- -y, y <- z. That is the ShapeNet frame
    # (y up) turned so its y is up, a rotation: the picture is never the object's mirror image.
    # (Earlier versions drew x <- y, a mirror image; 180 - azim keeps their panels' viewpoints.)
    ax.scatter(
        -xyz[:, 1], xyz[:, 2], -xyz[:, 0], c=np.clip(colours, 0, 1), s=point_size, depthshade=False, linewidths=0
    )
    ax.view_init(elev=elev, azim=180 - azim)
    lim = 0.55
    ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_zlim(-lim, lim)
    ax.set_box_aspect((1, 1, 1))
    ax.set_axis_off()


def _offscreen_figure(figsize, dpi):
    """A figure drawn by the Agg canvas, whatever GUI backend pyplot would pick."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _figure_to_array(fig):
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def cloud_grid(
    image,
    clouds,
    angles=((20, -60), (20, 30), (20, 120), (80, 0)),
    titles=None,
    point_size=6.0,
    cell=2.2,
    legend=None,
    panels=None,
):
    """One figure: the input image, then each cloud seen from several angles.

    Args:
        image: float (H, W, 3) in [0, 1] or None.
        clouds: list of (xyz (N, 3), colours (N, 3) in [0, 1]) -- e.g. GT and prediction.
        angles: (elevation, azimuth) in degrees for matplotlib's camera.
        legend: optional list of (name, colour (3,)) drawn as a row of patches below (part names).
        panels: optional list of (title, image (h, w, 3) or (h, w) in [0, 1]) shown in the first
            row instead of ``image`` (e.g. the photo, the mask used and the network's input).
    Returns:
        uint8 (h, w, 3) picture.
    """
    n_img = len(panels) if panels else 1
    rows, cols = len(clouds), len(angles) + n_img
    fig = _offscreen_figure((cell * cols, cell * rows), 80)
    for r, (xyz, colours) in enumerate(clouds):
        for i in range(n_img):
            ax = fig.add_subplot(rows, cols, r * cols + i + 1)
            shown = panels[i][1] if panels and r == 0 else image if r == 0 else None
            if shown is not None:
                ax.imshow(np.clip(shown, 0, 1), cmap="gray", vmin=0, vmax=1)
            if panels and r == 0:  # a thin frame: a white photo stays visible on the white sheet
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_color("0.7")
            else:
                ax.set_axis_off()
            if panels and r == 0:
                ax.set_title(
                    panels[i][0] if i else f"{titles[r]}: {panels[0][0]}" if titles else panels[0][0], fontsize=9
                )
            elif titles and i == 0:
                ax.set_title(titles[r], fontsize=10)
        for c, (elev, azim) in enumerate(angles):
            ax3 = fig.add_subplot(rows, cols, r * cols + c + n_img + 1, projection="3d")
            draw_cloud(ax3, np.asarray(xyz), np.asarray(colours), elev, azim, point_size)
    fig.tight_layout()
    picture = _figure_to_array(fig)
    if legend:
        picture = np.concatenate([picture, _legend_strip(legend, picture.shape[1], 80)], axis=0)
    return picture


def _legend_strip(legend, width_px, dpi, height_in=0.35):
    """uint8 (h, width_px, 3) white strip with a row of coloured patches and names."""
    from matplotlib.patches import Patch

    fig = _offscreen_figure((width_px / dpi, height_in), dpi)
    fig.legend(
        handles=[Patch(color=np.clip(c, 0, 1), label=n) for n, c in legend],
        loc="center",
        ncol=len(legend),
        frameon=False,
        fontsize=9,
    )
    strip = _figure_to_array(fig)
    if strip.shape[1] != width_px:  # rounding of the figure size
        strip = np.pad(strip, ((0, 0), (0, max(0, width_px - strip.shape[1])), (0, 0)), constant_values=255)[
            :, :width_px
        ]
    return strip


def save_screenshot(path, image, clouds, titles=None, legend=None, panels=None):
    """Write :func:`cloud_grid` to ``path`` (PNG)."""
    import imageio.v2 as imageio

    grid = cloud_grid(image, clouds, titles=titles, legend=legend, panels=panels)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_io.writing(path, keep_suffix=True) as tmp:  # whole or not at all
        imageio.imwrite(tmp, grid)


def save_turntable_gif(path, clouds, n_frames=24, elev=20, point_size=6.0, duration=0.15):
    """Turntable GIF: the clouds (list of (xyz, colours)) side by side, rotating."""
    import imageio.v2 as imageio

    frames = []
    fig = _offscreen_figure((2.6 * len(clouds), 2.6), 70)
    axes = [fig.add_subplot(1, len(clouds), i + 1, projection="3d") for i in range(len(clouds))]
    for azim in np.linspace(0, 360, n_frames, endpoint=False):
        for ax, (xyz, colours) in zip(axes, clouds):
            ax.cla()
            draw_cloud(ax, np.asarray(xyz), np.asarray(colours), elev, azim, point_size)
        frames.append(_figure_to_array(fig))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_io.writing(path, keep_suffix=True) as tmp:
        imageio.mimsave(tmp, frames, duration=duration, loop=0)


def save_ply(path, xyz, colours, properties=None):
    """Coloured point cloud as a binary PLY file (MeshLab, Open3D, CloudCompare read it).

    Args:
        xyz: float (N, 3), stored as float32. colours: float (N, 3) in [0, 1], stored as uchar RGBA.
        properties: optional dict name -> (N,) numeric array, extra vertex properties after the
            colour (e.g. ``{"label": int32 part indices}``), typed as the array's dtype.
    """
    import trimesh

    rgba = np.concatenate([to_uint8(np.asarray(colours)[None])[0], np.full((len(xyz), 1), 255, np.uint8)], axis=1)
    cloud = trimesh.PointCloud(np.asarray(xyz, np.float64), colors=rgba)
    if properties:
        for name, values in properties.items():
            if np.shape(values) != (len(xyz),):
                raise ValueError(f"PLY property {name!r}: expected shape ({len(xyz)},), got {np.shape(values)}")
        # trimesh's PLY exporter writes any per-vertex ``vertex_attributes`` as extra properties
        cloud.vertex_attributes = {name: np.asarray(v) for name, v in properties.items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_io.writing(path, keep_suffix=True) as tmp:
        cloud.export(str(tmp), file_type="ply")


def display_problem():
    """None when matplotlib can open a window here; else why it cannot (a short phrase).

    Without a display (no ``DISPLAY`` on Linux, a remote shell, CI) matplotlib falls back to its
    non-interactive Agg backend, where ``plt.show()`` silently does nothing.
    """
    import matplotlib
    import matplotlib.pyplot  # noqa: F401  (resolves the backend)

    backend = matplotlib.get_backend().lower()
    try:
        from matplotlib.backends import BackendFilter, backend_registry

        interactive = backend_registry.list_builtin(BackendFilter.INTERACTIVE)
    except ImportError:  # matplotlib < 3.9
        from matplotlib.rcsetup import interactive_bk as interactive
    if backend in {b.lower() for b in interactive}:
        return None
    return f"matplotlib has no window to draw in here (its backend is '{backend}': no display found)"


def link_views(axes):
    """Make 3D axes turn together: dragging one gives the others its elevation, azimuth and roll,
    so ground truth and prediction are always seen from the same angle. Returns the callback id."""
    axes = list(axes)

    def follow(event):
        if event.inaxes not in axes:
            return
        src = event.inaxes
        for ax in axes:
            if ax is not src and (ax.elev, ax.azim, ax.roll) != (src.elev, src.azim, src.roll):
                ax.view_init(elev=src.elev, azim=src.azim, roll=src.roll)
        event.canvas.draw_idle()

    return axes[0].figure.canvas.mpl_connect("motion_notify_event", follow)


def interactive_viewer(samples):
    """A matplotlib window per sample: input image, GT and predicted clouds, rotating together
    (:func:`link_views`). Call :func:`display_problem` first: without a display nothing shows.

    Args:
        samples: iterable of dicts with 'title', 'image' (H, W, 3) and 'clouds'
            [(name, xyz, colours), ...].
    Keys: n / right arrow / space -> next sample; q / escape -> quit.
    """
    import matplotlib.pyplot as plt

    for sample in samples:
        clouds = sample["clouds"]
        fig = plt.figure(figsize=(4 * (len(clouds) + 1), 4))
        fig.suptitle(f"{sample['title']}    [n: next, q: quit; drag to rotate both]")
        ax = fig.add_subplot(1, len(clouds) + 1, 1)
        ax.imshow(np.clip(sample["image"], 0, 1)), ax.set_axis_off(), ax.set_title("input")
        views = []
        for i, (name, xyz, colours) in enumerate(clouds):
            ax3 = fig.add_subplot(1, len(clouds) + 1, i + 2, projection="3d")
            draw_cloud(ax3, np.asarray(xyz), np.asarray(colours), 20, -60, 8.0)
            ax3.set_title(name)
            views.append(ax3)
        link_views(views)
        state = {"quit": False}

        def on_key(event, state=state, fig=fig):
            if event.key in ("q", "escape"):
                state["quit"] = True
                plt.close(fig)
            elif event.key in ("n", "right", " "):
                plt.close(fig)

        fig.canvas.mpl_connect("key_press_event", on_key)
        plt.show()
        if state["quit"]:
            break
