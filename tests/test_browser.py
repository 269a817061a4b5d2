"""The clouds as a browser shows them: TensorBoard's mesh dashboard for a tiny run, and the offline
viewer pages of predict and metrics, opened in headless Chromium (Debian's ``chromium`` package).

The oracle is the screenshot: it must hold pixels of the cloud's own colours (read here from the
data set's files or from the PLY that predict writes), where a page without the cloud has none. The
network log of the browser shows what the pages requested: the viewer pages nothing, TensorBoard's
dashboard only its own server on the loopback address. Without Chromium (or TensorBoard) the tests
skip with a line saying what is missing; ``.ci/run`` installs Chromium.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlparse

import imageio.v2 as imageio
import numpy as np
import pytest
import trimesh

import tiny
from utils.train import clouds

SYNSET_CHAIR = "03001627"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER_HINT = "on Debian/Ubuntu: apt-get install -y chromium (.ci/run installs it), or set DIFFER_CHROMIUM"


def _browser():
    """The headless Chromium to use, or skip naming what is missing."""
    path = os.environ.get("DIFFER_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not path:
        pytest.skip(f"browser checks not run: no Chromium found ({', '.join(BROWSERS)} on PATH); {BROWSER_HINT}")
    return path


def _tensorboard():
    """The ``tensorboard`` command of this environment, or skip."""
    beside = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    path = beside if os.access(beside, os.X_OK) else shutil.which("tensorboard")
    if not path:
        pytest.skip("TensorBoard check not run: no 'tensorboard' command (pip install -r requirements.txt)")
    return path


def screenshot(url, work, size=(1200, 900), budget_ms=15000):
    """Load ``url`` in headless Chromium (WebGL through SwiftShader, no GPU) and return the screenshot
    (uint8 (H, W, 3)) and the URLs the page requested (from Chromium's network log)."""
    work.mkdir(parents=True, exist_ok=True)
    png, netlog = work / "shot.png", work / "netlog.json"
    cmd = [
        _browser(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--use-angle=swiftshader",
        "--enable-unsafe-swiftshader",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no name resolves: nothing leaves
        f"--user-data-dir={work / 'profile'}",
        f"--virtual-time-budget={budget_ms}",
        f"--window-size={size[0]},{size[1]}",
        f"--log-net-log={netlog}",
        f"--screenshot={png}",
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert png.is_file(), f"no screenshot from {cmd[0]} (status {done.returncode}): {done.stderr[-2000:]}"
    return imageio.imread(png)[..., :3], page_requests(netlog)


def page_requests(netlog):
    """URLs requested by pages (not by the browser itself: its requests have no initiating origin)."""
    with open(netlog) as f:
        text = f.read()
    if not text.rstrip().endswith("}"):  # a log cut short when the browser exits: close it
        text = text.rstrip().rstrip(",") + "]}"
    log = json.loads(text)
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return sorted(
        {
            e["params"]["url"]
            for e in log["events"]
            if e["type"] == start and e.get("params", {}).get("initiator", "not an origin") != "not an origin"
        }
    )


def colour_pixels(shot, colours, tol=3, min_spread=0):
    """Pixels of ``shot`` within ``tol`` (each channel, 0..255) of one of ``colours`` (uint8 (K, 3))
    whose channels differ by at least ``min_spread`` (greys of text and frames excluded): a bool mask."""
    colours = np.unique(np.asarray(colours, np.int16).reshape(-1, 3), axis=0)
    pix = shot.reshape(-1, 3).astype(np.int16)
    hit = np.zeros(len(pix), bool)
    for c in colours:
        hit |= np.all(np.abs(pix - c) <= tol, axis=1)
    hit &= np.ptp(pix, axis=1) >= min_spread
    return hit.reshape(shot.shape[:2])


def _gt_colours(data, model):
    rgb = np.load(os.path.join(data, "ShapeNet_pcl", SYNSET_CHAIR, model, "pcl_1024_fps_trimesh_colors.npy"))[:, 3:]
    return np.round(rgb * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory):
    """A tiny rgb run validated at iterations 1 and 2 (its clouds in TensorBoard), once Chromium is there."""
    _browser()
    root = tmp_path_factory.mktemp("browser")
    return tiny.train("rgb", tiny_data, str(root / "exp"), 2, ["--save_n", "1"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_clouds(port, proc, timeout=180):
    """Wait until TensorBoard serves the run's mesh tags; returns them."""
    url = f"http://127.0.0.1:{port}/data/plugin/mesh/tags"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"tensorboard exited: {proc.stdout.read()[-2000:]}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                tags = json.load(r).get("val", {})
            if tags:
                return tags
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"TensorBoard served no mesh tags at {url} within {timeout} s")


@pytest.mark.slow
def test_tensorboard_mesh_dashboard_draws_the_run_clouds(run, tiny_data, tmp_path):
    port = _free_port()
    cmd = [_tensorboard(), "--logdir", os.path.join(run, "logs"), "--host", "127.0.0.1", "--port", str(port)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        tags = _wait_for_clouds(port, proc)
        with open(os.path.join(run, "val_set.json")) as f:
            pairs = json.load(f)["pairs"][: clouds.CLOUD_SAMPLES]
        assert set(tags) == {
            clouds.cloud_tag(k, m, v, w) for k, (m, v) in enumerate(pairs) for w in ("ground_truth", "prediction")
        }
        shot, requests = screenshot(
            f"http://127.0.0.1:{port}/#mesh", tmp_path / "tb", size=(1200, 1400), budget_ms=20000
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    imageio.imwrite(tmp_path / "tensorboard_mesh.png", shot)
    # the first card is the first sample's ground truth: its colours, in the dashboard's cards (right of
    # the run list, below the toolbar); saturated colours only, so no grey of the page counts
    gt = _gt_colours(tiny_data, pairs[0][0])
    hits = colour_pixels(shot[150:, 300:], gt, tol=3, min_spread=30)
    assert hits.sum() > 500, (
        f"{hits.sum()} pixels of the cloud's colours; screenshot: {tmp_path / 'tensorboard_mesh.png'}"
    )
    rows, cols = np.nonzero(hits)
    assert np.ptp(rows) > 100 and np.ptp(cols) > 100  # a cloud spread over the card, not a strip
    assert requests and all(urlparse(u).hostname == "127.0.0.1" for u in requests), requests


@pytest.mark.slow
def test_metrics_viewer_page_draws_ground_truth_and_prediction_offline(run, tiny_data, tmp_path):
    from rgb import metrics_rgb

    out = tmp_path / "metrics"
    metrics_rgb.main(
        ["--exp", run, "--snapshot", "latest", "--out", str(out), "--baseline_models", "2", "--save_viewer"]
    )
    shot, requests = screenshot((out / "viewer.html").as_uri(), tmp_path / "m", size=(1200, 560))
    imageio.imwrite(tmp_path / "metrics_viewer.png", shot)
    assert requests == []
    test_model = str(np.load(os.path.join(tiny_data, "splits", f"{SYNSET_CHAIR}_test_list.npy"))[0])
    hits = colour_pixels(shot, _gt_colours(tiny_data, test_model), tol=3, min_spread=30)
    # the input image (left) shows the same colours: count only the cloud panels, right of it
    left = hits[:, :330].sum()
    assert hits[:, 330:].sum() > 300, f"cloud pixels right of the input: {hits[:, 330:].sum()} (left {left})"


@pytest.mark.slow
def test_predict_viewer_page_draws_the_predicted_cloud_offline(run, tiny_data, tmp_path):
    from rgb import predict_rgb

    render = os.path.join(tiny_data, "ShapeNet_rendered", SYNSET_CHAIR, "chair_0001", "render_1.png")
    out = tmp_path / "pred"
    result = predict_rgb.main(["--exp", run, render, "--out", str(out), "--no_progress"])
    assert result["viewer"] == str(out / "viewer.html")
    shot, requests = screenshot((out / "viewer.html").as_uri(), tmp_path / "p", size=(1200, 560))
    imageio.imwrite(tmp_path / "predict_viewer.png", shot)
    assert requests == []
    # the predicted colours as the PLY stores them; the tiny model's colours are near grey, so count
    # only tinted ones, and none that the input image also shows
    predicted = np.asarray(trimesh.load(out / "render_1.ply").colors)[:, :3]
    image_colours = imageio.imread(render)[..., :3].reshape(-1, 3)
    hits = colour_pixels(shot, predicted, tol=1, min_spread=4) & ~colour_pixels(shot, image_colours, tol=2)
    assert hits.sum() > 100, f"{hits.sum()} pixels of the predicted colours"
    rows, cols = np.nonzero(hits)
    assert cols.min() > 330 and np.ptp(rows) > 50 and np.ptp(cols) > 50  # in the cloud panel, spread out
