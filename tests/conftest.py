"""Shared pytest fixtures: a fresh default graph per test, one tiny generated data set, one tiny
training run (``train_tiny``), and independent oracles (finite differences, a numpy projection).

Scripts outside the packages (``benchmarks/``, ``claims/``, ``examples/``) are imported as the
namespace packages they are from the repository root (``from claims import ablation``): the test
command runs pytest there."""

import os
import shutil
import subprocess

import numpy as np
import pytest

import tiny
from utils.common.tfv1 import tf, use_graph_mode

use_graph_mode()  # the suite tests the TF1-style graphs; eager-mode tests run in a subprocess


@pytest.fixture(autouse=True)
def fresh_graph():
    """Each test builds in its own graph, so variable names never clash."""
    graph = tf.Graph()
    with graph.as_default():
        yield graph


@pytest.fixture
def sess(fresh_graph):
    """A CPU session on the test's graph."""
    config = tf.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
    with tf.Session(graph=fresh_graph, config=config) as s:
        yield s


def _central_differences(sess, loss, x, x0, eps=1e-6):
    """d loss / d x at x0 by central differences, one entry of the placeholder x at a time."""
    grad = np.zeros_like(x0)
    for idx in np.ndindex(*x0.shape):
        hi, lo = x0.copy(), x0.copy()
        hi[idx] += eps
        lo[idx] -= eps
        grad[idx] = (sess.run(loss, {x: hi}) - sess.run(loss, {x: lo})) / (2 * eps)
    return grad


@pytest.fixture
def finite_difference():
    """``f(sess, loss, x, x0, eps=1e-6)``: the numerical gradient oracle of the projection tests."""
    return _central_differences


def _project_np(xyz, az, el, img_h, img_w, distance=2.0):
    """The original's camera in plain numpy, written apart from utils.render.camera (a test oracle):
    world points (N, 3) rotated by az about x, then by el about y, seen from ``distance`` on +z;
    pinhole with focal 120 px and the centre in the middle of a 64 px side (both scaled with the
    side). Returns (N, 3): row px, col px, depth (points behind the camera are not handled)."""
    ca, sa, ce, se = np.cos(az), np.sin(az), np.cos(el), np.sin(el)
    r_az = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    r_el = np.array([[ce, 0, se], [0, 1, 0], [-se, 0, ce]])
    cam = np.asarray(xyz, np.float64) @ (r_el @ r_az).T - [0.0, 0.0, distance]
    depth = -cam[:, 2]
    return np.stack(
        [img_h / 2 + 120.0 * img_h / 64 * cam[:, 0] / depth, img_w / 2 + 120.0 * img_w / 64 * cam[:, 1] / depth, depth],
        -1,
    )


@pytest.fixture
def project_np():
    """``f(xyz (N, 3), az, el, img_h, img_w)`` -> (N, 3) row, col, depth: an independent numpy camera."""
    return _project_np


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny demo data set (chairs: 8 train / 1 val / 1 test models, 4 views each), made once."""
    return tiny.make_data(tmp_path_factory.mktemp("tiny_data"), 3)


@pytest.fixture(scope="session")
def train_tiny():
    """``train_tiny(task, data_dir, exp, iters=2, extra=())``: :func:`tiny.train` (the one tiny training
    configuration, tests/tiny.py), as a fixture."""
    return tiny.train


@pytest.fixture
def tf_ops_without_library(tmp_path):
    """tf_ops as it is where its compiled library is missing: the loader is pointed at a file
    that does not exist (the next use tries it, warns and falls back); restored afterwards."""
    import tf_ops

    tf_ops.LOADER.reset(lib_path=str(tmp_path / "no-such-lib.so"))
    yield
    tf_ops.LOADER.reset()


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB file system (tmpfs) when this process may mount one, else None."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not shutil.which("mount") or os.geteuid() != 0:
        yield None
        return
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True)
    except OSError:
        ok = None
    if ok is None or ok.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
