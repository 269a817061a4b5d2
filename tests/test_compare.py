"""``python -m utils.eval.compare``: two hand-written summaries side by side (the values read back
from the printed table), the floor line, and its errors."""

import json

import pytest

from utils.eval import compare


def _summary(step, snapshot, chamfer, colour):
    return dict(
        task="rgb",
        category="chair",
        eval_set="test",
        n_samples=200,
        step=step,
        snapshot=snapshot,
        headline=["chamfer", "colour"],
        methods=dict(
            model=dict(chamfer=chamfer, colour=colour, extra=1.0),
            medoid_baseline=dict(chamfer=0.0919, colour=0.132, extra=2.0),
            floor_resampled_gt=dict(chamfer=0.0308, colour=0.0019, extra=3.0),
        ),
        floor=dict(method="floor_resampled_gt", label="ground truth vs a resampling", available=True),
    )


def test_two_summaries_side_by_side(tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_summary(7000, "best", 0.0628, 0.0504)))
    b.write_text(json.dumps(_summary(8000, "latest", 0.0620, 0.0453)))
    assert compare.main([str(a), str(b), "--labels", "best", "final"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        "rgb metrics, chair test split, 200 samples: best = snapshot best, final = snapshot latest"
    )
    assert lines[1].split()[:5] == ["metric", "best", "(it.", "7000)", "final"]
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[2:5]}
    assert list(rows) == ["chamfer", "colour", "extra"]  # the headline first, then the rest
    # model (best), model (final), then the first summary's baseline and floor
    assert rows["chamfer"] == [0.0628, 0.062, 0.0919, 0.0308]
    assert rows["colour"] == [0.0504, 0.0453, 0.132, 0.0019]
    assert lines[5] == "floor_resampled_gt: ground truth vs a resampling"


def test_errors_name_the_file_or_flag(tmp_path, capsys):
    a = tmp_path / "a.json"
    a.write_text(json.dumps(_summary(1, "best", 0.1, 0.1)))
    assert compare.main([str(a), str(tmp_path / "missing.json")]) == 2
    assert f"cannot read {tmp_path / 'missing.json'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare.main([str(a), "--labels", "x", "y"])
    assert "--labels: expected 1 labels" in capsys.readouterr().err
