"""Failure behaviour of metrics, predict and the data tools (docs/failures.md), as training's
(tests/test_failures.py): one error line per expected failure and nothing created, crash logs for
the unexpected, the task and checkpoint checked before a graph is built, disjoint splits, the data
folder lock and clean-up after SIGTERM, robust mesh normalisation, --force per category,
--N_VIEWS and small inputs.

Oracles: set operations (splits), hand-made meshes whose rendered size is known (a unit box), a
process that really holds the lock, file listings before and after, byte comparisons.
"""

import errno
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import cv2
import numpy as np
import pytest
import trimesh

import tiny
from utils.common import atomic_io, cli
from utils.data import BatchPipeline, DataError, tree_dirs
from utils.datagen import demo_data, mesh_dataset, splits
from utils.datagen.mesh_io import MeshError, MeshSource, load_mesh, normalise
from utils.datagen.mesh_render import GREY
from utils.experiment import ExperimentStateError, WrongTask
from utils.task import task_from_ref

CHAIR, CAR = "03001627", "02958343"
TINY = dict(n_views=1, img_size=16, seed=0, workers=1, progress=False, supersample=1)


def _run_cli(monkeypatch, module_main, argv, capsys):
    """Run an entry point's ``cli_main``-style function as on the command line: (status, stderr lines)."""
    monkeypatch.setattr(sys, "argv", ["tool"] + argv)
    with pytest.raises(SystemExit) as stop:
        module_main()
    return stop.value.code, capsys.readouterr().err.strip().splitlines()


# --------------------------------------------------------------------------- a tiny experiment
@pytest.fixture(scope="module")
def rgb_exp(tiny_data, tmp_path_factory):
    """Two snapshots (iterations 1 and 2) of a tiny rgb experiment."""
    exp = str(tmp_path_factory.mktemp("tools") / "rgb")
    return tiny.train("rgb", tiny_data, exp, 2, ("--save_model_n", "1", "--lr", "1e-4"))


def _metrics_argv(exp, out, *extra):
    return [
        "--exp",
        exp,
        "--eval_set",
        "test",
        "--batch_size",
        "2",
        "--max_samples",
        "2",
        "--baseline_models",
        "2",
        "--out",
        str(out),
        *extra,
    ]


