"""An offline viewer page: point clouds to turn in a browser, in one self-contained HTML file.

``predict_<task>.py`` and ``metrics_<task>.py`` write one page per run (``viewer.html``): a column of
the input images on the left, and for the chosen sample its input image beside its clouds (ground
truth beside prediction where there is one), which turn together (drag: rotate, scroll: zoom,
double-click: back to the first view; keys n / p: next / previous sample).

The page needs no network and no server: the JavaScript is plotly.js as the ``plotly`` pip package
ships it (``plotly.offline.get_plotlyjs()``), embedded in the page, and the data (clouds as base64
float32 and uint8, images as PNG data URIs) are embedded too; its Content-Security-Policy (:data:`CSP`)
makes the browser refuse any request. Its size is 4.6 MiB of plotly.js plus about 40 kB per sample
of two 1024-point clouds and a 64 x 64 image (20 kB with one cloud). A page holds at most
:data:`MAX_SAMPLES` samples of at most :data:`MAX_CLOUDS_PER_SAMPLE` clouds, each cloud at most
:data:`MAX_POINTS` points (more are thinned by a regular stride, and the page says so). Only the
chosen sample is drawn, in one WebGL context per cloud, so the page stays light in any browser.

Clouds are given in a y-up frame (the ShapeNet frame, ``utils.data.shapenet.undo_preprocess_pcl_gt``
of the network's output), in the unit cube the pictures use. Only numpy, imageio and plotly's
bundled JavaScript; no TensorFlow.
"""

import base64
import html
import io
import json
import os

import numpy as np

from utils.common import atomic_io

MAX_SAMPLES = 64  # samples (an input image and its clouds) per page
MAX_CLOUDS_PER_SAMPLE = 4
MAX_POINTS = 16384  # points per cloud; more are thinned by a regular stride
VIEWER_FILE = "viewer.html"
HELP = "drag: rotate (the clouds turn together), scroll: zoom, double-click: first view; keys n, p: next, previous"
# The page may load nothing from anywhere: everything it uses is inline or a data: URI, and its
# Content-Security-Policy makes the browser refuse any other request.
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
LIMITS = (
    f"at most {MAX_SAMPLES} samples per page, {MAX_CLOUDS_PER_SAMPLE} clouds per sample, {MAX_POINTS} points per cloud"
)


