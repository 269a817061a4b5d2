"""Files replaced in one step: a reader, or a run killed half-way, sees the old file or the new
one, never part of one. Standard library only (``claims/ablation.py`` imports it before
TensorFlow)."""

import json
import os
import shutil
import uuid
from pathlib import Path


def write_text(path, text, fsync=False):
    """Write ``text`` to ``path`` through a temporary file in the same folder, renamed into place.

    ``fsync``: flush the file to disk before the rename (checkpoint pointers, which must not
    point at data a power cut could lose). The temporary file is removed if writing fails.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_npz(path, **arrays):
    """``numpy.savez_compressed(path, **arrays)`` through a temporary file renamed into place (numpy is
    imported here, not at the module's import)."""
    import numpy as np

    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj, indent=2, fsync=False):
    """:func:`write_text` of ``json.dumps(obj, indent=indent)``."""
    write_text(path, json.dumps(obj, indent=indent), fsync=fsync)


def replace_dir(tmp, path):
    """Move the finished folder ``tmp`` to ``path`` (same file system), replacing any folder there.

    A rename cannot replace a non-empty folder, so an old ``path`` is first renamed aside and
    removed after the new one is in place: a reader sees the old folder, the new one, or (for
    that moment) none, never a folder that is half written. ``tmp`` must be complete (its
    contents written and closed) before the call.
    """
    tmp, path = Path(tmp), Path(path)
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            if not path.exists():
                os.replace(old, path)  # put the old folder back
            else:  # another process put its folder there meanwhile
                shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