# --------------------------------------------------------------------------- 1. one error path
def test_expected_errors_are_one_line_and_create_nothing(rgb_exp, tmp_path, monkeypatch, capsys):
    from rgb import metrics_rgb
    from utils.eval import evaluate

    cli_main = lambda: evaluate.cli_main(metrics_rgb.TASK)  # noqa: E731
    out = tmp_path / "out"
    status, err = _run_cli(monkeypatch, cli_main, _metrics_argv(str(tmp_path / "nope"), out), capsys)
    assert status == 1 and len(err) == 1 and not out.exists()
    assert re.fullmatch(r"metrics_rgb: error: --exp .*nope: no such folder; expected an experiment folder .*", err[0])

    bad = tmp_path / "bad_exp"
    bad.mkdir()
    (bad / "args.json").write_text(open(os.path.join(rgb_exp, "args.json")).read()[:40])  # truncated
    status, err = _run_cli(monkeypatch, cli_main, _metrics_argv(str(bad), out), capsys)
    assert status == 1 and len(err) == 1 and not out.exists()
    assert re.match(
        r"metrics_rgb: error: .*args.json is not valid JSON.*; expected the args.json training wrote", err[0]
    )

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    status, err = _run_cli(monkeypatch, cli_main, _metrics_argv(rgb_exp, a_file), capsys)
    assert status == 1 and err == [
        f"metrics_rgb: error: --out {a_file}: is a file; expected a folder (created when absent)"
    ]
    status, err = _run_cli(monkeypatch, cli_main, _metrics_argv(rgb_exp, out, "--snapshot", "7"), capsys)
    assert status == 1 and len(err) == 1 and "no snapshot for iteration 7" in err[0] and not out.exists()

    # the data tools: an --out that is a file, refused before anything is made (status 2)
    assert demo_data.main(["--out", str(a_file), "--categories", "car", "--n_models", "1", "--quiet"]) == 2
    assert mesh_dataset.main(["--meshes", str(tmp_path / "none"), "--out", str(a_file), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"make_demo_data: error: --out {a_file}: is a file; expected a folder (created when absent)"
    assert err[1].startswith("make_dataset: error: --meshes") and len(err) == 2
    assert sorted(os.listdir(tmp_path)) == ["a_file", "bad_exp"]


@pytest.mark.parametrize(
    "key, value, problem",
    [
        ("N_PTS", -5, "expected a positive integer, got -5"),
        ("IMG_H", "big", "expected a whole number"),
        ("projection", "magic", "expected one of auto, fused, local, dense"),
        ("skipconn", "yes", "expected true or false"),
    ],
)
def test_args_json_with_an_impossible_value_is_named(key, value, problem, rgb_exp, tmp_path, monkeypatch, capsys):
    """args.json edited by hand (N_PTS -5): one line naming the file, the key, the value and what its
    flag accepts, before anything is built (it failed later with a message about something else)."""
    from rgb import metrics_rgb
    from utils.eval import evaluate

    exp = tmp_path / "edited"
    shutil.copytree(rgb_exp, exp)
    args = json.loads((exp / "args.json").read_text())
    args[key] = value
    (exp / "args.json").write_text(json.dumps(args))
    cli_main = lambda: evaluate.cli_main(metrics_rgb.TASK)  # noqa: E731
    status, err = _run_cli(monkeypatch, cli_main, _metrics_argv(str(exp), tmp_path / "out"), capsys)
    assert status == 1 and len(err) == 1, err
    assert err[0].startswith(
        f"metrics_rgb: error: {exp / 'args.json'}: {key} is {json.dumps(value)}, a value --{key} refuses ({problem}); "
        "the file was changed after training wrote it"
    ), err[0]
    assert not (tmp_path / "out").exists()


def test_unexpected_errors_leave_a_traceback_in_a_log_and_warnings_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cli.LOG_DIR_ENV, str(tmp_path / "logs"))

    def broken(argv):
        warnings.warn("a fallback was taken", stacklevel=2)
        return {}["missing key"]

    assert cli.run("some_tool", broken, []) == 1
    err = capsys.readouterr().err.strip().splitlines()
    logs = glob.glob(str(tmp_path / "logs" / "some_tool-error-*.log"))
    assert len(logs) == 1
    assert err == [
        "some_tool: warning: a fallback was taken",
        f"some_tool: error: unexpected KeyError: 'missing key'; the traceback is in {logs[0]}",
    ]
    text = open(logs[0]).read()
    assert "Traceback (most recent call last)" in text and "in broken" in text and "KeyError" in text
    assert cli.run("some_tool", lambda argv: 3, []) == 3
    assert warnings.showwarning is not cli._show_warning  # restored


KILLED_IN_CSV = """
import os, signal, sys
from rgb.task import TASK
from utils.eval import evaluate

def killed(path, rows):  # half of per_sample.csv written, then the process dies (kill -9)
    with open(path, "w") as f:
        f.write(",".join(rows[0]) + "\\n" + ",".join(str(v) for v in rows[0].values())[:9])
        f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

evaluate._write_csv = killed
evaluate.main(TASK, sys.argv[1:])
"""


def _csv_means(path, method="model"):
    """Means of the columns of a per_sample.csv's rows of ``method``, by hand (csv module, float sums)."""
    import csv

    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == method]
    keys = [k for k in rows[0] if k not in ("model_id", "input_view", "method")]
    return {k: sum(float(r[k]) for r in rows) / len(rows) for k in keys}, len(rows)


def test_metrics_killed_while_writing_leaves_the_previous_set_whole(rgb_exp, tmp_path, capsys):
    """A metrics run killed while it writes per_sample.csv: the folder still holds the previous run's
    files, each consistent with the others (summary.json's means are per_sample.csv's); the next run
    removes the killed run's working folder (one line) and replaces the set."""
    from rgb.task import TASK
    from utils.eval import evaluate

    out = tmp_path / "metrics"
    evaluate.main(TASK, _metrics_argv(rgb_exp, out, "--snapshot", "1"))
    before = {n: (out / n).read_bytes() for n in sorted(os.listdir(out))}
    assert sorted(before) == ["per_model.csv", "per_sample.csv", "summary.json"]
    res = subprocess.run(
        [sys.executable, "-c", KILLED_IN_CSV, *_metrics_argv(rgb_exp, out, "--snapshot", "2")],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=os.getcwd()),
        timeout=600,
    )
    assert res.returncode == -signal.SIGKILL, res.stderr[-2000:]
    assert {n: (out / n).read_bytes() for n in sorted(os.listdir(out))} == before  # untouched
    summary = json.loads((out / "summary.json").read_text())
    means, n = _csv_means(out / "per_sample.csv")
    assert summary["step"] == 1 and summary["n_samples"] == n
    for k, v in means.items():
        assert summary["methods"]["model"][k] == pytest.approx(v, rel=1e-12), k
    left = [n for n in os.listdir(tmp_path) if n != "metrics"]
    assert len(left) == 1 and left[0].startswith(".metrics.tmp-")  # the killed run's working folder
    capsys.readouterr()
    evaluate.main(TASK, _metrics_argv(rgb_exp, out, "--snapshot", "2"))
    assert f"warning: removed {tmp_path / left[0]}, left by an interrupted run" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["metrics"]
    summary = json.loads((out / "summary.json").read_text())
    means, n = _csv_means(out / "per_sample.csv")
    assert summary["step"] == 2 and summary["n_samples"] == n
    for k, v in means.items():
        assert summary["methods"]["model"][k] == pytest.approx(v, rel=1e-12), k
    # a folder that holds other files is not taken: the set would replace them
    (out / "notes.txt").write_text("mine")
    with pytest.raises(cli.CLIError, match=r"holds files that metrics did not write \(notes.txt\)"):
        evaluate.main(TASK, _metrics_argv(rgb_exp, out, "--snapshot", "2"))


