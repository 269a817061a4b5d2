"""Logs that read well in a file: progress bars only on a terminal, plain progress lines elsewhere,
no TensorFlow start-up chatter unless asked for."""

import os
import subprocess
import sys

import pytest

from utils.common import progress, tfv1


@pytest.fixture
def no_override(monkeypatch):
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)


def test_plain_lines_without_a_terminal(no_override, capsys):
    with progress.Progress(20, "work", unit="item", lines=0.25) as p:
        for _ in range(20):
            p.update()
        p.write("a message")
    out, err = capsys.readouterr()
    assert not p.bar and "\r" not in out + err and err == ""
    lines = out.splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "work: 5/20 items",
        "work: 10/20 items",
        "work: 15/20 items",
        "work: 20/20 items",
        "a message",
    ]
    assert lines[0].endswith("(25%, 0 s)")
    # an update of several units that crosses a step, and the end when it is not a step
    with progress.Progress(7, "odd", lines=0.5) as p:
        p.update(3)
        p.update(3)
        p.update(1)
    assert capsys.readouterr().out.splitlines() == ["odd: 6/7 items (86%, 0 s)", "odd: 7/7 items (100%, 0 s)"]


def test_no_lines_when_the_caller_logs_or_asks_for_quiet(no_override, capsys):
    for kw in (dict(lines=None), dict(enabled=False)):
        with progress.Progress(10, "quiet", **kw) as p:
            for _ in range(10):
                p.update()
            p.set_postfix(loss=1.0)
    assert capsys.readouterr() == ("", "")


def test_bar_on_a_terminal_only(no_override, monkeypatch, capsys):
    assert not progress.on_terminal()  # pytest captures stderr: not a terminal

    class Terminal:
        def isatty(self):
            return True

    assert progress.on_terminal(Terminal())
    monkeypatch.setenv(progress.PROGRESS_ENV, "0")
    assert not progress.on_terminal(Terminal())
    monkeypatch.setenv(progress.PROGRESS_ENV, "1")
    with progress.Progress(3, "bar", lines=0.5) as p:  # forced: tqdm draws on stderr
        for _ in range(3):
            p.update()
    out, err = capsys.readouterr()
    assert p.bar and out == "" and "\r" in err and "3/3" in err


def test_startup_noise_pattern():
    """The lines TensorFlow 2.x prints while it loads (copied from its output) are dropped; warnings
    and errors are not."""
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795715210.040975    3771 port.cc:153] oneDNN custom operations are on. You may see "
        "slightly different numerical results due to floating-point round-off errors from different "
        "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
        "I0000 00:00:1795715219.394600    3780 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
    ]
    kept = [
        "E0000 00:00:1795715219.394600    3780 cuda_dnn.cc:8310] Unable to register cuDNN factory",
        "W0000 00:00:1795715219.394600    3780 gpu_device.cc:2344] Cannot dlopen some GPU libraries.",
        "Traceback (most recent call last):",
        "/path/x.py:3: UserWarning: something",
    ]
    assert all(tfv1._STARTUP_NOISE.fullmatch(line) for line in noise)
    assert not any(tfv1._STARTUP_NOISE.fullmatch(line) for line in kept)


DRIVER = """
import sys
from rgb import metrics_rgb, train_rgb
from utils.datagen import demo_data
data, exp = sys.argv[1:]
demo_data.main(["--out", data, "--categories", "chair", "--n_models", "10", "--n_views", "2", "--seed", "3",
                "--workers", "1"])
train_rgb.main(["--exp", exp, "--data_dir", data, "--N_VIEWS", "2", "--batch_size", "2", "--N_PTS", "256",
                "--bottleneck", "16", "--N_ITERS", "4", "--print_n", "2", "--save_n", "4", "--save_model_n", "4",
                "--val_batches", "1", "--num_workers", "1"])
metrics_rgb.main(["--exp", exp, "--snapshot", "latest", "--batch_size", "1", "--baseline_models", "2", "--tqdm"])
"""


@pytest.mark.slow
def test_a_run_logged_to_a_file_reads_well(tmp_path):
    """Demo data, training and metrics as `python ... > log 2>&1` runs them (no terminal, no
    TF_CPP_MIN_LOG_LEVEL): plain progress lines, no carriage-return redraws, no TensorFlow
    start-up lines."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", progress.PROGRESS_ENV)}
    log = tmp_path / "run.log"
    with open(log, "wb") as f:
        done = subprocess.run(
            [sys.executable, "-c", DRIVER, str(tmp_path / "data"), str(tmp_path / "exp")],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    assert "\r" not in text
    for line in (
        "demo data: 10/10 models (100%",
        "iter 2:",
        "iter 4:",
        "val @ 4",
        "metrics test: 1/2 batches (50%",
        "metrics test: 2/2 batches (100%",
        "medoid_baseline",
    ):
        assert line in text, line
    for noise in ("oneDNN", "absl::InitializeLog", "cpu_feature_guard"):
        assert noise not in text, noise
    assert len(text) < 8000, text
