"""Failure behaviour of training (docs/failures.md): experiment lock, exact resume after
Ctrl-C / SIGTERM / SIGHUP, uninterruptible saves, damaged experiment state, changed flags on resume,
flag validation, divergence, fatal errors in log.txt.

The oracles are independent of the code under test: an uninterrupted run (exact resume), a process
that really holds the lock, hand-written Namespaces, checkpoint files read back with TF's reader.
"""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
from argparse import Namespace

import numpy as np
import pytest

import tiny
from rgb import train_rgb
from utils.common.tfv1 import tf
from utils.data import DataError
from utils.eval import evaluate
from utils.experiment import Experiment, ExperimentInUse, ExperimentStateError
from utils.train import config
from utils.train import loop as train_loop


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from utils.datagen import demo_data

    out = tmp_path_factory.mktemp("data")
    demo_data.generate(out, categories=("chair",), n_models=6, n_views=4, seed=3, workers=1, progress=False)
    return str(out)


def _argv(exp, data, iters, *extra):
    """The tiny configuration (tests/tiny.py; 4 training chairs here), a line every iteration."""
    return tiny.train_argv(exp, data, iters, "--print_n", "1", "--lr", "1e-4", *extra)


def _variables(exp, kind="snapshots"):
    """Every variable of the checkpoint the pointer of ``kind`` names: weights, Adam slots, global_step."""
    e = Experiment(str(exp), create=False)
    prefix, _ = e.checkpoint("latest" if kind == "snapshots" else "best")
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _log(exp):
    with open(os.path.join(str(exp), "log.txt")) as f:
        return f.read()


# --------------------------------------------------------------------------- lock
HOLD_LOCK = """
import os, sys
from utils.experiment import Experiment
e = Experiment(sys.argv[1])
os.makedirs(e.path("snapshots", ".tmp-step-0000002-%d" % os.getpid()))  # a snapshot being written
print("locked", flush=True)
sys.stdin.read()
"""


def test_second_trainer_is_refused_and_a_dead_holders_lock_is_taken_over(data, tmp_path, capsys):
    exp = tmp_path / "exp"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(exp)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        in_flight = exp / "snapshots" / f".tmp-step-0000002-{holder.pid}"
        expected = f"in use by another trainer: PID {holder.pid} on host {re.escape(socket.gethostname())}"
        with pytest.raises(ExperimentInUse, match=expected):
            train_rgb.main(_argv(exp, data, 2))
        assert in_flight.is_dir() and not (exp / "args.json").exists()  # the refused trainer touched nothing
        assert re.search("train_rgb: error: .*" + expected, capsys.readouterr().err)
        assert Experiment(str(exp), create=False).pointer() is None  # readers (metrics) need no lock
    finally:
        holder.kill()  # dies like kill -9: no chance to clean up
        holder.wait()
    assert train_rgb.main(_argv(exp, data, 2)) == 2
    assert f"took over the lock left by PID {holder.pid} on host {socket.gethostname()}" in _log(exp)
    assert not in_flight.exists()  # the dead holder's half-written snapshot is gone


# --------------------------------------------------------------------------- signals
DRIVER = """
import json, os, signal, sys
from rgb.train_rgb import main
for sig in (signal.SIGTERM, signal.SIGHUP):  # as in a terminal, whatever the test runner ignores
    signal.signal(sig, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.default_int_handler)
for plan, argv in json.loads(sys.argv[1]):
    os.environ["DIFFER_TEST_SIGNAL_AT"] = plan
    try:
        print("RESULT", main(argv), flush=True)
    except SystemExit as stop:
        print("RESULT", stop.code, flush=True)
"""


