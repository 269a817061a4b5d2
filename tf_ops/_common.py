"""Loading the compiled library (once, with one warning on failure), gradient registration and
input checks.

Backend choice, in this order:

* ``DIFFER_TF_OPS_BACKEND=fallback`` forces the pure-TF implementations;
  ``DIFFER_TF_OPS_BACKEND=compiled`` makes a missing library an error (any other non-empty
  value is an error too).
* Otherwise the library ``tf_ops/build/libdiffer_ops.so`` is loaded with
  ``tf.load_op_library`` on first use; when it is missing or does not load, the
  pure-TF fallbacks (``tf_ops.fallback``) are used and ONE ``RuntimeWarning``
  says what is missing and how to build it.

The outcome is kept by :data:`LOADER`, a :class:`Loader`; ``LOADER.reset(...)`` makes the next
use try again (tests: the package without its library, the environment switch).
"""

import os
import threading
import warnings

import tensorflow.compat.v1 as tf

from tf_ops import build

LIB_PATH = build.LIB_PATH
BACKEND_ENV = "DIFFER_TF_OPS_BACKEND"
BUILD_HINT = "build it with:  python tf_ops/build.py   (scripts/setup_env.sh does this on every run)"
FALLBACK_NOTE = (
    "using the pure-TF fallbacks (slower, more memory; auction_match runs scipy's exact solver on "
    "the CPU; mask_projection and feature_projection have none here: utils.render.projection renders "
    "with its 'local' graph ops instead)"
)


def _warn(msg):
    # stacklevel: _warn, Loader._try_load, Loader.load, library(), the op wrapper or backend() -> its caller
    warnings.warn(f"tf_ops: {msg}", RuntimeWarning, stacklevel=6)


class Loader:
    """The compiled op library, loaded on first use and kept (thread-safe).

    ``load()`` returns the library (the module of generated op functions) or None when the
    fallbacks are to be used; it tries once and keeps the outcome, and ``error`` says why
    there is no library (None when there is one). ``reset(lib_path)`` forgets the outcome,
    so the next ``load()`` tries again (from ``lib_path``). A failed load warns once per
    attempt; ``DIFFER_TF_OPS_BACKEND=compiled`` turns it into a RuntimeError (raised again
    on every use until the library loads).
    """

    def __init__(self, lib_path=LIB_PATH):
        self._lock = threading.Lock()
        self.reset(lib_path)

    def reset(self, lib_path=LIB_PATH):
        """Forgets the outcome of the last load; the next ``load()`` tries ``lib_path``."""
        with self._lock:
            self.lib_path = lib_path
            self._tried, self._lib, self._error = False, None, None

    def load(self):
        """The loaded library, or None (fallback)."""
        with self._lock:
            if not self._tried:
                self._lib, self._error = self._try_load()
                self._tried = True
            return self._lib

    @property
    def error(self):
        """Why the fallbacks are used (None when the library is loaded)."""
        self.load()
        return self._error

    def _try_load(self):
        """(library, None) or (None, reason); warns about a fallback nobody asked for."""
        mode = os.environ.get(BACKEND_ENV, "").strip().lower()
        if mode not in ("", "fallback", "compiled"):
            raise ValueError(
                f"tf_ops: {BACKEND_ENV} must be 'fallback', 'compiled' or unset, got {os.environ[BACKEND_ENV]!r}"
            )
        if mode == "fallback":
            return None, f"{BACKEND_ENV}=fallback"
        if not os.path.isfile(self.lib_path):
            error = f"compiled library {self.lib_path} not found"
        else:
            try:
                lib = tf.load_op_library(self.lib_path)
            except (tf.errors.OpError, OSError) as e:  # undefined symbols, wrong ABI, not a library
                error = f"compiled library {self.lib_path} failed to load: {e}"
            else:
                _warn_if_stale(self.lib_path)
                return lib, None
        if mode == "compiled":
            raise RuntimeError(f"tf_ops: {error} ({BACKEND_ENV}=compiled); {BUILD_HINT}")
        _warn(f"{error}; {FALLBACK_NOTE}. To get the compiled ops, {BUILD_HINT}")
        return None, error


def _warn_if_stale(lib_path):
    """One warning when the sources changed after the library was built, or when that cannot be checked."""
    try:
        stale = not build.is_up_to_date(build_dir=os.path.dirname(lib_path))
    except (build.BuildError, OSError) as e:  # e.g. a source file missing from an installed copy
        _warn(f"cannot tell whether {lib_path} is up to date ({e}); using it anyway")
        return
    if stale:
        _warn(
            f"{lib_path} is older than its sources, TensorFlow or build options; using it anyway. "
            f"Rebuild: python tf_ops/build.py"
        )


LOADER = Loader()


def library():
    """The loaded op library (module of generated op functions), or None (fallback)."""
    return LOADER.load()


def backend():
    """'compiled' when the C++/CUDA library is in use, else 'fallback'."""
    return "compiled" if library() is not None else "fallback"


def load_error():
    """Why the fallback is used (None when the compiled library is loaded)."""
    library()
    return LOADER.error


def register_gradient(op_type, grad_fn=None):
    """Registers ``grad_fn`` as the gradient of the compiled op ``op_type`` (None: not
    differentiable). TensorFlow's registry is per process; when this module's caller is imported
    again (importlib.reload), the first registration stays."""
    try:
        if grad_fn is None:
            tf.NotDifferentiable(op_type)
        else:
            tf.RegisterGradient(op_type)(grad_fn)
    except KeyError:  # TensorFlow's "registering two gradients" error: already registered
        pass


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
            raise ValueError(
                f"{op}: xyz1 and xyz2 must have the same number of points for a one-to-one "
                f"assignment, got shapes {sa} and {sb}"
            )
    return a, b
