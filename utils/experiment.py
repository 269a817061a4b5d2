"""Experiment folder: layout, atomic checkpoints, resume.

Layout of ``<exp>/``::

    args.json             the flags of the run (utils.config)
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
complete checkpoint; stale temporaries are removed on the next start.
"""
import json
import os
import shutil
import time

SNAPSHOTS, BEST = "snapshots", "best"
POINTER = {SNAPSHOTS: "latest.json", BEST: "best.json"}
CKPT_NAME = "model"


def _write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Experiment:
    """Paths and checkpoint bookkeeping of one experiment folder."""

    def __init__(self, root, create=True):
        self.root = os.path.abspath(root)
        if not create and not os.path.isdir(self.root):
            raise FileNotFoundError(f"experiment folder {self.root} does not exist")
        if create:
            for sub in (SNAPSHOTS, BEST, "logs/train", "logs/val", "log_proj_images"):
                os.makedirs(os.path.join(self.root, sub), exist_ok=True)
            self._remove_temporaries()

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
            echo(line)

    def _remove_temporaries(self):
        for kind in (SNAPSHOTS, BEST):
            folder = self.path(kind)
            for name in os.listdir(folder):
                if name.startswith(".tmp-"):
                    shutil.rmtree(os.path.join(folder, name), ignore_errors=True)

    # -- writing -------------------------------------------------------------
    def save(self, saver, sess, step, kind=SNAPSHOTS, keep=2, extra=None):
        """Save a checkpoint atomically; returns its prefix path.

        Args:
            saver: tf.train.Saver. sess: tf.Session.
            step: int, global iteration stored with the checkpoint.
            kind: 'snapshots' (periodic, last ``keep`` kept) or 'best' (only the newest kept).
            extra: dict stored in the pointer file (e.g. the validation value).
        """
        folder = self.path(kind)
        name = f"step-{int(step):07d}"
        tmp = os.path.join(folder, f".tmp-{name}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        saver.save(sess, os.path.join(tmp, CKPT_NAME), write_meta_graph=False,
                   write_state=False)
        final = os.path.join(folder, name)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_json_atomic(os.path.join(folder, POINTER[kind]),
                           dict(step=int(step), dir=name, time=time.time(), **(extra or {})))
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
    def pointer(self, kind=SNAPSHOTS):
        """The pointer dict of ``kind`` (None when no complete checkpoint exists)."""
        path = self.path(kind, POINTER[kind])
        try:
            with open(path) as f:
                info = json.load(f)
        except (OSError, json.JSONDecodeError):
            return None
        if not os.path.isfile(self.path(kind, info.get("dir", ""), CKPT_NAME + ".index")):
            return None
        return info

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
