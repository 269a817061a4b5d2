"""Shared pytest fixtures: every test gets a fresh default graph; one tiny demo data set per run."""
import numpy as np
import pytest

from utils.tfv1 import tf


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


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny generated data set (10 chairs, 4 views, both tasks), made once per test run."""
    from utils import demo_data
    out = tmp_path_factory.mktemp("tiny_data")
    demo_data.main(["--out", str(out), "--categories", "chair", "--n_models", "10", "--n_views", "4",
                    "--seed", "3", "--workers", "1"])
    return str(out)