def test_disk_problems_are_one_line_naming_the_file_and_what_to_do(tmp_path, capsys):
    """Every tool's error path: no space, read-only, permission denied, each one line naming the file
    (a failed write() names none: the writer adds it) and what to do, no crash log."""

    def full(argv):  # a write that fails as f.write() does on a full disk: no file name
        with atomic_io.writing(tmp_path / "out.csv") as tmp, open(tmp, "w"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    assert cli.run("some_tool", full, []) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"some_tool: error: {tmp_path / 'out.csv'}: no space left on the disk; free space there or write elsewhere"
    ]
    assert os.listdir(tmp_path) == []  # its temporary file removed
    for code, text in [
        (errno.EROFS, "the file system is read-only; write to a folder on a writable disk"),
        (errno.EACCES, "permission denied; choose a folder this user can write, or change its permissions"),
        (errno.EDQUOT, "disk quota exceeded; free space in your quota or write elsewhere"),
    ]:

        def fails(argv, code=code):
            raise OSError(code, os.strerror(code), "/data/out/summary.json")

        assert cli.run("some_tool", fails, [], status=2) == 2
        assert capsys.readouterr().err.splitlines() == [f"some_tool: error: /data/out/summary.json: {text}"]


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    """atomic_io's temporaries: a file of a dead PID, a working folder whose lock is free, a folder
    moved aside by replace_dir, go; a live process's file and a held working folder stay."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    names = [f".latest.json.{pid}.tmp", f".shot.png.{pid}.tmp.png", f".x.old-{pid}-0123abcd"]
    (tmp_path / names[0]).write_text("{")
    (tmp_path / names[1]).write_bytes(b"")
    (tmp_path / names[2]).mkdir()
    free = atomic_io.WorkDir(tmp_path / "out")
    free._release()  # as after kill -9: the folder stays, its lock is free
    held = atomic_io.WorkDir(tmp_path / "other")
    live = tmp_path / f".summary.json.{os.getpid()}.tmp"
    live.write_text("")
    (tmp_path / "results.csv").write_text("")  # not a temporary
    removed = atomic_io.remove_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == sorted(names + [free.path.name])
    assert sorted(os.listdir(tmp_path)) == sorted([held.path.name, live.name, "results.csv"])
    assert atomic_io.remove_leftovers(tmp_path, names={"other"}) == []
    held.discard()


def test_training_removes_what_a_killed_run_left_half_written(tiny_data, tmp_path, capsys):
    """A pointer file half-written when training was killed (``snapshots/.latest.json.<pid>.tmp``)
    is removed at the next start, with a warning line."""
    exp = tmp_path / "exp"
    (exp / "snapshots").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = exp / "snapshots" / f".latest.json.{int(dead.stdout)}.tmp"
    left.write_text('{"step": 1')
    tiny.train("rgb", tiny_data, exp, 1)
    assert not left.exists()
    assert f"warning: removed {left}, left by an interrupted run" in capsys.readouterr().err


def test_metrics_on_a_full_disk_is_one_line_and_leaves_nothing(rgb_exp, small_disk, tmp_path, monkeypatch, capsys):
    """Metrics writing its set onto a disk that is full: one line naming the file, no traceback, no
    half-written folder (a real 512 KiB tmpfs, filled first)."""
    if small_disk is None:
        pytest.skip("no small file system can be mounted here (the error path is tested with simulated errors)")
    from rgb import metrics_rgb
    from utils.eval import evaluate

    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # leave one page free
        f.write(b"\0" * (shutil.disk_usage(small_disk).free - 4096))
    out = small_disk / "metrics"
    cli_main = lambda: evaluate.cli_main(metrics_rgb.TASK)  # noqa: E731
    status, err = _run_cli(monkeypatch, cli_main, _metrics_argv(rgb_exp, out), capsys)
    assert status == 1
    errors = [line for line in err if "error" in line]
    assert len(errors) == 1, err
    assert re.fullmatch(
        r"metrics_rgb: error: .*/\.metrics\.tmp-\d+-[0-9a-f]{8}/\S+: no space left on the disk; "
        r"free space there or write elsewhere",
        errors[0],
    ), errors[0]
    assert sorted(os.listdir(small_disk)) == ["filler"]  # no working folder, no --out


# --------------------------------------------------------------------------- 2. task, checkpoints
def test_metrics_and_predict_check_the_task_and_the_checkpoint_before_any_graph(rgb_exp, tmp_path, monkeypatch, capsys):
    from partseg import metrics_partseg
    from rgb import metrics_rgb, predict_rgb
    from utils.eval import evaluate, inference

    out = tmp_path / "m"
    status, err = _run_cli(
        monkeypatch, lambda: evaluate.cli_main(metrics_partseg.TASK), _metrics_argv(rgb_exp, out), capsys
    )
    assert status == 1 and len(err) == 1 and not out.exists()
    assert re.fullmatch(
        r"metrics_partseg: error: .*args.json: the experiment was trained for 'rgb', not "
        r"'partseg'; use rgb/metrics_rgb.py",
        err[0],
    )

    # damage the newest snapshot (iteration 2): truncated data file
    data_file = glob.glob(os.path.join(rgb_exp, "snapshots", "step-0000002", "model.data-*"))[0]
    original = open(data_file, "rb").read()
    try:
        with open(data_file, "r+b") as f:
            f.truncate(100)
        built = []
        monkeypatch.setattr(inference, "build_graph", lambda *a, **k: built.append(1) or 1 / 0)
        with pytest.raises(
            ExperimentStateError,
            match=r"no readable checkpoint for --snapshot 2 .*"
            r"snapshots/step-0000002 \(model.data-00000-of-00001, "
            r"model.index\): \w+Error",
        ):
            inference.Predictor(rgb_exp, predict_rgb.TASK, snapshot="2")
        assert not built  # refused before any graph was built
        with pytest.raises(WrongTask):
            from partseg.task import TASK as PARTSEG

            inference.Predictor(rgb_exp, PARTSEG)
        # 'latest' falls back to the older snapshot, as training's resume does, and says so in one line
        summary = metrics_rgb.main(_metrics_argv(rgb_exp, out, "--snapshot", "latest"))
        assert summary["step"] == 1
        warned = [line for line in capsys.readouterr().err.splitlines() if "unreadable" in line]
        assert len(warned) == 1 and re.search(
            r"warning: skipped unreadable checkpoint\(s\) snapshots/step-0000002 "
            r"\(model.data-00000-of-00001, model.index\): .*; using "
            r"snapshots/step-0000001 \(iteration 1\)",
            warned[0],
        )
    finally:
        with open(data_file, "wb") as f:
            f.write(original)


# --------------------------------------------------------------------------- 3. splits
def test_splits_are_disjoint_and_cover_for_every_fraction_triple():
    rng = np.random.default_rng(0)
    cases = [
        ((0, 0, 1), 30),
        ((0, 1, 0), 7),
        ((1, 0, 0), 5),
        ((0, 0.5, 0.5), 5),
        ((0.8, 0.1, 0.1), 3),
        ((0.8, 0.1, 0.1), 2),
        ((0.98, 0.01, 0.01), 4),
        ((0.01, 0.495, 0.495), 4),
    ]
    for _ in range(3000):
        f = rng.dirichlet([1, 1, 1])
        if rng.random() < 0.5:
            f[rng.integers(3)] = 0
        if rng.random() < 0.3:
            f = np.round(f, 1)
        f = f / f.sum() if f.sum() > 0 else np.array([1.0, 0, 0])
        cases.append((tuple(f), int(rng.integers(0, 25))))
    for fractions, n in cases:
        ids = [f"m{i:03d}" for i in range(n)]
        made = splits.split_models(ids, seed=n, synset=CHAIR, fractions=fractions)
        parts = [set(made[name]) for name in ("train", "val", "test")]
        assert sum(map(len, parts)) == len(set().union(*parts)) == n, (fractions, n)  # disjoint
        assert set().union(*parts) == set(ids), (fractions, n)  # covering
        for share, part in zip(fractions, parts):
            if share == 0:
                assert not part, (fractions, n)  # a zero share gets nothing
            assert abs(len(part) - share * n) < 2, (fractions, n, [len(p) for p in parts])
        if n >= 3:  # every non-zero share gets a model
            assert all(part for share, part in zip(fractions, parts) if share > 0), (fractions, n)


# --------------------------------------------------------------------------- 4. lock, signals
HOLD = """
import sys
from utils.datagen.writer import lock_data_folder
held = lock_data_folder(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
"""


def test_data_tools_lock_their_out_folder(tmp_path, capsys):
    out = tmp_path / "data"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert (
            demo_data.main(
                [
                    "--out",
                    str(out),
                    "--categories",
                    "car",
                    "--n_models",
                    "1",
                    "--n_views",
                    "1",
                    "--quiet",
                    "--workers",
                    "1",
                ]
            )
            == 2
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.match(
            f"make_demo_data: error: data folder {out} is in use by another data "
            f"tool: PID {holder.pid} on host .*choose another --out",
            err[0],
        )
        meshes = tmp_path / "meshes"
        meshes.mkdir()
        trimesh.creation.box().export(meshes / "box.ply")
        assert mesh_dataset.main(["--meshes", str(meshes), "--out", str(out), "--category", "chair", "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(
            f"make_dataset: error: data folder {out} is in use by another data tool: PID {holder.pid} on host"
        )
        assert os.listdir(out) == [".lock"]  # nothing made
    finally:
        holder.kill()  # as kill -9
        holder.wait()
    demo_data.generate(out, categories=("car",), n_models=1, **TINY)  # a dead holder's lock is taken over
    assert not (out / ".lock").exists()  # released and removed: the folder is as the tool left it


SIGTERM_DURING = """
import os, signal, sys
from utils.datagen import demo_data, mesh_dataset
signal.signal(signal.SIGTERM, signal.SIG_DFL)
calls = []
def on_second_call(real):
    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)
    return wrapped
