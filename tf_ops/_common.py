"""Loading the compiled library (once, with one warning on failure) and input checks.

Backend choice, in this order:

* ``DIFFER_TF_OPS_BACKEND=fallback`` forces the pure-TF implementations;
  ``DIFFER_TF_OPS_BACKEND=compiled`` makes a missing library an error.
* Otherwise the library ``tf_ops/build/libdiffer_ops.so`` is loaded with
  ``tf.load_op_library`` on first use; when it is missing or does not load, the
  pure-TF fallbacks (``tf_ops.fallback``) are used and ONE ``RuntimeWarning``
  says what is missing and how to build it.
"""
import os
import threading
import warnings

from utils.tfv1 import tf

HERE = os.path.dirname(os.path.abspath(__file__))
LIB_PATH = os.path.join(HERE, "build", "libdiffer_ops.so")
BUILD_HINT = "build it with:  python tf_ops/build.py   (scripts/setup_env.sh does this on every run)"

_lock = threading.Lock()
_state = {"loaded": False, "lib": None, "error": None}


def _warn(msg):
    warnings.warn(f"tf_ops: {msg}", RuntimeWarning, stacklevel=4)


def library():
    """The loaded op library (module of generated op functions), or None (fallback)."""
    with _lock:
        if _state["loaded"]:
            return _state["lib"]
        _state["loaded"] = True
        mode = os.environ.get("DIFFER_TF_OPS_BACKEND", "").strip().lower()
        if mode == "fallback":
            _state["error"] = "DIFFER_TF_OPS_BACKEND=fallback"
            return None
        if not os.path.isfile(LIB_PATH):
            _state["error"] = f"compiled library {LIB_PATH} not found"
        else:
            try:
                _state["lib"] = tf.load_op_library(LIB_PATH)
            except Exception as e:  # noqa: BLE001 - any load failure means: use the fallback
                _state["error"] = f"compiled library {LIB_PATH} failed to load: {e}"
        if _state["lib"] is None:
            if mode == "compiled":
                raise RuntimeError(f"tf_ops: {_state['error']} (DIFFER_TF_OPS_BACKEND=compiled); {BUILD_HINT}")
            _warn(f"{_state['error']}; using the pure-TF fallbacks (slower, more memory; auction_match "
                  f"runs scipy's exact solver on the CPU). To get the compiled ops, {BUILD_HINT}")
        else:
            _warn_if_stale()
        return _state["lib"]


def _warn_if_stale():
    """One warning when the sources changed after the library was built."""
    try:
        from tf_ops import build
        if not build.is_up_to_date():
            _warn(f"{LIB_PATH} is older than its sources, TensorFlow or build options; using it anyway. "
                  f"Rebuild: python tf_ops/build.py")
    except Exception:  # noqa: BLE001 - a stamp problem must never break the ops
        pass


def backend():
    """'compiled' when the C++/CUDA library is in use, else 'fallback'."""
    return "compiled" if library() is not None else "fallback"


def load_error():
    """Why the fallback is used (None when the compiled library is loaded)."""
    library()
    return _state["error"]


# ---------------------------------------------------------------------------- input checks
def cloud(x, op, name):
    """``x`` as a float32 tensor, checked to be (B, N, 3) with N > 0 as far as the static shape tells."""
    if isinstance(x, (tf.Tensor, tf.Variable)) and x.dtype.base_dtype != tf.float32:
        raise TypeError(f"{op}: {name} must be float32, got {x.dtype.base_dtype.name} (use tf.cast)")
    x = tf.convert_to_tensor(x, dtype=tf.float32, name=name)
    shape = x.shape
    if shape.rank is not None:
        if shape.rank != 3:
            raise ValueError(f"{op}: {name} must be a point cloud of shape (batch, points, 3), got shape {shape}")
        if shape[2] is not None and shape[2] != 3:
            raise ValueError(f"{op}: {name} must have 3 coordinates in its last dimension, got shape {shape}")
        if shape[1] == 0:
            raise ValueError(f"{op}: {name} is an empty point cloud (0 points), shape {shape}")
    return x


def pair(xyz1, xyz2, op, same_points=False):
    """Checks two clouds; same batch size, and the same number of points if ``same_points``."""
    a, b = cloud(xyz1, op, "xyz1"), cloud(xyz2, op, "xyz2")
    sa, sb = a.shape, b.shape
    if sa.rank == 3 and sb.rank == 3:
        if sa[0] is not None and sb[0] is not None and sa[0] != sb[0]:
            raise ValueError(f"{op}: xyz1 and xyz2 must have the same batch size, got shapes {sa} and {sb}")
        if same_points and sa[1] is not None and sb[1] is not None and sa[1] != sb[1]:
            raise ValueError(f"{op}: xyz1 and xyz2 must have the same number of points for a one-to-one "
                             f"assignment, got shapes {sa} and {sb}")
    return a, b