@pytest.mark.slow
def test_signal_then_resume_equals_an_uninterrupted_run(data, tmp_path):
    """SIGTERM, SIGINT (twice) and SIGHUP at iteration 3 of 5: each run stops with a snapshot at exactly
    iteration 3 and status 128 + signal; resumed, it ends with the weights AND Adam slots of an
    uninterrupted run, bit for bit. So does a run of 3 iterations extended to 5 by re-running the
    command with --N_ITERS 5. TF_NUM_INTRAOP_THREADS=1: TF's multi-threaded CPU bincount (in the
    projection) sums in a thread-dependent order, which varies any two runs at float rounding."""
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    # The command line, stopped as a scheduler would (the hook sends the signal at iteration 3).
    term = subprocess.run(
        [sys.executable, "-m", "rgb.train_rgb", *_argv(tmp_path / "SIGTERM", data, 5)],
        env=dict(env, **{train_loop.TEST_SIGNAL_ENV: "3:SIGTERM"}),
        capture_output=True,
        text=True,
    )
    assert term.returncode == 128 + signal.SIGTERM, term.stderr
    # One more process: the uninterrupted reference, Ctrl-C twice and SIGHUP, then every resumption.
    plans = {"SIGINT": "3:SIGINT,3:SIGINT", "SIGHUP": "3:SIGHUP"}
    runs = [("", _argv(tmp_path / "reference", data, 5))]
    runs += [(plan, _argv(tmp_path / name, data, 5)) for name, plan in plans.items()]
    runs += [("", _argv(tmp_path / name, data, 5)) for name in ("SIGTERM", *plans)]
    runs += [("", _argv(tmp_path / "extended", data, 3)), ("", _argv(tmp_path / "extended", data, 5))]
    out = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(runs)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    results = [int(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert results == [5, 128 + signal.SIGINT, 128 + signal.SIGHUP, 5, 5, 5, 3, 5]
    reference = _variables(tmp_path / "reference")
    assert reference["global_step"] == 5 and any(k.endswith("/Adam_1") for k in reference)
    for name in ("SIGTERM", *plans):
        log = _log(tmp_path / name)
        assert f"stopped by {name}: snapshot saved at iteration 3" in log and "resumed at iteration 3" in log
        assert sorted(os.listdir(tmp_path / name / "snapshots")) == ["latest.json", "step-0000003", "step-0000005"]
        resumed = _variables(tmp_path / name)
        assert sorted(resumed) == sorted(reference)
        for key, value in reference.items():
            np.testing.assert_array_equal(resumed[key], value, err_msg=f"{name}: {key}")
    assert "resumed at iteration 3" in _log(tmp_path / "extended")
    extended = _variables(tmp_path / "extended")
    assert sorted(extended) == sorted(reference)
    for key, value in reference.items():
        np.testing.assert_array_equal(extended[key], value, err_msg=f"3 + 2 iterations: {key}")


def test_ctrl_c_during_a_save_waits_for_it(tmp_path, sess):
    """A Ctrl-C in the middle of writing a checkpoint takes effect only once it is complete."""
    v = tf.get_variable("v", initializer=tf.constant([1.0, 2.0]))
    saver = tf.train.Saver()
    sess.run(tf.global_variables_initializer())
    e = Experiment(str(tmp_path / "exp"))
    e.save(saver, sess, 10)

    class CtrlCWhileSaving:
        def save(self, *args, **kwargs):
            signal.raise_signal(signal.SIGINT)  # the default handler raises KeyboardInterrupt
            return saver.save(*args, **kwargs)

    sess.run(v.assign([20.0, 20.0]))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # even if the runner ignores it
    try:
        with pytest.raises(KeyboardInterrupt):
            e.save(CtrlCWhileSaving(), sess, 20)
    finally:
        signal.signal(signal.SIGINT, previous)
    prefix, step = e.checkpoint("latest")
    saver.restore(sess, prefix)
    assert step == 20 and sess.run(v).tolist() == [20.0, 20.0]


# --------------------------------------------------------------------------- damaged state
def test_truncated_pointer_resumes_from_the_newest_complete_snapshot(data, tmp_path):
    exp = tmp_path / "exp"
    assert train_rgb.main(_argv(exp, data, 4, "--save_model_n", "2")) == 4
    pointer = exp / "snapshots" / "latest.json"
    pointer.write_text(pointer.read_text()[:15])  # truncated JSON
    with pytest.warns(UserWarning, match="latest.json is unreadable"):
        assert train_rgb.main(_argv(exp, data, 5, "--save_model_n", "2")) == 5
    log = _log(exp)
    assert "resumed at iteration 4" in log and log.count("started at iteration 0") == 1
    assert sorted(os.listdir(exp / "snapshots")) == ["latest.json", "step-0000004", "step-0000005"]


def test_unreadable_checkpoints_fall_back_then_stop(tmp_path, sess):
    step_var = tf.train.get_or_create_global_step()
    tf.get_variable("w", initializer=tf.ones([50, 50]))
    saver = tf.train.Saver()
    sess.run(tf.global_variables_initializer())
    e = Experiment(str(tmp_path / "exp"))
    for step in (10, 20):
        sess.run(step_var.assign(step))
        e.save(saver, sess, step)

    def damage(step):
        path = glob.glob(e.path("snapshots", f"step-{step:07d}", "model.data-*"))[0]
        with open(path, "r+b") as f:
            f.truncate(100)

    damage(20)
    prefix, step = train_loop.find_resume(e)
    assert step == 10 and prefix == e.path("snapshots", "step-0000010", "model")
    assert "skipped unreadable checkpoint snapshots/step-0000020" in _log(e.root)
    damage(10)
    with pytest.raises(ExperimentStateError, match="no checkpoint can be restored.*Nothing was started over it"):
        train_loop.find_resume(e)
    assert sorted(os.listdir(e.path("snapshots"))) == ["latest.json", "step-0000010", "step-0000020"]


# --------------------------------------------------------------------------- flags
def test_changed_flags_are_the_ones_that_change_training():
    saved = Namespace(
        exp="a",
        data_dir="/data",
        lr=1e-4,
        seed=1,
        N_ITERS=10,
        print_n=5,
        views="random",
        removed_flag=3,
        projection="fused",
    )
    now = Namespace(
        exp="b",
        data_dir="/data/../data",
        lr=1e-4,
        seed=2,
        N_ITERS=20,
        print_n=1,
        views="fixed",
        new_default="x",
        new_set="y",
        override=True,
        projection="local",
    )  # projection: switchable
    changes = config.changed_flags(saved, now, defaults={"new_default": "x", "new_set": "z"})
    assert changes == [("new_set", None, "y"), ("seed", 1, 2), ("views", "random", "fixed")]
    with pytest.raises(config.ResumeError, match="--seed: 1 -> 2.*--override"):
        config.check_resume(saved, now, "/exp", override=False, defaults={"new_default": "x", "new_set": "y"})
    assert config.check_resume(saved, now, "/exp", True, {"new_default": "x", "new_set": "z"}) == changes


def test_resume_with_changed_flags_is_refused_unless_override(data, tmp_path, capsys, monkeypatch):
    exp = tmp_path / "exp"
    # A first run that fails its data checks leaves no args.json to block the corrected command,
    # and its error is in log.txt and on stderr.
    with pytest.raises(DataError, match="no split file for category airplane"):
        train_rgb.main(_argv(exp, data, 2, "--category", "airplane"))
    assert not (exp / "args.json").exists()
    assert "train_rgb: error: no split file for category airplane" in _log(exp)
    assert "train_rgb: error: no split file for category airplane" in capsys.readouterr().err

    monkeypatch.chdir(os.path.dirname(data))
    assert train_rgb.main(_argv(exp, os.path.basename(data), 2)) == 2  # relative --data_dir
    assert config.load_train_args(str(exp)).data_dir == data  # stored absolute
    with pytest.raises(config.ResumeError, match=r"--lr: 0.0001 -> 0.0002"):
        train_rgb.main(_argv(exp, data, 3, "--lr", "2e-4"))
    assert config.load_train_args(str(exp)).lr == 1e-4
    assert config.load_train_args(str(exp)).projection == "fused"  # the implementation used, not 'auto'
    # allowed: runtime flags, and the projection implementation (they agree to 1e-5), which is logged
    assert train_rgb.main(_argv(exp, data, 3, "--print_n", "2", "--num_workers", "2", "--projection", "local")) == 3
    assert config.load_train_args(str(exp)).projection == "local"
    assert "--projection: 'fused' in args.json, 'local' now (allowed" in _log(exp)
    assert train_rgb.main(_argv(exp, data, 4, "--lr", "2e-4", "--override")) == 4
    assert config.load_train_args(str(exp)).lr == 2e-4
    assert "--override: training continues with changed flags at iteration 3: --lr: 0.0001 -> 0.0002" in _log(exp)
    with open(exp / config.HISTORY_FILE) as f:
        history = [json.loads(line) for line in f]
    assert [h["step"] for h in history] == [0, 2, 3]
    assert history[0]["args"]["lr"] == 1e-4 and history[-1]["changes"] == {"lr": [1e-4, 2e-4]}
    # A complete run (nothing left to train) may be re-run with other flags: it keeps its args.json.
    assert train_rgb.main(_argv(exp, data, 4, "--lr", "1e-4")) == 4
    assert config.load_train_args(str(exp)).lr == 2e-4 and "args.json is kept" in _log(exp)


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--lr", "-5e-5"),
        ("--lr", "0"),
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--SIGMA_SQ_MASK", "-0.4"),
        ("--SIGMA_SQ_MASK", "0"),
        ("--WELL_RADIUS", "-1"),
        ("--BETA", "-1"),
        ("--seed", "-1"),
        ("--wt_bce", "nan"),
        ("--n_cls", "-2"),
    ],
)
def test_parser_rejects_bad_values(flag, value, capsys):
    with pytest.raises(SystemExit):
        config.train_parser("partseg").parse_args(["--exp", "x", f"{flag}={value}"])
    assert re.search(f"argument {flag}: expected .*, got {value}", capsys.readouterr().err)


