"""The environment itself: package imports, graph mode, a known value, Saver round trip."""

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

from utils.common.tfv1 import tf
from utils.net import layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "name, api",
    [
        ("utils", ()),
        ("utils.render.camera", ("project", "world2cam", "intrinsics")),
        ("utils.net.layers", ("weight_decay_loss",)),
        ("utils.task", ("task_from_ref", "available_tasks")),
        ("rgb", ()),
        ("partseg", ()),
        ("tf_ops", ("nn_distance", "approx_match", "match_cost", "backend")),
    ],
)
def test_package_imports(name, api):
    """Each package imports (no work or error at import time) and offers the functions its callers use."""
    module = importlib.import_module(name)
    assert module.__name__ == name
    missing = [a for a in api if not callable(getattr(module, a, None))]
    assert not missing, f"{name} lacks {missing}"


@pytest.mark.parametrize("name", ["rgb", "partseg"])
def test_task_folders_define_their_task(name):
    """``<name>/task.py`` defines TASK, a Task called ``name``: what args.json's task finds again."""
    from utils.task import Task, task_from_ref

    task = importlib.import_module(f"{name}.task").TASK
    assert isinstance(task, Task) and task.name == name and task_from_ref(name) is task


def test_utils_importable_without_pythonpath(tmp_path):
    """The editable install, not PYTHONPATH or the cwd, makes ``utils`` importable."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", "import utils, os; print(os.path.dirname(utils.__file__))"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert os.path.samefile(out.stdout.strip(), os.path.join(ROOT, "utils"))


def _imports(path):
    """Absolute module names a Python file imports (lines and names)."""
    import ast

    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.lineno, node.module


def test_tf_ops_imports_nothing_from_utils():
    """tf_ops is a package of its own (ops, references, fallbacks, build): utils uses it, never the
    other way round, so there is no utils -> tf_ops -> utils loop."""
    folder = os.path.join(ROOT, "tf_ops")
    files = [os.path.join(d, name) for d, _, names in os.walk(folder) for name in sorted(names) if name.endswith(".py")]
    assert any(os.sep + "projection" + os.sep in f for f in files)  # the op folders are searched too
    found = [
        f"{os.path.relpath(path, ROOT)}:{line} imports {module}"
        for path in files
        for line, module in _imports(path)
        if module == "utils" or module.startswith("utils.")
    ]
    assert not found, found


def test_project_modules_import_tfv1_before_tf_ops():
    """tf_ops imports TensorFlow itself; the first import in a process decides whether TensorFlow's
    start-up lines are hidden, so every module that imports tf_ops at its top imports utils.common.tfv1
    first (tf_ops/__init__.py)."""
    import ast

    wrong = []
    for folder in ("utils", "rgb", "partseg", "benchmarks", "scripts"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, folder)):
            for name in sorted(n for n in names if n.endswith(".py")):
                path = os.path.join(dirpath, name)
                with open(path) as f:
                    body = ast.parse(f.read(), path).body  # module level only
                first = {}
                for node in body:
                    modules = (
                        [a.name for a in node.names]
                        if isinstance(node, ast.Import)
                        else [node.module]
                        if isinstance(node, ast.ImportFrom) and node.level == 0
                        else []
                    )
                    for module in modules:
                        key = "tf_ops" if module.split(".")[0] == "tf_ops" else module
                        first.setdefault(key, node.lineno)
                if "tf_ops" in first and first.get("utils.common.tfv1", 10**9) > first["tf_ops"]:
                    wrong.append(f"{os.path.relpath(path, ROOT)}:{first['tf_ops']}")
    assert not wrong, wrong


def test_graph_mode_and_known_value(sess):
    assert not tf.executing_eagerly()
    x = tf.placeholder(tf.float32, [None, 3])
    y = tf.reduce_sum(tf.square(x), axis=1)
    np.testing.assert_allclose(sess.run(y, {x: [[1, 2, 3], [0, -1, 0.5]]}), [14.0, 1.25])


def test_saver_round_trip(tmp_path, fresh_graph):
    x = tf.placeholder(tf.float32, [2, 5, 5, 3])
    with tf.variable_scope("net"):
        h = layers.conv2d(x, 4, scope="c1")
        y = layers.fully_connected(h, 7, activation=None, scope="fc")
    saver = tf.train.Saver()
    feed = {x: np.random.default_rng(1).random((2, 5, 5, 3), dtype=np.float32)}
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())
        before = s.run(y, feed)
        values = {v.name: s.run(v) for v in tf.global_variables()}
        path = saver.save(s, str(tmp_path / "model"), global_step=3)
    with tf.Session() as s:
        s.run(tf.global_variables_initializer())  # new random values ...
        saver.restore(s, path)  # ... replaced by the saved ones
        for v in tf.global_variables():
            np.testing.assert_array_equal(s.run(v), values[v.name])
        np.testing.assert_array_equal(s.run(y, feed), before)
    assert path.endswith("model-3")


def test_layers_shapes_and_weight_decay(sess):
    x = tf.placeholder(tf.float32, [3, 9, 7, 2])
    h = layers.conv2d(x, 5, strides=2, weight_decay=0.5, scope="c")
    y = layers.fully_connected(h, 4, weight_decay=0.0, scope="f")
    assert h.shape.as_list() == [3, 5, 4, 5] and y.shape.as_list() == [3, 4]
    sess.run(tf.global_variables_initializer())
    w = sess.run(tf.global_variables("c/W")[0])
    # Only the conv layer has decay: 0.5 * sum(w^2) / 2.
    np.testing.assert_allclose(sess.run(layers.weight_decay_loss()), 0.25 * np.sum(w**2), rtol=1e-5)
