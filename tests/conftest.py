"""Shared pytest fixtures: a fresh default graph per test, and one tiny generated data set."""
import numpy as np
import pytest

from utils.tfv1 import tf, use_graph_mode

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


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny demo data set (chairs: 8 train / 1 val / 1 test models, 4 views each), made once."""
    from utils.datagen import demo_data
    out = tmp_path_factory.mktemp("tiny_data")
    demo_data.main(["--out", str(out), "--categories", "chair", "--n_models", "10", "--n_views", "4",
                    "--seed", "3", "--workers", "1"])
    return str(out)


@pytest.fixture
def tf_ops_without_library(tmp_path):
    """tf_ops as it is where its compiled library is missing: the loader is pointed at a file
    that does not exist (the next use tries it, warns and falls back); restored afterwards."""
    import tf_ops
    tf_ops.LOADER.reset(lib_path=str(tmp_path / "no-such-lib.so"))
    yield
    tf_ops.LOADER.reset()
