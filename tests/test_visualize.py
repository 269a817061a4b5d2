"""Pictures: turntable GIFs, the interactive window's linked views, --visualize without a display."""

from argparse import Namespace

import imageio.v2 as imageio
import matplotlib
import numpy as np

from utils.common import visualize

matplotlib.use("Agg")  # no window in tests, whatever the machine has
RED, BLUE = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]


def _l_shape(n=60):
    """An L of points (not symmetric about the vertical axis, so it looks different as it turns)."""
    t = np.linspace(-0.4, 0.4, n // 2)
    return np.concatenate(
        [
            np.stack([t, np.full_like(t, -0.4), np.zeros_like(t)], 1),
            np.stack([np.full_like(t, 0.4), t, np.zeros_like(t)], 1),
        ]
    )


def _share(frame, colour):
    """Fraction of a frame's pixels near ``colour`` (0..1 RGB)."""
    return np.mean(np.all(np.abs(frame[..., :3] / 255.0 - colour) < 0.25, axis=-1))


def test_turntable_gif_turns_both_clouds_side_by_side(tmp_path):
    xyz = _l_shape()
    path = tmp_path / "sub" / "turn.gif"
    visualize.save_turntable_gif(
        str(path), [(xyz, np.tile(RED, (len(xyz), 1))), (xyz, np.tile(BLUE, (len(xyz), 1)))], n_frames=8
    )
    frames = imageio.mimread(str(path))
    assert len(frames) == 8 and all(f.shape == frames[0].shape for f in frames)
    w = frames[0].shape[1]
    for f in frames:  # the first cloud on the left, the second on the right, in every frame
        assert _share(f[:, : w // 2], RED) > 0.001 and _share(f[:, w // 2 :], RED) == 0
        assert _share(f[:, w // 2 :], BLUE) > 0.001 and _share(f[:, : w // 2], BLUE) == 0
    assert len({f.tobytes() for f in frames}) == 8  # every frame a different angle


def _figure_with_two_clouds():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, 2, i + 1, projection="3d") for i in range(2)]
    for ax in axes:
        visualize.draw_cloud(ax, _l_shape(), np.tile(RED, (60, 1)))
    fig.canvas.draw()
    return fig, axes


def _drag_event(fig, ax):
    """A mouse move over ``ax``, as matplotlib sends while the user drags it."""
    from matplotlib.backend_bases import MouseEvent

    x0, y0, x1, y1 = ax.bbox.extents
    return MouseEvent("motion_notify_event", fig.canvas, (x0 + x1) / 2, (y0 + y1) / 2)


def test_linked_views_follow_the_dragged_cloud():
    fig, (left, right) = _figure_with_two_clouds()
    visualize.link_views([left, right])
    left.view_init(elev=55, azim=123, roll=0)  # what a drag on the left axes does
    fig.canvas.callbacks.process("motion_notify_event", _drag_event(fig, left))
    assert (right.elev, right.azim) == (55, 123)
    right.view_init(elev=-10, azim=7, roll=0)  # and the other way round
    fig.canvas.callbacks.process("motion_notify_event", _drag_event(fig, right))
    assert (left.elev, left.azim) == (-10, 7)


def test_interactive_viewer_links_its_views(monkeypatch):
    import matplotlib.pyplot as plt

    seen = []

    def show():  # stands for the user dragging the ground truth in the window
        fig = plt.gcf()
        gt, pred = [ax for ax in fig.axes if ax.name == "3d"]
        gt.view_init(elev=35, azim=-150, roll=0)
        fig.canvas.callbacks.process("motion_notify_event", _drag_event(fig, gt))
        seen.append((pred.elev, pred.azim))
        plt.close(fig)

    monkeypatch.setattr(plt, "show", show)
    xyz = _l_shape()
    visualize.interactive_viewer(
        [
            dict(
                title="x",
                image=np.zeros((8, 8, 3)),
                clouds=[("ground truth", xyz, np.tile(RED, (60, 1))), ("prediction", xyz, np.tile(BLUE, (60, 1)))],
            )
        ]
    )
    assert seen == [(35, -150)]


def test_visualize_without_a_display_says_so(capsys):
    from utils.eval import evaluate

    problem = visualize.display_problem()  # the Agg backend draws no window
    assert problem is not None and "no display" in problem
    margs = Namespace(visualize=True, save_gifs=False)
    checked = evaluate._check_window(margs)
    assert checked.visualize is False and margs.visualize is True
    err = capsys.readouterr().err
    assert "--visualize" in err and "--save_screenshots" in err and "--save_gifs" in err
    assert evaluate._check_window(Namespace(visualize=False)).visualize is False
    assert capsys.readouterr().err == ""


def test_pictures_turn_the_object_and_never_mirror_it():
    """Drawn clouds are the object turned, not its mirror image: the ShapeNet frame (right-handed,
    y up) goes into the renderer frame by (x, y, z) -> (-y, -z, x) (written out here by hand), and
    what matplotlib is given for its x, y, z axes must then be a rotation of it (determinant +1)
    with ShapeNet's y as matplotlib's up."""
    from matplotlib.figure import Figure

    shapenet_axes = np.eye(3)  # rows: the tips of ShapeNet's x, y and z axes
    renderer = np.stack([-shapenet_axes[:, 1], -shapenet_axes[:, 2], shapenet_axes[:, 0]], 1)
    ax = Figure().add_subplot(projection="3d")
    visualize.draw_cloud(ax, renderer, np.zeros((3, 3)))
    plotted = np.stack([np.asarray(c, float) for c in ax.collections[0]._offsets3d], 1)  # (3, 3)
    np.testing.assert_allclose(np.abs(plotted).sum(1), 1.0)  # axis tips go to axis tips
    assert round(np.linalg.det(plotted)) == 1, f"the picture is a mirror image: {plotted.tolist()}"
    np.testing.assert_array_equal(plotted[1], [0.0, 0.0, 1.0])  # ShapeNet's up is the picture's up
