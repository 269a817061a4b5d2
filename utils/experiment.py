"""Experiment folder: layout, atomic checkpoints, resume.

Layout of ``<exp>/``::

    args.json             the flags of the run (utils.train.config)
    log.txt               plain-text log (appended across resumes)
    logs/train, logs/val  TensorBoard event files
    snapshots/step-0000500/   periodic checkpoints (the last ``keep`` are kept)
    snapshots/latest.json     {"step": 500, "dir": "step-0000500"}
    best/step-0000400/        checkpoint with the best validation Chamfer
    best/best.json            {"step": 400, "dir": "step-0000400", "value": ...}
    log_proj_images/<step>/   input, GT and predicted masks/features as PNG

Atomicity: a checkpoint is written into a hidden temporary folder, which is
renamed to ``step-N`` only once TensorFlow has finished writing; the pointer
JSON is then replaced atomically (``os.replace``). A run killed at any moment
therefore leaves either the previous pointer or the new one, each naming a
complete checkpoint; stale temporaries are removed on the next start. Signals
(Ctrl-C, SIGTERM, SIGHUP) that arrive during a save are held back until it is
complete. A pointer that is missing, unreadable or names an incomplete
checkpoint falls back to the newest complete ``step-N`` folder.

Concurrency: a writer (``Experiment(root)``, i.e. a trainer) holds an exclusive
``flock`` on ``<exp>/.lock`` for its lifetime and records its PID and host in
it; a second writer is refused with :class:`ExperimentInUse` naming them. The
kernel releases the lock when its holder dies, so a lock left by a killed run
is taken over. Readers (``Experiment(root, create=False)``, metrics) take no
lock and may run while training goes on.
"""

import glob
import json
import os
import shutil
import time
import warnings

from utils.common import atomic_io, cli, lock

SNAPSHOTS, BEST = "snapshots", "best"
POINTER = {SNAPSHOTS: "latest.json", BEST: "best.json"}
CKPT_NAME = "model"
LOCK_FILE = lock.LOCK_FILE
STOP_SIGNALS = cli.STOP_SIGNALS


class ExperimentInUse(lock.FolderInUse):
    """Another process holds the experiment's lock (a second trainer on the same --exp)."""


class ExperimentStateError(RuntimeError):
    """The experiment holds work that cannot be resumed safely; nothing is started over it."""


class WrongTask(ValueError):
    """The experiment was trained for another task than the tool's (metrics_rgb on a partseg run)."""


def check_task(exp_dir, trained, task_name, kind):
    """Raise :class:`WrongTask` unless the experiment (``trained``: args.json's task) is ``task_name``'s;
    ``kind``: the tool family ('metrics', 'predict'), to name the right script."""
    if trained != task_name:
        raise WrongTask(
            f"{os.path.join(os.path.abspath(exp_dir), 'args.json')}: the experiment was trained for "
            f"'{trained}', not '{task_name}'; use {trained}/{kind}_{trained}.py"
        )


def read_checkpoint(prefix):
    """Read every tensor of a checkpoint (checksums verified); returns its global_step.

    Raises what TensorFlow raises on a truncated or corrupt file (OutOfRangeError, DataLossError, ...).
    """
    from utils.common.tfv1 import tf  # (this module is otherwise free of TensorFlow)

    reader = tf.train.load_checkpoint(prefix)
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)
    return int(reader.get_tensor("global_step"))


def describe_damage(root, prefix, err):
    """'snapshots/step-N (model.index, model.data-...): OutOfRangeError: ...' for a checkpoint that fails to read."""
    files = sorted(os.path.basename(f) for f in glob.glob(glob.escape(prefix) + ".*"))
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return (
        f"{os.path.relpath(os.path.dirname(prefix), root)} ({', '.join(files) or 'no files'}): "
        f"{type(err).__name__}{': ' + text if text else ''}"
    )


