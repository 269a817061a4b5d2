"""Shared pytest fixtures: every test gets a fresh default graph."""
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
