"""Evaluating a trained model on another data set that has only a test split (utils/eval/evaluate.py).

The test-only data set is a copy of the tiny data set's test models (renders, clouds, the test list;
no training or validation list). The oracle: the same evaluation on the full data set, whose test
split holds the same samples, and the summary's record of which data and which baseline were used.
"""

import csv
import json
import os
import shutil

import numpy as np
import pytest

import tiny

SYNSET_CHAIR = "03001627"


def _test_only_copy(data, out):
    """A copy of ``data``'s rgb tree with its test models and test list only."""
    models = [str(m) for m in np.load(os.path.join(data, "splits", f"{SYNSET_CHAIR}_test_list.npy"))]
    for tree in ("ShapeNet_rendered", "ShapeNet_pcl"):
        for m in models:
            shutil.copytree(os.path.join(data, tree, SYNSET_CHAIR, m), os.path.join(out, tree, SYNSET_CHAIR, m))
    os.makedirs(os.path.join(out, "splits"))
    shutil.copy(os.path.join(data, "splits", f"{SYNSET_CHAIR}_test_list.npy"), os.path.join(out, "splits"))
    assert sorted(os.listdir(os.path.join(out, "splits"))) == [f"{SYNSET_CHAIR}_test_list.npy"]
    return out


def _rows(out_dir):
    with open(os.path.join(out_dir, "per_sample.csv")) as f:
        return {(r["model_id"], r["input_view"], r["method"]): r for r in csv.DictReader(f)}


def _metrics(exp, out, *extra):
    from rgb import metrics_rgb

    argv = ["--exp", exp, "--snapshot", "latest", "--out", str(out), "--batch_size", "2", "--baseline_models", "4"]
    return metrics_rgb.main([*argv, *extra])


@pytest.mark.slow
def test_metrics_on_a_test_only_data_set(tiny_data, tmp_path, capsys):
    other = _test_only_copy(tiny_data, str(tmp_path / "test_only"))
    exp = tiny.train("rgb", tiny_data, str(tmp_path / "exp"), 2)

    full = _metrics(exp, tmp_path / "m_full")
    capsys.readouterr()
    got = _metrics(exp, tmp_path / "m_other", "--data_dir", other)
    printed = capsys.readouterr().out
    # the summary and the table say which data set was evaluated and where the baseline came from
    assert got["data_dir"] == other and got["trained_on"] == os.path.abspath(tiny_data)
    assert got["baseline"]["available"] and got["baseline"]["data_dir"] == os.path.abspath(tiny_data)
    assert got["baseline"]["source"] == "the experiment's training data" and got["baseline"]["n_models"] == 4
    assert f"data set: {other} (trained on {os.path.abspath(tiny_data)})" in printed
    assert f"from the medoid of 4 training models of {os.path.abspath(tiny_data)}" in printed
    # the same samples, the same numbers as the test split of the data set it was trained on
    assert got["medoid_model"] == full["medoid_model"] and got["baseline"] == full["baseline"]
    a, b = _rows(tmp_path / "m_full"), _rows(tmp_path / "m_other")
    assert a.keys() == b.keys() and {k[2] for k in a} == {"model", "medoid_baseline", "floor_resampled_gt"}
    for key in a:
        for metric in ("chamfer", "chamfer_fwd", "colour"):
            assert float(a[key][metric]) == pytest.approx(float(b[key][metric]), rel=1e-6, abs=1e-7)
    with open(tmp_path / "m_other" / "summary.json") as f:
        assert json.load(f)["baseline"]["medoid_model_id"] == got["baseline"]["medoid_model_id"]

    # no baseline asked for: skipped, said in the table and the summary
    none = _metrics(exp, tmp_path / "m_none", "--data_dir", other, "--baseline_models", "0")
    assert not none["baseline"]["available"] and "--baseline_models 0" in none["baseline"]["note"]
    assert set(none["methods"]) == {"model", "floor_resampled_gt"}
    assert "baselines: skipped: --baseline_models 0" in capsys.readouterr().out


@pytest.mark.slow
def test_metrics_without_the_training_data_skips_the_baselines(tiny_data, tmp_path, capsys):
    """Trained on a copy that is gone by evaluation time: the model is still evaluated on the test-only
    data, the baselines are skipped with a line naming both data sets, the summary says so."""
    moved = str(tmp_path / "moved")
    shutil.copytree(tiny_data, moved, ignore=shutil.ignore_patterns(".cache"))
    exp = tiny.train("rgb", moved, str(tmp_path / "exp"), 2)
    other = _test_only_copy(moved, str(tmp_path / "test_only"))
    shutil.rmtree(moved)
    capsys.readouterr()
    got = _metrics(exp, tmp_path / "m", "--data_dir", other)
    captured = capsys.readouterr()
    assert not got["baseline"]["available"] and got["medoid_model"] is None
    assert set(got["methods"]) == {"model", "floor_resampled_gt"}
    line = next(x for x in captured.err.splitlines() if "baselines skipped" in x)
    assert moved in line and other in line and "no split file" in line
    assert "baselines: skipped: no training split" in captured.out
    assert np.isfinite(got["methods"]["model"]["chamfer"]) and got["n_samples"] > 0