if sys.argv[1] == "demo":
    demo_data.make_model = on_second_call(demo_data.make_model)
    sys.exit(demo_data.main(["--out", sys.argv[2], "--categories", "car", "--n_models", "3", "--n_views", "1",
                             "--img_size", "16", "--supersample", "1", "--quiet", "--workers", "1"]))
mesh_dataset.render_model = on_second_call(mesh_dataset.render_model)
sys.exit(mesh_dataset.main(["--meshes", sys.argv[3], "--out", sys.argv[2], "--category", "90000001",
                            "--n_views", "1", "--size", "16", "--supersample", "1", "--n_dense", "2048",
                            "--quiet", "--workers", "1"]))
"""


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    demo_out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING, "demo", str(demo_out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "make_demo_data: interrupted by SIGTERM; its working folder was removed, nothing else was changed; "
        "re-run the command"
    ]
    assert not demo_out.exists()  # nothing left: no working folder, no lock, no empty --out

    meshes = tmp_path / "meshes"
    meshes.mkdir()
    for k in range(3):
        trimesh.creation.box(extents=[1, 1 + k, 1]).export(meshes / f"box{k}.ply")
    out = tmp_path / "made"
    proc = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING, "mesh", str(out), str(meshes)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("make_dataset: interrupted by SIGTERM; complete models")
    assert sorted(os.listdir(out / ".make_dataset")) == ["models", "params.json"]  # no tmp/, no lock
    assert not (out / ".lock").exists()
    assert [p.name for p in (out / ".make_dataset" / "models" / "90000001").iterdir()] == ["box0.json"]
    info = mesh_dataset.make_dataset(
        meshes,
        out,
        mesh_dataset.Options(n_views=1, img_size=16, supersample=1, n_dense=2048),
        category="90000001",
        progress=False,
    )
    assert info["already_complete"] == 1 and info["rendered_now"] == 2


# --------------------------------------------------------------------------- 5. meshes
def _obj(path, vertices, faces, header=""):
    with open(path, "w") as f:
        f.write(header)
        f.writelines(f"v {v[0]:.17g} {v[1]:.17g} {v[2]:.17g}\n" for v in vertices)
        f.writelines("f {} {} {}\n".format(*(int(i) + 1 for i in t)) for t in faces)
    return path


def _off(path, vertices, faces):
    """A mesh file that keeps every face as given (degenerate ones too)."""
    trimesh.Trimesh(vertices, faces, process=False).export(path)
    return path


def _coverage(path, tmp_path):
    opts = mesh_dataset.Options(n_views=2, img_size=32, supersample=1, n_dense=4096)
    model = mesh_dataset.render_model(MeshSource(path, "90000001", path.stem, "files"), opts)
    return float(np.mean(model["depth"] < 254)), model


def test_outlier_vertices_overflow_missing_files_and_grey(tmp_path, capsys):
    box = trimesh.creation.box()
    plain, _ = _coverage(_obj(tmp_path / "box.obj", box.vertices, box.faces), tmp_path)
    far = np.vstack([box.vertices, [[1e6, 0, 0]]])
    # a stray vertex in a degenerate face only: ignored, the box renders as without it
    degenerate = _off(tmp_path / "degenerate.off", far, np.vstack([box.faces, [[0, 0, 8]]]))
    cov, _ = _coverage(degenerate, tmp_path)
    assert plain > 0.2 and cov == pytest.approx(plain, abs=0.02)
    # a sliver reaching it: the object shrinks to nothing, the model fails with the reason
    sliver = _off(tmp_path / "sliver.off", far, np.vstack([box.faces, [[0, 1, 8]]]))
    with pytest.raises(MeshError, match="the views are nearly empty"):
        _coverage(sliver, tmp_path)
    huge = _off(tmp_path / "huge.off", np.vstack([box.vertices, [[1e200, 0, 0]]]), np.vstack([box.faces, [[0, 1, 8]]]))
    with pytest.raises(MeshError, match="numeric overflow: vertex coordinates up to 1e\\+200 overflow float64"):
        normalise(load_mesh(huge).surface)
    stray = _off(
        tmp_path / "stray.off", np.vstack([box.vertices, [[1e200, 0, 0]]]), np.vstack([box.faces, [[0, 0, 8]]])
    )
    with pytest.raises(MeshError, match="numeric overflow: a vertex at 1e\\+200 lies beyond the float32 range"):
        normalise(load_mesh(stray).surface)
    # a material without a colour, and a missing material library: the documented grey 0.6
    (tmp_path / "plain.mtl").write_text("newmtl plain\nNs 10\n")
    _, model = _coverage(
        _obj(tmp_path / "nokd.obj", box.vertices, box.faces, "mtllib plain.mtl\nusemtl plain\n"), tmp_path
    )
    assert GREY == 0.6 and set(np.unique(model["rgb"][model["depth"] < 254])) == {round(0.6 * 255)}
    collection = tmp_path / "collection"
    collection.mkdir()
    _obj(collection / "nomtl.obj", box.vertices, box.faces, "mtllib gone.mtl\nusemtl x\n")
    os.replace(sliver, collection / "sliver.off")
    assert (
        mesh_dataset.main(
            [
                "--meshes",
                str(collection),
                "--out",
                str(tmp_path / "out"),
                "--category",
                "chair",
                "--n_views",
                "2",
                "--size",
                "16",
                "--n_dense",
                "2048",
                "--quiet",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    lines = capsys.readouterr()
    assert re.search(r"make_dataset: warning: .*nomtl.obj: texture/material file\(s\) not found: gone.mtl", lines.out)
    assert re.search(r"make_dataset: skipped .*sliver.off: the views are nearly empty", lines.out)
    assert "1 rendered now, 0 already complete, 1 failed" in lines.out


def _gltf_quad(folder, image_uri):
    """A textured unit square as a .gltf whose image is the external file ``image_uri`` (a red
    8x8 PNG written at ``folder / "red.png"``), buffers beside it."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(folder / "red.png")
    quad = trimesh.Trimesh(
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]],
        [[0, 1, 2], [0, 2, 3]],
        visual=trimesh.visual.TextureVisuals(uv=[[0, 0], [1, 0], [1, 1], [0, 1]], image=Image.fromarray(red)),
        process=False,
    )
    files = trimesh.exchange.gltf.export_gltf(trimesh.Scene(quad))
    doc = json.loads(files.pop("model.gltf"))
    doc["images"] = [{"uri": image_uri}]  # the texture as a file of its own, not in a buffer
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "quad.gltf").write_text(json.dumps(doc))
    return folder / "quad.gltf"


