"""The one place that imports TensorFlow for this project.

DIFFER is written in the TensorFlow 1 programming model (graphs, placeholders,
``tf.Session``, variable scopes, ``tf.train.Saver``). TensorFlow 1.13, which the
original code targeted, has no wheel for any Python we support, so we run
TensorFlow 2.x through ``tensorflow.compat.v1`` with the v2 behaviour switched
off (graph mode, no eager execution). Every module does::

    from utils.common.tfv1 import tf

and gets that ``tf``. Importing this module does NOT switch modes: the switch to graph mode is
a process-wide decision that belongs to the application, so our entry points (training,
evaluation, prediction, benchmarks, the test suite's ``conftest.py``) call
:func:`use_graph_mode` first thing in their ``main``. A library user who imports
``utils.render`` (or any module below it) keeps TensorFlow 2's eager mode, and the renderer's
functions work there as well as in a graph.

Start-up messages. While it is imported, TensorFlow's C++ side prints INFO lines
("oneDNN custom operations are on ...", absl's "All log messages before
absl::InitializeLog() ...") that ``TF_CPP_MIN_LOG_LEVEL`` no longer silences (they go
through absl logging before TensorFlow reads that variable). They are hidden: stderr is
captured while TensorFlow loads and everything else in it (warnings, errors) is written
back. They show with ``--verbose`` on the command line of an entry point (read here from
``sys.argv``, because they are printed before any parser runs) or with
``TF_CPP_MIN_LOG_LEVEL=0``. :func:`set_verbose` does the rest of ``--verbose``.
"""

import os
import re
import sys
import tempfile

VERBOSE_FLAG = "--verbose"
# Lines TensorFlow writes while it loads that say nothing to our users: absl's notice, and
# absl-formatted INFO lines ("I0000 00:00:1795715210.040975    3771 port.cc:153] ...").
_STARTUP_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] .*"
)


def _verbose_start():
    return VERBOSE_FLAG in sys.argv[1:] or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip() == "0"


def _import_tensorflow():
    """``import tensorflow.compat.v1``, with its start-up INFO lines dropped unless verbose."""
    if _verbose_start():
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        import tensorflow.compat.v1 as module

        return module
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's own C++ info/warning lines
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no file descriptor 2 to capture
        import tensorflow.compat.v1 as module

        return module
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow.compat.v1 as module
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not _STARTUP_NOISE.fullmatch(line.rstrip("\r\n")))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
    return module


tf = _import_tensorflow()


def use_graph_mode():
    """Switch this process to TensorFlow 1 behaviour (graph mode, no eager execution), once.

    Called by every entry point of the project before it builds a graph (the training, metrics
    and prediction mains, the benchmarks, ``tests/conftest.py``); never at import. It also sets
    TensorFlow's Python logging to errors only (``--verbose``, :func:`set_verbose`, undoes that).
    Idempotent: later calls do nothing. Returns True when this call made the switch.
    """
    global _GRAPH_MODE
    if _GRAPH_MODE:
        return False
    tf.logging.set_verbosity(tf.logging.ERROR)  # before the next line, which warns
    tf.disable_v2_behavior()
    _GRAPH_MODE = True
    return True


_GRAPH_MODE = False


def session_config(threads=0):
    """The ``tf.ConfigProto`` of every session of training, evaluation and inference: GPU memory
    taken as needed (``allow_growth``), ``threads`` intra- and inter-op threads (0: TensorFlow's
    choice, all cores)."""
    cfg = tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
    cfg.gpu_options.allow_growth = True
    return cfg


def set_verbose(verbose):
    """``--verbose``: TensorFlow's Python-side info and deprecation messages too (default: errors only)."""
    tf.logging.set_verbosity(tf.logging.INFO if verbose else tf.logging.ERROR)


def select_gpu(gpu):
    """``--gpu``: make only GPU ``gpu`` (an index, or a comma-separated list) visible to TensorFlow.

    Sets ``CUDA_VISIBLE_DEVICES``, which TensorFlow reads when it creates its first session; the
    entry points call this right after parsing, before any session. ``None`` leaves every GPU visible.
    """
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)


__all__ = ["tf", "use_graph_mode", "set_verbose", "select_gpu"]