def _png_data_uri(image):
    """float (H, W, 3) or (H, W) in [0, 1] -> 'data:image/png;base64,...'."""
    import imageio.v2 as imageio

    img = np.clip(np.asarray(image, np.float64), 0.0, 1.0)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    buf = io.BytesIO()
    imageio.imwrite(buf, (img[..., :3] * 255 + 0.5).astype(np.uint8), format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _b64(array):
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _cloud_record(name, xyz, colours):
    """A cloud as the page's JavaScript reads it: xyz float32 little-endian, colours uint8 RGB."""
    xyz = np.asarray(xyz, np.float64)
    colours = np.asarray(colours, np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or colours.shape != xyz.shape:
        raise ValueError(f"cloud {name!r}: expected xyz (N, 3) and colours (N, 3), got {xyz.shape}, {colours.shape}")
    n = len(xyz)
    stride = max(1, -(-n // MAX_POINTS))
    keep = np.arange(0, n, stride)
    rgb = (np.clip(colours[keep], 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return dict(
        name=str(name),
        n=int(len(keep)),
        n_total=int(n),
        xyz=_b64(xyz[keep].astype("<f4")),
        rgb=_b64(rgb),
    )


def page_data(samples, n_given=None):
    """The page's data: [{title, image (data URI or None), clouds [...]}] for the first
    :data:`MAX_SAMPLES` samples, and the number of samples given (``n_given`` when the caller kept
    only the first ones)."""
    samples = list(samples)
    out = []
    for s in samples[:MAX_SAMPLES]:
        clouds = list(s["clouds"])
        if len(clouds) > MAX_CLOUDS_PER_SAMPLE:
            raise ValueError(f"sample {s['title']!r}: {len(clouds)} clouds; at most {MAX_CLOUDS_PER_SAMPLE}")
        out.append(
            dict(
                title=str(s["title"]),
                image=None if s.get("image") is None else _png_data_uri(s["image"]),
                clouds=[_cloud_record(*c) for c in clouds],
            )
        )
    return out, max(len(samples), int(n_given or 0))


_STYLE = """
body { font-family: sans-serif; margin: 0; color: #222; background: #fff; }
header { padding: 8px 14px; border-bottom: 1px solid #ddd; }
header h1 { font-size: 17px; margin: 0 0 4px 0; }
header p { font-size: 13px; margin: 2px 0; color: #555; }
#wrap { display: flex; }
#list { width: 112px; height: calc(100vh - 90px); overflow-y: auto; border-right: 1px solid #ddd; }
#list div { padding: 4px; cursor: pointer; font-size: 10px; text-align: center; word-break: break-all; }
#list div.on { background: #e3ecff; }
#list img { width: 64px; height: 64px; image-rendering: pixelated; display: block; margin: 0 auto; }
#main { flex: 1; padding: 8px 14px; }
#main h2 { font-size: 15px; margin: 0 0 6px 0; }
#row, #clouds { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 10px; }
#input { width: 192px; height: 192px; image-rendering: pixelated; border: 1px solid #ccc; }
.cloud { width: 380px; height: 380px; border: 1px solid #ccc; }
.cap { font-size: 13px; text-align: center; margin: 2px 0; }
"""

_SCRIPT = """
(function () {
  var DATA = JSON.parse(document.getElementById('differ-data').textContent);
  function f32(s) { var b = atob(s), u = new Uint8Array(b.length);
    for (var i = 0; i < b.length; i++) u[i] = b.charCodeAt(i); return new Float32Array(u.buffer); }
  function u8(s) { var b = atob(s), u = new Uint8Array(b.length);
    for (var i = 0; i < b.length; i++) u[i] = b.charCodeAt(i); return u; }
  // the first view: from the front (data +z), to the right (data +x) and above
  var camera = {eye: {x: 1.25, y: 0.7, z: 0.55}, up: {x: 0, y: 0, z: 1}, center: {x: 0, y: 0, z: 0}};
  var axis = {range: [-0.6, 0.6], visible: false};
  var syncing = false, current = -1, plots = [];
  function trace(c) {
    var p = f32(c.xyz), rgb = u8(c.rgb), x = new Array(c.n), y = new Array(c.n), z = new Array(c.n),
        col = new Array(c.n);
    // plotly turns about its z axis: shown (x, y, z) = data (z, x, y), a rotation that puts y up
    for (var i = 0; i < c.n; i++) { x[i] = p[3 * i + 2]; y[i] = p[3 * i]; z[i] = p[3 * i + 1];
      col[i] = 'rgb(' + rgb[3 * i] + ',' + rgb[3 * i + 1] + ',' + rgb[3 * i + 2] + ')'; }
    return {type: 'scatter3d', mode: 'markers', x: x, y: y, z: z, hoverinfo: 'skip',
            marker: {size: DATA.point_size, color: col, opacity: 1, line: {width: 0}}};
  }
  function show(k) {
    if (k < 0 || k >= DATA.samples.length || k === current) return;
    current = k;
    var s = DATA.samples[k];
    document.querySelectorAll('#list div').forEach(function (d, i) { d.className = i === k ? 'on' : ''; });
    document.getElementById('title').textContent = (k + 1) + ' / ' + DATA.samples.length + ': ' + s.title;
    var img = document.getElementById('input');
    if (s.image) { img.src = s.image; img.style.display = ''; } else { img.style.display = 'none'; }
    var row = document.getElementById('clouds');
    plots.forEach(function (p) { Plotly.purge(p); });
    row.innerHTML = ''; plots = [];
    s.clouds.forEach(function (c) {
      var box = document.createElement('div'), div = document.createElement('div'), cap = document.createElement('p');
      div.className = 'cloud'; cap.className = 'cap';
      cap.textContent = c.name + ' (' + c.n + (c.n < c.n_total ? ' of ' + c.n_total : '') + ' points)';
      box.appendChild(div); box.appendChild(cap); row.appendChild(box); plots.push(div);
      Plotly.newPlot(div, [trace(c)], {margin: {l: 0, r: 0, t: 0, b: 0}, showlegend: false,
        paper_bgcolor: DATA.background, scene: {xaxis: axis, yaxis: axis, zaxis: axis, aspectmode: 'cube',
        camera: camera, dragmode: 'turntable', bgcolor: DATA.background}},
        {displaylogo: false, showLink: false, modeBarButtonsToRemove: ['toImage', 'resetCameraLastSave3d']});
      div.on('plotly_relayout', function (ev) {
        if (syncing || !ev['scene.camera']) return;
        camera = ev['scene.camera'];
        syncing = true;
        plots.forEach(function (p) { if (p !== div) Plotly.relayout(p, {'scene.camera': camera}); });
        syncing = false;
      });
    });
  }
  var list = document.getElementById('list');
  DATA.samples.forEach(function (s, i) {
    var d = document.createElement('div');
    if (s.image) { var im = document.createElement('img'); im.src = s.image; d.appendChild(im); }
    d.appendChild(document.createTextNode(s.title));
    d.onclick = function () { show(i); };
    list.appendChild(d);
  });
  document.addEventListener('keydown', function (e) {
    if (e.key === 'n' || e.key === 'ArrowDown') show(Math.min(current + 1, DATA.samples.length - 1));
    if (e.key === 'p' || e.key === 'ArrowUp') show(Math.max(current - 1, 0));
  });
  var start = parseInt((location.hash.match(/sample=(\\d+)/) || [0, 0])[1], 10);
  if (DATA.samples.length) show(Math.min(start, DATA.samples.length - 1));
})();
"""


def _legend_html(legend):
    """<p> of coloured squares and names, from [(name, colour (3,) in [0, 1])]."""
    items = []
    for name, colour in legend:
        r, g, b = (int(round(255 * float(np.clip(c, 0.0, 1.0)))) for c in colour[:3])
        items.append(
            f"<span style='display:inline-block;width:11px;height:11px;background:rgb({r},{g},{b});"
            f"margin:0 4px 0 10px;vertical-align:middle'></span>{html.escape(str(name))}"
        )
    return "<p>" + "".join(items) + "</p>"


def render_page(samples, title, lines=(), point_size=2.5, background="#ffffff", n_given=None, legend=None):
    """The page's HTML text (see :func:`write_viewer`) and what it holds: (text, dict n_shown, n_given)."""
    import plotly.offline

    shown, n_given = page_data(samples, n_given)
    data = dict(samples=shown, point_size=float(point_size), background=background)
    notes = list(lines)
    if n_given > len(shown):
        notes.append(f"showing the first {len(shown)} of {n_given} samples ({LIMITS})")
    notes.append(HELP)
    # No '<' at all inside the script element ('</script', '<!--' would change how HTML parses it):
    # JSON spells it \u003c
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    text = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>\n"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n"
        f"<script>{plotly.offline.get_plotlyjs()}</script>\n</head><body>\n"
        f"<header><h1>{html.escape(title)}</h1>"
        + "".join(f"<p>{html.escape(line)}</p>" for line in notes)
        + (_legend_html(legend) if legend else "")
        + "</header>\n<div id='wrap'><div id='list'></div><div id='main'><h2 id='title'></h2>\n"
        "<div id='row'><div><img id='input' alt='input image'><p class='cap'>input</p></div>"
        "<div id='clouds'></div></div></div></div>\n"
        f"<script type='application/json' id='differ-data'>{payload}</script>\n"
        f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )
    return text, dict(n_shown=len(shown), n_given=n_given)


def write_viewer(path, samples, title, lines=(), point_size=2.5, n_given=None, legend=None):
    """Write the viewer page to ``path`` (atomically; folders made).

    Args:
        samples: iterable of dicts: 'title' (str), 'image' (float (H, W, 3) in [0, 1], or None) and
            'clouds' [(name, xyz (N, 3) y-up unit-cube coordinates, colours (N, 3) in [0, 1])].
            The first :data:`MAX_SAMPLES` are kept.
        title: the page's title; lines: text lines under it (what the run was).
        point_size: marker size in pixels.
        n_given: how many samples the run had, when the caller passes only the first ones.
        legend: optional [(name, colour (3,) in [0, 1])] shown under the title (part names).
    Returns:
        dict: path, n_shown, n_given (samples), bytes (the file's size).
    """
    text, info = render_page(samples, title, lines, point_size, n_given=n_given, legend=legend)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_io.write_text(path, text)
    return dict(info, path=path, bytes=os.path.getsize(path))