def test_gltf_missing_texture_reported_and_files_outside_the_mesh_folder_refused(tmp_path, capsys):
    """A .gltf whose texture file is missing is reported like an OBJ's (it rendered grey without a
    word); a material or texture named outside the mesh's folder is not read, with a warning naming
    it, unless --allow_outside_files."""
    gltf = _gltf_quad(tmp_path / "ok", "red.png")
    loaded = load_mesh(gltf)
    assert len(loaded.surface.textures) == 1 and loaded.notes == []
    gone = _gltf_quad(tmp_path / "meshes" / "gone", "red.png")
    (gone.parent / "red.png").unlink()
    loaded = load_mesh(gone)
    assert loaded.surface.textures == []
    assert loaded.notes == ["texture/material file(s) not found: red.png (those faces use the material colour)"]
    argv = ["--meshes", str(tmp_path / "meshes"), "--out", str(tmp_path / "out"), "--category", "chair"]
    argv += ["--n_views", "1", "--size", "16", "--n_dense", "2048", "--quiet", "--workers", "1"]
    assert mesh_dataset.main(argv) == 0
    out = capsys.readouterr().out
    assert f"make_dataset: warning: {gone}: texture/material file(s) not found: red.png" in out

    # outside the mesh's folder: a glTF image, an OBJ material library (a red Kd there)
    outside = _gltf_quad(tmp_path / "in", "../ok/red.png")
    loaded = load_mesh(outside)
    assert loaded.surface.textures == []
    assert loaded.notes == [
        f"file(s) outside the mesh's folder {tmp_path / 'in'} not read: ../ok/red.png (those faces use "
        "the material colour; make_dataset.py --allow_outside_files reads them)"
    ]
    assert len(load_mesh(outside, allow_outside=True).surface.textures) == 1
    (tmp_path / "red.mtl").write_text("newmtl red\nKd 1 0 0\n")
    box = trimesh.creation.box()
    obj = _obj(tmp_path / "in" / "box.obj", box.vertices, box.faces, "mtllib ../red.mtl\nusemtl red\n")
    loaded = load_mesh(obj)
    assert np.allclose(loaded.surface.corner_colours, GREY)
    assert loaded.notes == [
        f"file(s) outside the mesh's folder {tmp_path / 'in'} not read: ../red.mtl (those faces use the "
        "material colour; make_dataset.py --allow_outside_files reads them)"
    ]
    assert np.allclose(load_mesh(obj, allow_outside=True).surface.corner_colours, [1, 0, 0])
    absolute = _obj(tmp_path / "in" / "abs.obj", box.vertices, box.faces, f"mtllib {tmp_path / 'red.mtl'}\n")
    assert "not read: " + str(tmp_path / "red.mtl") in load_mesh(absolute).notes[0]