class Experiment:
    """Paths and checkpoint bookkeeping of one experiment folder.

    ``Experiment(root)`` creates the folder and takes its writer lock (raises
    :class:`ExperimentInUse` when another process holds it); call
    :meth:`release` (or use it as a context manager) when done.
    ``Experiment(root, create=False)`` opens an existing folder for reading only.
    """

    def __init__(self, root, create=True):
        self.root = os.path.abspath(root)
        self._lock = None  # lock.FolderLock while this process writes here
        self._reported = set()
        self.took_over = None  # holder of a stale lock that was taken over (text), if any
        if not create and not os.path.isdir(self.root):
            raise FileNotFoundError(f"experiment folder {self.root} does not exist")
        if create:
            os.makedirs(self.root, exist_ok=True)
            self._acquire_lock()
            for sub in (SNAPSHOTS, BEST, "logs/train", "logs/val", "log_proj_images"):
                os.makedirs(os.path.join(self.root, sub), exist_ok=True)
            self._remove_temporaries()

    # -- lock ----------------------------------------------------------------
    def _acquire_lock(self):
        self._lock = lock.FolderLock(
            self.root,
            "experiment folder",
            "trainer",
            error=ExperimentInUse,
            advice="Wait for it to finish or stop it, or choose another --exp (metrics may read the folder meanwhile)",
        )
        self.took_over = self._lock.took_over

    @property
    def _writing(self):
        """True while this process holds the writer lock (pointer() logs its fallback warnings only then)."""
        return self._lock is not None and self._lock.held

    def release(self):
        """Give up the writer lock (cleared, so the next holder does not see a stale one)."""
        if self._lock is not None:
            self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def __del__(self):
        # A writer dropped without release(): the lock goes with it. Nothing is swallowed: Python
        # reports an error raised in __del__ ("Exception ignored in ...") on stderr.
        if getattr(self, "_lock", None) is not None:
            self.release()

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def log_file(self):
        return self.path("log.txt")

    def log(self, message, echo=None):
        """Append a time-stamped line to log.txt (and pass it to ``echo``, e.g. tqdm.write)."""
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        with open(self.log_file, "a") as f:
            f.write(line + "\n")
        if echo is not None:
            try:
                echo(line)
            except OSError:  # e.g. the terminal is gone (SIGHUP): log.txt has the line
                pass

    def _remove_temporaries(self):
        """Remove what killed runs left half-written: checkpoint folders (``.tmp-step-N-PID``) and the
        temporaries of atomic writes (``.latest.json.PID.tmp``, :mod:`utils.common.atomic_io`; one
        warning line each) in the folder, ``snapshots/`` and ``best/``."""
        for kind in (SNAPSHOTS, BEST):
            folder = self.path(kind)
            for name in os.listdir(folder):
                if name.startswith(".tmp-"):
                    shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
        for folder in (self.root, self.path(SNAPSHOTS), self.path(BEST)):
            atomic_io.remove_leftovers(folder, warn=cli.warn)

    # -- writing -------------------------------------------------------------
    def save(self, saver, sess, step, kind=SNAPSHOTS, keep=2, extra=None):
        """Save a checkpoint atomically; returns its prefix path.

        Ctrl-C, SIGTERM and SIGHUP arriving meanwhile take effect once the
        checkpoint and its pointer are complete (:func:`utils.common.cli.deferred_signals`).

        Args:
            saver: tf.train.Saver. sess: tf.Session.
            step: int, global iteration stored with the checkpoint.
            kind: 'snapshots' (periodic, last ``keep`` kept) or 'best' (only the newest kept).
            extra: dict stored in the pointer file (e.g. the validation value).
        """
        with cli.deferred_signals():
            folder = self.path(kind)
            name = f"step-{int(step):07d}"
            tmp = os.path.join(folder, f".tmp-{name}-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
            saver.save(sess, os.path.join(tmp, CKPT_NAME), write_meta_graph=False, write_state=False)
            final = os.path.join(folder, name)
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(tmp, final)
            atomic_io.write_json(
                os.path.join(folder, POINTER[kind]),
                dict(step=int(step), dir=name, time=time.time(), **(extra or {})),
                fsync=True,
            )
            self._prune(kind, keep if kind == SNAPSHOTS else 1)
        return os.path.join(final, CKPT_NAME)

    def _prune(self, kind, keep):
        folder = self.path(kind)
        steps = sorted(n for n in os.listdir(folder) if n.startswith("step-"))
        current = self.pointer(kind)
        for name in steps[:-keep] if keep > 0 else steps:
            if current is None or name != current["dir"]:
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)

    # -- reading -------------------------------------------------------------
    def is_complete(self, kind, name):
        """True when ``<kind>/<name>`` holds a checkpoint's index and data files."""
        prefix = self.path(kind, name, CKPT_NAME)
        return os.path.isfile(prefix + ".index") and bool(glob.glob(glob.escape(prefix) + ".data-*"))

    def complete_checkpoints(self, kind=SNAPSHOTS):
        """``[(step, dir name)]`` of the complete checkpoints of ``kind``, newest first."""
        folder = self.path(kind)
        if not os.path.isdir(folder):
            return []
        found = []
        for name in os.listdir(folder):
            if name.startswith("step-") and name[5:].isdigit() and self.is_complete(kind, name):
                found.append((int(name[5:]), name))
        return sorted(found, reverse=True)

    def pointer(self, kind=SNAPSHOTS):
        """The pointer dict of ``kind`` (None when no complete checkpoint exists).

        A pointer file that is missing, unreadable (e.g. truncated) or names an
        incomplete checkpoint falls back to the newest complete ``step-N``
        folder, with a warning (the dict then has ``recovered=True``).
        """
        path = self.path(kind, POINTER[kind])
        problem = None
        try:
            with open(path) as f:
                info = json.load(f)
            if not isinstance(info, dict) or not isinstance(info.get("dir"), str) or "step" not in info:
                problem = "does not hold {'step', 'dir'}"
            elif not self.is_complete(kind, info["dir"]):
                problem = f"names {info['dir']}, which is not a complete checkpoint"
            else:
                return info
        except FileNotFoundError:
            problem = "is missing"
        except (OSError, ValueError) as err:
            problem = f"is unreadable ({type(err).__name__}: {err})"
        found = self.complete_checkpoints(kind)
        if not found:
            return None
        step, name = found[0]
        message = f"{path} {problem}; using the newest complete checkpoint, {kind}/{name}"
        if (kind, message) not in self._reported:
            self._reported.add((kind, message))
            if self._writing:
                self.log("warning: " + message)
            warnings.warn(message, stacklevel=2)
        return dict(step=step, dir=name, recovered=True)

    def checkpoint(self, which="latest"):
        """Resolve ``which`` ('latest', 'best' or an iteration number) to (prefix, step).

        Raises FileNotFoundError naming what exists when nothing matches.
        """
        if which in ("latest", SNAPSHOTS):
            info = self.pointer(SNAPSHOTS)
            if info is None:
                raise FileNotFoundError(f"no snapshot in {self.path(SNAPSHOTS)}")
            return self.path(SNAPSHOTS, info["dir"], CKPT_NAME), info["step"]
        if which == BEST:
            info = self.pointer(BEST)
            if info is None:
                raise FileNotFoundError(f"no best model in {self.path(BEST)} (validation has not run yet?)")
            return self.path(BEST, info["dir"], CKPT_NAME), info["step"]
        try:
            step = int(which)
        except ValueError:
            raise ValueError(f"--snapshot must be 'best', 'latest' or an iteration number, got {which!r}") from None
        prefix = self.path(SNAPSHOTS, f"step-{step:07d}", CKPT_NAME)
        if not os.path.isfile(prefix + ".index"):
            have = sorted(int(n[5:]) for n in os.listdir(self.path(SNAPSHOTS)) if n.startswith("step-"))
            raise FileNotFoundError(f"no snapshot for iteration {step} in {self.path(SNAPSHOTS)}; available: {have}")
        return prefix, step

    def restorable(self, which="latest", warn=None):
        """Resolve ``which`` (as :meth:`checkpoint`) to a checkpoint that reads back in full:
        ``(prefix, step)``. Every tensor is read before a graph is built (checksums verified).

        'latest' falls back, as training's resume does, to the newest complete snapshot that
        reads (then to ``best/``), calling ``warn(message)`` with the damaged ones; 'best' and an
        iteration number name a damaged checkpoint in :class:`ExperimentStateError`.
        """
        prefix, step = self.checkpoint(which)
        candidates = [prefix]
        if which in ("latest", SNAPSHOTS):
            for kind in (SNAPSHOTS, BEST):
                paths = [self.path(kind, name, CKPT_NAME) for _, name in self.complete_checkpoints(kind)]
                candidates += [p for p in paths if p not in candidates]
        problems = []
        for candidate in candidates:
            try:
                step = read_checkpoint(candidate)
            except Exception as err:  # truncated / corrupt files: TF raises several kinds
                problems.append(describe_damage(self.root, candidate, err))
                continue
            if problems and warn is not None:
                warn(
                    f"skipped unreadable checkpoint(s) {'; '.join(problems)}; using "
                    f"{os.path.relpath(os.path.dirname(candidate), self.root)} (iteration {step})"
                )
            return candidate, step
        hint = "" if which in ("latest", SNAPSHOTS) else "; try --snapshot latest or another iteration number"
        raise ExperimentStateError(
            f"no readable checkpoint for --snapshot {which} in {self.root}: {'; '.join(problems)}{hint}"
        )
