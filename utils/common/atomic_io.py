"""Files replaced in one step: a reader, or a run killed half-way, sees the old file or the new
one, never part of one. Standard library only (``claims/ablation.py`` imports it before
TensorFlow).

Temporary names (all in the target's folder, so the final rename stays on one file system):

* a file: ``.<name>.<pid>.tmp`` (``.<name>.<pid>.tmp<suffix>`` when the writer needs the suffix,
  e.g. an image library choosing the format by extension) -- :func:`write_text`, :func:`writing`;
* a folder: ``.<name>.tmp-<pid>-<hex>``, flock-ed through its ``.owner`` file while its writer
  works -- :class:`WorkDir`; an old folder moved aside by :func:`replace_dir`:
  ``.<name>.old-<pid>-<hex>``.

A run killed meanwhile leaves them behind; :func:`remove_leftovers` (called by each tool when it
starts on a folder) removes those of dead writers: a folder whose ``.owner`` lock is free, or whose
PID is no longer running on this machine (files, and folders without an owner file).
"""

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import uuid
from pathlib import Path

OWNER = ".owner"  # inside a WorkDir: flock-ed by its writer while it works
_FILE_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp(\.[A-Za-z0-9]+)?$")
_DIR_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]{8}$")


def temp_path(path, keep_suffix=False):
    """The temporary file beside ``path`` for this process: ``.<name>.<pid>.tmp`` (+ the suffix)."""
    path = Path(path)
    return path.parent / f".{path.name}.{os.getpid()}.tmp{path.suffix if keep_suffix else ''}"


def named(err, path, aliases=()):
    """``err`` (an OSError) with ``path`` as its file name when it has none (a failed ``write()``
    does not say which file) or names one of ``aliases`` (a temporary of ``path``); other
    exceptions unchanged."""
    if (
        isinstance(err, OSError)
        and err.errno is not None
        and (err.filename is None or str(err.filename) in {str(a) for a in aliases})
    ):
        new = type(err)(err.errno, err.strerror or os.strerror(err.errno), str(path))
        new.__cause__ = err.__cause__
        return new
    return err


@contextlib.contextmanager
def naming(path, aliases=()):
    """Inside the block, an OSError without a file name (or naming one of ``aliases``) gets ``path``
    as its file name."""
    try:
        yield
    except OSError as err:
        new = named(err, path, aliases)
        if new is err:
            raise
        raise new from None


@contextlib.contextmanager
def writing(path, keep_suffix=False):
    """Yield a temporary path beside ``path``; when the block ends without an error, rename it to
    ``path``, else remove it. OSErrors name ``path``. ``keep_suffix``: the temporary name ends with
    ``path``'s suffix (for writers that pick the format by extension)."""
    path = Path(path)
    tmp = temp_path(path, keep_suffix)
    try:
        with naming(path, (tmp,)):
            yield tmp
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path, text, fsync=False):
    """Write ``text`` to ``path`` through a temporary file in the same folder, renamed into place.

    ``fsync``: flush the file to disk before the rename (checkpoint pointers, which must not
    point at data a power cut could lose). The temporary file is removed if writing fails.
    """
    with writing(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def write_npz(path, **arrays):
    """``numpy.savez_compressed(path, **arrays)`` through a temporary file renamed into place (numpy is
    imported here, not at the module's import)."""
    import numpy as np

    with writing(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


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


class WorkDir:
    """A working folder beside ``target`` (``.<name>.tmp-<pid>-<hex>``), owned by this process
    (an exclusive flock on its ``.owner`` file) until :meth:`commit` moves it into place or
    :meth:`discard` removes it. As a context manager: discarded unless committed.

    A run killed meanwhile leaves the folder with a free lock: :func:`remove_leftovers` removes
    it at the next start, and never a folder whose writer still works (on this machine or on
    another sharing the disk, as far as its file system supports flock).
    """

    def __init__(self, target):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.path = self.target.parent / f".{self.target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()
        self._fd = os.open(self.path / OWNER, os.O_WRONLY | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def _release(self):
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def commit(self):
        """Move the finished folder onto the target (:func:`replace_dir`); returns the target."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path / OWNER)
        try:
            replace_dir(self.path, self.target)
        finally:
            self._release()
        return self.target

    def discard(self):
        self._release()
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.path.exists():
            self.discard()
        else:
            self._release()
        return False


def is_temporary(name):
    """True for a name of this module's temporaries (files and folders, see the module's docstring)."""
    return bool(_FILE_TMP.match(name) or _DIR_TMP.match(name))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _owner_free(folder):
    """True when ``folder/.owner`` exists and nobody holds its lock; None without the file."""
    try:
        fd = os.open(Path(folder) / OWNER, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def leftovers(folder, names=None):
    """The temporaries of dead writers in ``folder`` (see the module's docstring), sorted.

    ``names``: only those of these target names (e.g. one output folder's), default all.
    """
    folder = Path(folder)
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    out = []
    for p in entries:
        m = _FILE_TMP.match(p.name) or _DIR_TMP.match(p.name)
        if m is None or (names is not None and m.group("name") not in names):
            continue
        if p.is_dir() and not p.is_symlink():
            if m.re is _FILE_TMP:
                continue
            free = _owner_free(p) if m.group("kind") == "tmp" else None
            if free is False or (free is None and _pid_alive(int(m.group("pid")))):
                continue
        elif p.is_file() and m.re is _FILE_TMP:
            if _pid_alive(int(m.group("pid"))):
                continue
        else:
            continue
        out.append(p)
    return out


def remove_leftovers(folder, names=None, warn=None):
    """Remove :func:`leftovers` (a folder's temporaries left by killed runs); returns their paths.

    ``warn``: called with one sentence per removed path (e.g. :func:`utils.common.cli.warn`).
    Paths that cannot be removed (another user's, a read-only disk) are left, silently.
    """
    removed = []
    for p in leftovers(folder, names):
        try:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:
            continue
        removed.append(p)
        if warn is not None:
            warn(f"removed {p}, left by an interrupted run")
    return removed


# errno -> (what happened, what to do): the disk problems every tool reports in one line
DISK_PROBLEMS = {
    errno.ENOSPC: ("no space left on the disk", "free space there or write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free space in your quota or write elsewhere"),
    errno.EROFS: ("the file system is read-only", "write to a folder on a writable disk"),
    errno.EACCES: ("permission denied", "choose a folder this user can write, or change its permissions"),
    errno.EPERM: ("operation not permitted", "choose a folder this user can write, or change its permissions"),
}


def disk_problem(err):
    """One sentence for an OSError that is a disk problem (full, quota, read-only, permission),
    naming the file and what to do; None for any other error."""
    if not isinstance(err, OSError) or err.errno not in DISK_PROBLEMS:
        return None
    what, todo = DISK_PROBLEMS[err.errno]
    where = err.filename if err.filename is not None else "(file not known)"
    return f"{where}: {what}; {todo}"