ORPHANS = """
import os, sys, time
from utils.datagen import mesh_dataset

real = mesh_dataset.render_model

def slow(source, opts):  # in a worker: say so, then take a while
    open(os.path.join(sys.argv[3], f"started-{os.getpid()}"), "w").close()
    time.sleep(3)
    return real(source, opts)

mesh_dataset.render_model = slow
sys.exit(mesh_dataset.main(["--meshes", sys.argv[1], "--out", sys.argv[2], "--category", "90000001",
                            "--n_views", "1", "--size", "16", "--supersample", "1", "--n_dense", "2048",
                            "--quiet", "--workers", "2"]))
"""


def test_workers_of_a_killed_make_dataset_end_without_tracebacks(tmp_path):
    """make_dataset killed with SIGKILL while its two workers render: the workers end with it, and
    print nothing (they used to finish their model and die on a BrokenPipeError traceback)."""
    meshes, marks = tmp_path / "meshes", tmp_path / "marks"
    meshes.mkdir()
    marks.mkdir()
    for k in range(4):
        trimesh.creation.box(extents=[1, 1 + k, 1]).export(meshes / f"box{k}.ply")
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHANS, str(meshes), str(tmp_path / "out"), str(marks)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=os.getcwd(), TF_CPP_MIN_LOG_LEVEL="2"),
    )
    try:
        for _ in range(600):  # until both workers are rendering (at most a minute)
            if len(os.listdir(marks)) >= 2 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert len(os.listdir(marks)) >= 2, proc.communicate()
        proc.kill()
        out, err = proc.communicate(timeout=60)  # returns when every writer of the pipes (the workers) is gone
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert "Traceback" not in err and "BrokenPipeError" not in err, err

    def state(pid):  # 'gone', or the /proc state letter (Z: dead, not yet reaped by its new parent)
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return "gone"

    pids = [name.split("-")[1] for name in os.listdir(marks)]
    for _ in range(100):  # the pipes close a moment before a process has finished exiting
        if all(state(pid) in ("gone", "Z", "X") for pid in pids):
            break
        time.sleep(0.1)
    assert all(state(pid) in ("gone", "Z", "X") for pid in pids), [state(pid) for pid in pids]


