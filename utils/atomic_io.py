"""Files replaced in one step: a reader, or a run killed half-way, sees the old file or the new
one, never part of one. Standard library only (``benchmarks/ablation.py`` imports it before
TensorFlow)."""
import json
import os
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


def write_json(path, obj, indent=2, fsync=False):
    """:func:`write_text` of ``json.dumps(obj, indent=indent)``."""
    write_text(path, json.dumps(obj, indent=indent), fsync=fsync)
