"""The offline viewer page (utils/common/viewer.py), read back as a file: what it holds, its bounds,
and that it names no network resource. (tests/test_browser.py opens it in a browser.)"""

import base64
import io
import json
import re

import imageio.v2 as imageio
import numpy as np
import plotly.offline
import pytest

from utils.common import viewer


def _page_data(text):
    """The JSON the page embeds, decoded here (its arrays: base64 little-endian float32 / uint8)."""
    raw = re.search(r"<script type='application/json' id='differ-data'>(.*?)</script>", text, re.S).group(1)
    return json.loads(raw)


def _cloud(c):
    xyz = np.frombuffer(base64.b64decode(c["xyz"]), "<f4").reshape(-1, 3)
    rgb = np.frombuffer(base64.b64decode(c["rgb"]), np.uint8).reshape(-1, 3)
    return xyz, rgb


def test_page_holds_the_images_and_clouds_it_was_given(tmp_path, rng):
    image = rng.uniform(0, 1, (64, 48, 3))
    gt, pred = rng.uniform(-0.5, 0.5, (1024, 3)), rng.uniform(-0.5, 0.5, (300, 3))
    gt_col, pred_col = rng.uniform(0, 1, (1024, 3)), rng.uniform(0, 1, (300, 3))
    path = tmp_path / "deep" / "viewer.html"
    info = viewer.write_viewer(
        str(path),
        [
            dict(
                title="chair_0003_view2",
                image=image,
                clouds=[("ground truth", gt, gt_col), ("prediction", pred, pred_col)],
            ),
            dict(title="no image", image=None, clouds=[("prediction", pred, pred_col)]),
        ],
        "a run",
        ["first line"],
        legend=[("seat <1>", (0.0, 0.73, 1.0))],
    )
    text = path.read_text()
    assert info == dict(n_shown=2, n_given=2, path=str(path), bytes=len(text.encode()))
    data = _page_data(text)
    first, second = data["samples"]
    assert first["title"] == "chair_0003_view2" and [c["name"] for c in first["clouds"]] == [
        "ground truth",
        "prediction",
    ]
    for c, (xyz, col) in zip(first["clouds"], [(gt, gt_col), (pred, pred_col)]):
        got_xyz, got_rgb = _cloud(c)
        np.testing.assert_array_equal(got_xyz, xyz.astype(np.float32))
        np.testing.assert_array_equal(got_rgb, np.floor(col * 255 + 0.5).astype(np.uint8))
        assert c["n"] == c["n_total"] == len(xyz)
    png = base64.b64decode(first["image"].split(",", 1)[1])
    np.testing.assert_array_equal(imageio.imread(io.BytesIO(png)), np.floor(image * 255 + 0.5).astype(np.uint8))
    assert second["image"] is None and "first line" in text and "a run" in text
    assert "background:rgb(0,186,255)" in text and "seat &lt;1&gt;" in text  # the legend: 0.73 * 255 = 186.15


def test_page_is_bounded_and_says_so(tmp_path, rng):
    small = ("c", rng.uniform(-0.5, 0.5, (8, 3)), np.zeros((8, 3)))
    info = viewer.write_viewer(
        str(tmp_path / "v.html"), [dict(title=f"s{k}", image=None, clouds=[small]) for k in range(70)], "many"
    )
    text = (tmp_path / "v.html").read_text()
    assert info["n_shown"] == viewer.MAX_SAMPLES == 64 and info["n_given"] == 70
    assert [s["title"] for s in _page_data(text)["samples"]] == [f"s{k}" for k in range(64)]
    assert "showing the first 64 of 70 samples" in text
    # more points than the bound: every second one of 20000 (10000 <= MAX_POINTS), in order
    big = rng.uniform(-0.5, 0.5, (20000, 3))
    viewer.write_viewer(str(tmp_path / "b.html"), [dict(title="b", image=None, clouds=[("c", big, big + 0.5)])], "big")
    (c,) = _page_data((tmp_path / "b.html").read_text())["samples"][0]["clouds"]
    assert c["n"] == 10000 and c["n_total"] == 20000
    np.testing.assert_array_equal(_cloud(c)[0], big[::2].astype(np.float32))
    with pytest.raises(ValueError, match="at most 4"):
        viewer.write_viewer(str(tmp_path / "x.html"), [dict(title="x", image=None, clouds=[small] * 5)], "x")


def test_page_names_no_network_resource_and_cannot_be_broken_by_a_title(tmp_path, rng):
    cloud = ("c", rng.uniform(-0.5, 0.5, (8, 3)), np.zeros((8, 3)))
    evil = "</script><script src='https://example.com/x.js'></script>"
    viewer.write_viewer(str(tmp_path / "v.html"), [dict(title=evil, image=None, clouds=[cloud])], evil)
    text = (tmp_path / "v.html").read_text()
    library = plotly.offline.get_plotlyjs()
    assert text.count(library) == 1  # plotly.js embedded, as the pip package ships it
    rest = text.replace(library, "")
    # the only external references the page could make are src/href attributes, url(), @import
    assert not re.search(r"<(script|img|link|iframe)[^>]*\b(src|href)\s*=", rest, re.I)
    assert "url(" not in rest and "@import" not in rest
    assert len(re.findall(r"<script", rest)) == 3  # plotly.js, the data (JSON), the page's code
    assert "Content-Security-Policy" in rest and "default-src 'none'" in rest
    assert "\\u003c/script>\\u003cscript src=" in rest  # the title inside the JSON, escaped
    assert "&lt;/script&gt;" in rest  # the title in the HTML, escaped
    assert _page_data(text)["samples"][0]["title"] == evil