# --------------------------------------------------------------------------- 6. --force, N_VIEWS, small inputs
def _tree(root, synset):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for path in demo_data.category_paths(root, synset)
        for p in ([path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else [])
        if p.is_file()
    }


def test_force_replaces_only_the_categories_asked_for(tmp_path, capsys):
    demo_data.generate(tmp_path, categories=("car",), n_models=2, **TINY)
    cars = _tree(tmp_path, CAR)
    demo_data.generate(tmp_path, categories=("chair",), n_models=2, **TINY)  # another category: added
    with pytest.raises(FileExistsError, match="already holds chair; pass --force to replace it"):
        demo_data.generate(tmp_path, categories=("chair",), n_models=3, **TINY)
    capsys.readouterr()
    demo_data.generate(tmp_path, categories=("chair",), n_models=3, force=True, **TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"make_demo_data: warning: --force: replacing chair ({CHAIR}) in")
    assert _tree(tmp_path, CAR) == cars  # byte for byte
    assert len(os.listdir(tmp_path / "ShapeNet_rendered" / CHAIR)) == 3
    names = json.loads((tmp_path / "partseg" / "part_names.json").read_text())
    assert sorted(names) == sorted([CHAIR, CAR])
    assert sorted(os.listdir(tmp_path)) == ["ShapeNet_pcl", "ShapeNet_rendered", "demo_info.json", "partseg", "splits"]