def test_parser_accepts_boundary_values():
    args = config.train_parser("rgb").parse_args(["--exp", "x", "--BETA", "0", "--wt_rgb", "0", "--seed", "0"])
    assert args.BETA == 0 and args.seed == 0
    with pytest.raises(SystemExit):
        evaluate.metrics_parser("rgb").parse_args(["--exp", "x", "--max_samples=-1"])


# --------------------------------------------------------------------------- data dir, divergence
def test_missing_data_dir_is_reported_before_any_folder_is_created(tmp_path):
    with pytest.raises(DataError, match=f"data directory {re.escape(str(tmp_path / 'nope'))} does not exist"):
        train_rgb.main(_argv(tmp_path / "exp", str(tmp_path / "nope"), 2))
    assert not (tmp_path / "exp").exists()


def test_divergence_stops_with_a_clear_message_and_keeps_the_last_good_snapshot(data, tmp_path):
    """lr 1e6: finite weights after iteration 1 (snapshot), non-finite points in iteration 2's forward pass."""
    exp = tmp_path / "exp"
    with pytest.raises(
        FloatingPointError,
        match=r"^loss became nan at iteration \d+ .*— lower --lr or check the data; "
        r"the last good snapshot \(iteration \d+\) stays 'latest'",
    ):
        train_rgb.main(_argv(exp, data, 10, "--lr", "1e6", "--save_model_n", "1"))
    steps = [int(n[5:]) for n in os.listdir(exp / "snapshots") if n.startswith("step-")]
    assert steps and Experiment(str(exp), create=False).pointer()["step"] == max(steps)
    for name, value in _variables(exp).items():
        assert np.all(np.isfinite(value)), name
    assert "train_rgb: error: loss became nan" in _log(exp)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_non_finite_weights_are_never_snapshotted(data, tmp_path):
    """lr 1e39 is inf in float32: iteration 1's loss is finite, its update makes the weights inf."""
    exp = tmp_path / "exp"
    with pytest.raises(
        FloatingPointError,
        match=r"^loss became nan at iteration 1 \(non-finite weights"
        r".*; no snapshot was written",
    ):
        train_rgb.main(_argv(exp, data, 10, "--lr", "1e39", "--save_model_n", "1"))
    assert not [n for n in os.listdir(exp / "snapshots") if n.startswith("step-")]
