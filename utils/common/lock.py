"""An exclusive, self-describing lock on a folder (standard library only).

``FolderLock(folder)`` takes an exclusive ``flock`` on ``<folder>/.lock`` and records the
holder's PID, host and start time in it; a second holder is refused with :class:`FolderInUse`
naming them. The kernel releases the lock when its holder dies (kill -9, crash), so a lock left
by a killed run is taken over (``took_over`` then names the dead holder). Used by the training
experiment folder (:mod:`utils.experiment`) and the data tools' ``--out`` folder
(:mod:`utils.datagen.demo_data`, :mod:`utils.datagen.mesh_dataset`).
"""

import fcntl
import json
import os
import socket
import time

LOCK_FILE = ".lock"


class FolderInUse(RuntimeError):
    """Another process holds the folder's lock."""


def holder_text(text):
    """'PID p on host h (since t)' from a lock file's contents."""
    try:
        info = json.loads(text)
        return f"PID {info['pid']} on host {info['host']} (since {info.get('since', '?')})"
    except (ValueError, KeyError, TypeError):
        return "an unknown process (its lock file could not be read)"


class FolderLock:
    """Exclusive lock on ``folder`` (which must exist); released by :meth:`release`, on exit of a
    ``with`` block, or by the kernel when the process dies.

    Args:
        folder: the folder to lock. what: its role in the refusal ('experiment folder', 'data folder').
        holder: who would hold it ('trainer', 'data generator'). advice: the end of the refusal.
        error: the exception class raised when the lock is held (a FolderInUse subclass).
        remove: delete the lock file on release (a data folder is left as it was); by default it
            is kept, emptied (an experiment folder).
    """

    def __init__(self, folder, what="folder", holder="process", advice="", error=FolderInUse, remove=False):
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, LOCK_FILE)
        self.took_over = None
        self.remove = remove
        self._fd = None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    with open(self.path) as f:
                        who = holder_text(f.read())
                except OSError:
                    who = holder_text("")
                os.close(fd)
                raise error(
                    f"{what} {self.folder} is in use by another {holder}: {who}" + (f". {advice}" if advice else "")
                ) from None
            try:  # a holder that removes its file on release may have unlinked this one meanwhile
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = os.read(fd, 4096).decode(errors="replace").strip()
        if previous:  # released without clearing: its holder died (kill -9, crash, power loss)
            self.took_over = holder_text(previous)
        info = dict(pid=os.getpid(), host=socket.gethostname(), since=time.strftime("%Y-%m-%d %H:%M:%S"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        os.fsync(fd)
        self._fd = fd

    @property
    def held(self):
        return self._fd is not None

    def release(self):
        """Give up the lock (cleared, so the next holder does not see a stale one)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                if self.remove:  # unlinked while still locked: a newcomer re-checks the inode it locked
                    os.unlink(self.path)
                else:
                    os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # closing releases the flock

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            self.release()