def test_more_supervision_views_than_rendered_is_refused(tiny_data):
    kw = dict(task=task_from_ref("rgb"), batch_size=1, num_workers=0, view_mode="random")
    assert BatchPipeline(tiny_data, "chair", "train", n_views=4, **kw).get_batch(0)["views"].shape == (1, 4)
    path = os.path.join(tree_dirs(tiny_data)["rendered"], CHAIR, r"chair_\d+", "view.txt")
    with pytest.raises(DataError, match=f"--N_VIEWS 5: {path} lists 4 views; expected --N_VIEWS <= 4"):
        BatchPipeline(tiny_data, "chair", "train", n_views=5, **kw)


def test_predict_warns_on_inputs_far_smaller_than_the_network_input(rgb_exp, tmp_path, capsys):
    from rgb import predict_rgb

    for name, size in (("dot", 1), ("half", 32), ("fine", 48)):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.full((size, size, 3), 200, np.uint8))
    res = predict_rgb.main(
        [
            "--exp",
            rgb_exp,
            "--snapshot",
            "1",
            str(tmp_path / "dot.png"),
            str(tmp_path / "half.png"),
            str(tmp_path / "fine.png"),
            "--out",
            str(tmp_path / "out"),
            "--no_sheet",
            "--no_progress",
        ]
    )
    assert len(res["outputs"]) == 3 and not res["errors"]
    # (uniform grey images also get the photo warnings of docs/inference.md; only the size ones here)
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line and "px," in line]
    assert [re.sub(r".*/", "", w) for w in warned] == [
        "dot.png: 1x1 px, far smaller than the network's 64x64 input; it is enlarged and the cloud is likely poor",
        "half.png: 32x32 px, far smaller than the network's 64x64 input; it is enlarged and the cloud is likely poor",
    ]


def test_training_announces_a_skipped_snapshot_on_the_console(tmp_path, sess, capsys):
    from utils.common.tfv1 import tf
    from utils.experiment import Experiment
    from utils.train import loop as train_loop

    step_var = tf.train.get_or_create_global_step()
    tf.get_variable("w", initializer=tf.ones([50, 50]))
    saver = tf.train.Saver()
    sess.run(tf.global_variables_initializer())
    e = Experiment(str(tmp_path / "exp"))
    for step in (10, 20):
        sess.run(step_var.assign(step))
        e.save(saver, sess, step)
    with open(glob.glob(e.path("snapshots", "step-0000020", "model.data-*"))[0], "r+b") as f:
        f.truncate(100)
    capsys.readouterr()
    assert cli.run("train_rgb", lambda argv: train_loop.find_resume(e)[1]) == 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "train_rgb: warning: skipped unreadable checkpoint snapshots/step-0000020"
    )
    e.release()
