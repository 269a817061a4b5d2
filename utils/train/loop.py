"""The training loop shared by every task (rgb/, partseg/, ...).

``main(task, argv)`` parses the shared flags (utils.train.config), prepares the
experiment folder (utils.experiment), builds the one graph (utils.model) and
trains with Adam, logging to TensorBoard, log.txt and (on a terminal) a progress bar. Every
``save_n`` iterations it validates (the validation Chamfer on the experiment's
validation set, :data:`VAL_SET_FILE`), keeps the best model and writes projection
pictures; every ``save_model_n`` iterations it
writes a snapshot. Re-running the same command resumes from the latest
snapshot: the step counter, the weights, Adam's state and -- because batch k is
a pure function of (seed, k) -- the data order continue where they stopped.

Failure behaviour (docs/failures.md):

* Ctrl-C, SIGTERM and SIGHUP finish the current iteration, write a snapshot at
  exactly that iteration and exit with status 128 + signal number
  (:class:`TrainingInterrupted`); further signals meanwhile are ignored, so the
  save cannot be cut short. Interrupt + resume equals an uninterrupted run.
* The experiment folder is locked (utils.experiment); resuming with flags that
  change what is trained is refused unless ``--override`` (utils.train.config).
* A diverging run stops with "loss became nan at iteration k" before a
  non-finite network output reaches the projection, and never snapshots
  non-finite variables, so ``latest`` stays the last good snapshot.
* Fatal errors: one readable line on stderr and in log.txt, then the traceback.

Test hook: ``DIFFER_TEST_SIGNAL_AT="<iteration>:<SIGNAME>[,...]"`` makes the
trainer send itself that signal right after the training step of that
iteration, so tests can interrupt at a known point.
"""

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
import types

import numpy as np

from utils.common import atomic_io, tfv1, visualize
from utils.common import cli as cli_tools
from utils.common.progress import Progress
from utils.common.tfv1 import tf
from utils.data import BatchPipeline, DataError, check_data_dir
from utils.data.val_set import choose_pairs
from utils.experiment import (
    BEST,
    CKPT_NAME,
    SNAPSHOTS,
    STOP_SIGNALS,
    Experiment,
    ExperimentInUse,
    ExperimentStateError,
    read_checkpoint,
)
from utils.model import NONFINITE_TAG, GraphSettings, build_graph, build_validation_graph
from utils.render import projection
from utils.task import task_ref
from utils.train import config
from utils.train.clouds import CloudSummaries

TEST_SIGNAL_ENV = "DIFFER_TEST_SIGNAL_AT"
# Errors whose message says everything: no traceback in log.txt.
_EXPECTED_ERRORS = (DataError, ExperimentInUse, ExperimentStateError, config.ResumeError, FloatingPointError)


class TrainingInterrupted(SystemExit):
    """Training stopped by a signal after writing a snapshot; exit status 128 + signal number."""

    def __init__(self, signum, step):
        super().__init__(128 + signum)
        self.signum, self.step = signum, step


class _StopRequest:
    """While installed, Ctrl-C / SIGTERM / SIGHUP only record a stop request (``signum``).

    Signals the process ignores (``nohup`` ignores SIGHUP; a non-interactive shell's ``&``
    ignores SIGINT) stay ignored.
    """

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handler(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            msg = f"\n{signal.Signals(signum).name}: finishing this iteration, then saving a snapshot\n"
        else:
            msg = "\nalready stopping: the snapshot is being written, please wait\n"
        try:
            os.write(2, msg.encode())  # a raw write is safe inside a signal handler
        except OSError:
            pass

    def install(self):
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:  # keep nohup's / a script's '&' choice
                    self._previous[sig] = signal.signal(sig, self._handler)

    def restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self._previous = {}


def _test_signals():
    """{iteration: [signal numbers]} from the DIFFER_TEST_SIGNAL_AT test hook."""
    plan = {}
    for item in filter(None, os.environ.get(TEST_SIGNAL_ENV, "").split(",")):
        step, name = item.split(":")
        plan.setdefault(int(step), []).append(int(getattr(signal, name.strip().upper())))
    return plan


def _scalar_summary(values):
    return tf.Summary(value=[tf.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])


_read_checkpoint = read_checkpoint  # (moved to utils.experiment; metrics and predict use it)


def find_resume(exp):
    """Where to resume: ``(checkpoint prefix, iteration)``, or None when the folder holds no training.

    Tries the snapshot named by ``snapshots/latest.json`` (or, when that is
    damaged, the newest complete one), then older snapshots, then ``best/``;
    each must read back in full. Raises ExperimentStateError when the folder
    holds checkpoints but none can be restored: existing work is never started over.
    """
    candidates = []
    info = exp.pointer(SNAPSHOTS)
    if info is not None:
        candidates.append((SNAPSHOTS, info["dir"]))
    for kind in (SNAPSHOTS, BEST):
        candidates += [(kind, name) for _, name in exp.complete_checkpoints(kind) if (kind, name) not in candidates]
    problems = []
    for kind, name in candidates:
        prefix = exp.path(kind, name, CKPT_NAME)
        try:
            step = _read_checkpoint(prefix)
        except Exception as err:  # truncated / corrupt files
            problems.append(f"{kind}/{name}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            continue
        for problem in problems:
            exp.log(f"warning: skipped unreadable checkpoint {problem}")
            cli_tools.warn(f"skipped unreadable checkpoint {problem} (see {exp.log_file})")
        return prefix, step
    leftovers = [
        f"{kind}/{n}" for kind in (SNAPSHOTS, BEST) for n in sorted(os.listdir(exp.path(kind))) if n.startswith("step-")
    ]
    if problems or leftovers:
        raise ExperimentStateError(
            f"{exp.root} holds earlier training ({', '.join(leftovers)}) but no checkpoint can be restored"
            + (f" ({'; '.join(problems)})" if problems else " (none is complete)")
            + ". Nothing was started over it: repair or move those folders away to start afresh, "
            "or choose another --exp"
        )
    return None


def prepare_experiment(args, exp, defaults=None, task=None):
    """Check this command (``args``, resolved by the task) against the experiment folder;
    returns (resume, changes).

    ``resume`` is :func:`find_resume`'s answer; ``changes`` lists the flags that
    differ from args.json (:func:`utils.train.config.changed_flags`). With a
    checkpoint to resume, a changed architecture is refused, and so are other
    changed flags unless ``--override``; without one nothing has been trained
    and the new flags simply replace the old. A run that is already complete
    (nothing left to train) keeps its args.json: ``changes`` is then None. A changed
    projection implementation (:data:`utils.train.config.SWITCHABLE_KEYS`) is allowed and logged.
    ``task``: the Task (default: the one ``args.task`` names).
    """
    resume = find_resume(exp)
    changes = []
    if os.path.isfile(exp.path(config.ARGS_FILE)):
        try:
            saved = config.load_train_args(exp.root)
        except ValueError as err:
            if resume is not None:
                raise ExperimentStateError(
                    f"{err}; it records the flags this experiment was trained with. Repair it (earlier "
                    f"versions: {exp.path(config.HISTORY_FILE)}) or choose another --exp"
                ) from None
            saved = None
        if saved is not None and resume is not None:
            for key in config.SWITCHABLE_KEYS:
                if getattr(saved, key, None) != getattr(args, key, None):
                    exp.log(
                        f"--{key}: {getattr(saved, key, None)!r} in args.json, {getattr(args, key, None)!r} "
                        f"now (allowed: the implementations agree to 1e-5)"
                    )
        if saved is not None and resume is not None and resume[1] >= args.N_ITERS and not args.override:
            config.check_compatible(saved, args, task)
            changes = config.changed_flags(saved, args, defaults)
            if changes:
                exp.log(
                    f"nothing to train (iteration {resume[1]}, --N_ITERS {args.N_ITERS}); args.json is kept, "
                    f"these flags of the command are not used: {config.describe_changes(changes)}"
                )
                return resume, None
        elif saved is not None and resume is not None:
            config.check_compatible(saved, args, task)
            changes = config.check_resume(saved, args, exp.root, args.override, defaults)
        elif saved is not None:
            changes = config.changed_flags(saved, args, defaults)
    elif resume is not None:
        exp.log(f"warning: {exp.path(config.ARGS_FILE)} is missing; resuming with this command's flags")
    return resume, changes


def _record_args(args, exp, resume, changes):
    """Write args.json (and a line of args_history.jsonl) when new or changed; log the change."""
    if changes is None:  # a complete run keeps the flags it was trained with
        return
    path = exp.path(config.ARGS_FILE)
    step = resume[1] if resume else 0
    if changes:
        what = "--override: training continues with" if resume else "no checkpoint yet: args.json takes"
        exp.log(f"{what} changed flags at iteration {step}: {config.describe_changes(changes)}")
    try:
        with open(path) as f:
            same = f.read() == config.args_json(args)
    except OSError:
        same = False
    if not same:
        config.save_args(args, exp.root)
        config.append_history(exp.root, args, step, changes)


# Training pictures (log_proj_images/ and TensorBoard): the first samples of the first validation
# batch, each with its first supervision views.
PICTURE_SAMPLES = 4
PICTURE_VIEWS = 2
POSTFIX_EVERY = 10  # iterations between updates of the progress bar's running losses
# The validation set (utils.data.val_set): recorded once per experiment, evaluated in batches of
# VAL_BATCH_SIZE (the last one padded, the padding ignored) whatever --batch_size is, and kept in
# memory when it has at most VAL_CACHE_SAMPLES samples (image and cloud: about 61 kB per sample).
VAL_SET_FILE = "val_set.json"
VAL_BATCH_SIZE = 32
VAL_CACHE_SAMPLES = 2048
_VAL_KEYS = ("image", "pcl", "valid", "model_id", "input_view")


def validation_set(args, exp, models, n_views):
    """The experiment's validation pairs: read from ``<exp>/val_set.json``, or chosen and written there.

    Chosen (utils.data.val_set.choose_pairs) from ``--val_selection``, ``--val_samples`` and
    ``--seed`` only, so a resumed run and a run with another ``--batch_size`` use the same set.
    The file is rewritten only when those flags (or the category) differ from its record.

    Args:
        args: the training Namespace. exp: the Experiment.
        models: list of the val split's model ids; n_views: list of their view counts.
    Returns:
        (list of (model id, input view), True when an existing record was replaced).
    """
    spec = dict(
        selection=args.val_selection,
        val_samples=int(args.val_samples),
        seed=int(args.seed),
        category=args.category,
        split="val",
    )
    path = exp.path(VAL_SET_FILE)
    saved = None
    if os.path.isfile(path):
        try:
            with open(path) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            saved = {}
        if all(saved.get(k) == v for k, v in spec.items()) and saved.get("pairs"):
            return [(str(m), int(v)) for m, v in saved["pairs"]], False
    pairs = [(models[m], v) for m, v in choose_pairs(n_views, args.val_samples, args.seed, args.val_selection)]
    atomic_io.write_json(
        path,
        dict(
            spec,
            n_models=len(models),
            n_samples=len(pairs),
            n_models_covered=len({m for m, _ in pairs}),
            pairs=[list(p) for p in pairs],
        ),
    )
    return pairs, saved is not None


def build_training_graph(args, task, n_gt_pts):
    """Everything the trainer runs, in the default graph: the model (utils.model.build_graph),
    Adam on its variables, the saver, a finiteness check and the picture summaries.

    Args:
        args: the resolved training Namespace; task: a Task; n_gt_pts: int, points per GT cloud.
    Returns:
        SimpleNamespace: g (build_graph's namespace), global_step, train_op, saver,
        all_finite (bool scalar: every float variable finite), image_summary.
    """
    tf.set_random_seed(args.seed)
    g = build_graph(GraphSettings.from_args(args, task), task, args.batch_size, n_gt_pts=n_gt_pts)
    global_step = tf.train.get_or_create_global_step()
    train_op = tf.train.AdamOptimizer(args.lr, beta1=0.9).minimize(
        g.loss, global_step=global_step, var_list=tf.trainable_variables("recon_net")
    )
    saver = tf.train.Saver(tf.global_variables(), max_to_keep=None)
    all_finite = tf.reduce_all(
        [tf.reduce_all(tf.is_finite(v)) for v in tf.global_variables() if v.dtype.base_dtype.is_floating]
    )
    V = args.N_VIEWS
    with tf.name_scope("images"):
        gt_view = tf.reshape(g.ph[task.view_key], [-1] + g.ph[task.view_key].shape.as_list()[2:])
        pictures = tf.concat(
            [
                tf.image.grayscale_to_rgb(tf.reshape(g.ph["mask"], [-1, args.IMG_H, args.IMG_W, 1])[:V]),
                tf.image.grayscale_to_rgb(g.pred_mask[:V, :, :, None]),
                task.display_gt(gt_view)[:V],
                task.display(g.proj)[:V],
            ],
            axis=2,
        )
        image_summary = tf.summary.merge(
            [
                tf.summary.image("input", g.ph["image"][:1]),
                tf.summary.image("views_gtmask_predmask_gtfeat_predfeat", pictures, max_outputs=V),
            ]
        )
    return types.SimpleNamespace(
        g=g, global_step=global_step, train_op=train_op, saver=saver, all_finite=all_finite, image_summary=image_summary
    )


class _Trainer:
    """One training run in one graph: data pipelines, graph, and the loop (:meth:`run`)."""

    def __init__(self, args, task, exp, resume=None):
        self.args, self.task, self.exp = args, task, exp
        self.resume = resume
        self.start_step = resume[1] if resume else 0
        self.train_data = BatchPipeline.from_args(args, task, "train", start_step=self.start_step)
        # The training graph's view of the validation split: its 2D loss terms and the pictures.
        self.val_data = BatchPipeline.from_args(
            args, task, "val", shuffle=False, view_mode="fixed", all_input_views=False
        )
        n_gt = self.val_data.get_batch(0)["pcl"].shape[1]
        self.n_val = max(1, min(args.val_batches, self.val_data.n_models // args.batch_size))
        # The validation set that chooses the best snapshot (own batches, any --batch_size).
        views = [self.val_data.n_views_of(m) for m in range(self.val_data.n_models)]
        self.val_pairs, val_set_changed = validation_set(args, exp, self.val_data.models, views)
        self.val_set_data = BatchPipeline.from_args(
            args,
            task,
            "val",
            pairs=self.val_pairs,
            batch_size=VAL_BATCH_SIZE,
            n_views=1,
            view_mode="fixed",
            use_input_view=False,
            shuffle=False,
            repeat=False,
        )
        self._val_cache = None
        self.t = build_training_graph(args, task, n_gt)
        self.g = self.t.g
        self.vg = build_validation_graph(GraphSettings.from_args(args, task), task, VAL_BATCH_SIZE, n_gt)
        best = exp.pointer(BEST)
        self.best_value = best["value"] if best and "value" in best else math.inf
        self.val_set_note = ""
        if val_set_changed and resume:
            self.best_value = math.inf  # a value on another set does not compare
            self.val_set_note = (
                f"; the validation set changed ({VAL_SET_FILE} rewritten for the new --val_* flags): "
                "the next validation starts a new best"
            )
        # The predicted clouds of the validation set's first samples, in TensorBoard (utils.train.clouds).
        started = time.time()
        self.clouds = CloudSummaries(task, self.vg, self.val_set_data.get_batch(0))
        self.val_seconds = 0.0
        self.cloud_seconds = time.time() - started  # (reading the samples once; each write adds its time)
        self.step_seconds = 0.0  # time in training steps (next batch + session run), for the speed line

    # ------------------------------------------------------------------ snapshots, errors
    def diverged(self, step, value="nan", why=""):
        last = self.exp.pointer(SNAPSHOTS)
        kept = (
            f"the last good snapshot (iteration {last['step']}) stays 'latest'" if last else "no snapshot was written"
        )
        return FloatingPointError(
            f"loss became {value} at iteration {step}{f' ({why})' if why else ''} — "
            f"lower --lr or check the data; {kept}"
        )

    def save(self, sess, step, **kw):
        """Snapshot (or best model) after checking every variable is finite; FloatingPointError if not."""
        if not sess.run(self.t.all_finite):
            raise self.diverged(step, why="non-finite weights or optimiser state")
        path = self.exp.save(self.t.saver, sess, step, **kw)
        if kw.get("kind", SNAPSHOTS) == SNAPSHOTS:
            self.saved_at = step  # (a stop signal then needs no second snapshot)
        return path

    @contextlib.contextmanager
    def guard(self, step):
        """Turn the graph's non-finite-output check into the divergence error for ``step``."""
        try:
            yield
        except tf.errors.InvalidArgumentError as err:
            if NONFINITE_TAG in err.message:
                raise self.diverged(step, why="non-finite network output: the weights diverged") from None
            raise

    # ------------------------------------------------------------------ validation
    def _val_batches(self):
        """The validation set's batches (VAL_BATCH_SIZE each, the last padded): from memory after the
        first pass when the set is small (VAL_CACHE_SAMPLES), else read again."""
        if self._val_cache is not None:
            return self._val_cache
        data = self.val_set_data
        batches = ({k: b[k] for k in _VAL_KEYS} for b in (data.get_batch(k) for k in range(data.steps_per_epoch)))
        if data.n_samples <= VAL_CACHE_SAMPLES:
            self._val_cache = list(batches)
            return self._val_cache
        return batches  # read batch by batch

    def validation_scores(self, sess):
        """Per-sample validation Chamfer over the validation set: dict chamfer, chamfer_fwd,
        chamfer_bwd -> float64 (n_samples,), in the order of ``val_pairs`` (padding dropped)."""
        out = {k: [] for k in ("chamfer", "chamfer_fwd", "chamfer_bwd")}
        for batch in self._val_batches():
            val = sess.run(self.vg.val, self.vg.feed(batch))
            for key in out:
                out[key].append(np.asarray(val[key], np.float64)[batch["valid"]])
        return {k: np.concatenate(v) for k, v in out.items()}

    def validate(self, sess, step, writer):
        """2D loss terms on ``n_val`` training-graph batches (TensorBoard), pictures, and the validation
        Chamfer on the validation set, which decides the best snapshot."""
        start = time.time()
        keys = sorted(self.g.terms)
        sums = dict.fromkeys(keys, 0.0)
        for k in range(self.n_val):
            batch = self.val_data.get_batch(k)
            terms = sess.run(self.g.terms, self.g.feed(batch))
            for key in keys:
                sums[key] += terms[key] / self.n_val
            if k == 0:
                self._save_pictures(sess, batch, step, writer)
        t_set = time.time()
        scores = self.validation_scores(sess)
        seconds_set = time.time() - t_set
        seconds_clouds = self.clouds.write(sess, writer, step)
        self.cloud_seconds += seconds_clouds
        n = len(scores["chamfer"])
        for key, values in scores.items():
            sums[key] = float(np.mean(values))
        sums["chamfer_se"] = float(np.std(scores["chamfer"], ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        writer.add_summary(_scalar_summary({f"val/{k}": v for k, v in sums.items()}), step)
        msg = (
            f"val @ {step}: chamfer {sums['chamfer']:.4f} ± {sums['chamfer_se']:.4f} (s.e., {n} samples; "
            f"fwd {sums['chamfer_fwd']:.4f}, bwd {sums['chamfer_bwd']:.4f})"
        )
        previous, self._previous_scores = getattr(self, "_previous_scores", None), scores["chamfer"]
        if previous is not None and len(previous) == n > 1:  # paired: the same samples, so their spread cancels
            change = scores["chamfer"] - previous
            se = np.std(change, ddof=1) / math.sqrt(n)
            msg += f"; change since the last validation {np.mean(change):+.4f} ± {se:.4f}"
        if sums["chamfer"] < self.best_value:  # False for NaN
            self.best_value = sums["chamfer"]
            self.save(sess, step, kind=BEST, extra={"value": self.best_value})
            msg += "  [new best, saved]"
        seconds = time.time() - start
        self.val_seconds += seconds
        self.log(
            msg + f"  ({seconds:.2f} s, of which the validation set {seconds_set:.2f} s, "
            f"the clouds for TensorBoard {seconds_clouds:.2f} s)"
        )

    def _save_pictures(self, sess, batch, step, writer):
        g, task, V = self.g, self.task, self.args.N_VIEWS
        pred_mask, proj, summ = sess.run([g.pred_mask, g.proj, self.t.image_summary], g.feed(batch))
        writer.add_summary(summ, step)
        folder = self.exp.path("log_proj_images", f"{step:07d}")
        for b in range(min(PICTURE_SAMPLES, self.args.batch_size)):
            row = [batch["image"][b]]
            for v in range(min(V, PICTURE_VIEWS)):
                row += [
                    batch["mask"][b, v],
                    pred_mask[b * V + v],
                    task.display_np(batch[task.view_key][b, v], gt=True),
                    task.display_np(proj[b * V + v], gt=False),
                ]
            name = str(batch["model_id"][b]).replace("/", "_")
            visualize.save_image_row(os.path.join(folder, f"{b}_{name}.png"), row)

    # ------------------------------------------------------------------ the loop
    def log(self, message):
        """A line in log.txt and on stdout (above the progress bar when there is one)."""
        self.exp.log(message, self.progress.write)

    def run(self):
        """Train from the start (or resumed) iteration to ``N_ITERS``; returns the last iteration.

        Steps: :meth:`_initialise` (variables, or the resumed snapshot), :meth:`_open_outputs`
        (TensorBoard writers, progress), then :meth:`_iterate` until ``N_ITERS`` or a stop
        signal, after which :meth:`_stop` saves and raises :class:`TrainingInterrupted`.
        """
        stop = _StopRequest()
        self.run_start = time.time()
        with tf.Session(config=tfv1.session_config()) as sess:
            step = self._initialise(sess)
            self._open_outputs(sess, step)
            try:
                stop.install()
                self._log_start(step)
                while step < self.args.N_ITERS and stop.signum is None:
                    step = self._iterate(sess, step)
                if stop.signum is not None and step < self.args.N_ITERS:
                    self._stop(sess, step, stop.signum)
            finally:
                stop.restore()
                self._close_outputs()
            spent = time.time() - self.run_start
            share = 100 * self.val_seconds / max(spent, 1e-9)
            trained = step - self.start_step
            speed = (
                f"; training speed {trained / self.step_seconds:.1f} it/s on average over this run's {trained} "
                f"iterations (waiting for the batch and the step; validation and snapshots excluded)"
                if trained and self.step_seconds > 0
                else ""
            )
            clouds = 100 * self.cloud_seconds / max(spent, 1e-9)
            self.log(
                f"finished: {step} iterations; best validation Chamfer {self.best_value:.4f}; validation "
                f"took {self.val_seconds:.1f} s of this run's {spent:.1f} s ({share:.1f} %), of which the clouds "
                f"for TensorBoard {self.cloud_seconds:.2f} s ({clouds:.2f} %){speed}"
            )
        return step

    def _initialise(self, sess):
        """Fresh variables, or those of the snapshot to resume; returns the iteration reached."""
        sess.run(tf.global_variables_initializer())
        self.saved_at = 0
        if not self.resume:
            return 0
        self.t.saver.restore(sess, self.resume[0])
        step = int(sess.run(self.t.global_step))
        assert step == self.start_step, (step, self.start_step)
        self.saved_at = step
        return step

    def _open_outputs(self, sess, step):
        args = self.args
        self.train_writer = tf.summary.FileWriter(self.exp.path("logs", "train"), sess.graph if step == 0 else None)
        self.val_writer = tf.summary.FileWriter(self.exp.path("logs", "val"))
        # The bar only on a terminal; in a file the periodic "iter" lines (--print_n) are the progress.
        self.progress = Progress(
            args.N_ITERS,
            f"train {self.task.name}",
            unit="it",
            enabled=not args.no_progress,
            lines=None,
            initial=step,
            dynamic_ncols=True,
        )
        self.running, self.count, self.since = {}, 0, time.time()
        self._test_signals = _test_signals()

    def _close_outputs(self):
        self.progress.close()
        self.train_writer.close()
        self.val_writer.close()
        self.train_data.close()
        self.val_data.close()
        self.val_set_data.close()

    def _log_start(self, step):
        args = self.args
        where = f" from {os.path.relpath(self.resume[0], self.exp.root)}" if self.resume else ""
        per_epoch = (
            f" ({self.train_data.n_samples} samples: every input view)"
            if self.train_data.n_samples != self.train_data.n_models
            else ""
        )
        self.log(
            ("resumed at" if step else "started at") + f" iteration {step}{where} ({args.preset} preset, "
            f"flags in args.json); {self.train_data.n_models} training models{per_epoch}, "
            f"{self.n_val} validation batches (2D loss terms); validation set: {len(self.val_pairs)} "
            f"(model, view) pairs of {self.val_data.n_models} models ({args.val_selection}, {VAL_SET_FILE})"
            f"{self.val_set_note}; projection: {args.projection}"
        )
        if self.clouds.note:
            self.log(f"warning: {self.clouds.note}")

    def _iterate(self, sess, step):
        """One training step, then what is due at its iteration (log line, validation, snapshot)."""
        started = time.perf_counter()
        terms = self._train_step(sess, step + 1)
        self.step_seconds += time.perf_counter() - started
        step += 1
        for signum in self._test_signals.get(step, ()):
            os.kill(os.getpid(), signum)
        self._accumulate(step, terms)
        args = self.args
        if step % args.print_n == 0 or step == args.N_ITERS:
            self._log_losses(step)
        if step % args.save_n == 0 or step == args.N_ITERS:
            with self.guard(step):
                self.validate(sess, step, self.val_writer)
        if step % args.save_model_n == 0 or step == args.N_ITERS:
            self.save(sess, step)
        return step

    def _train_step(self, sess, step):
        """Run the training op on the next batch for iteration ``step``; the loss terms (divergence checked)."""
        batch = next(self.train_data)
        with self.guard(step):
            _, terms = sess.run([self.t.train_op, self.g.terms], self.g.feed(batch))
        if not np.isfinite(terms["total"]):
            raise self.diverged(step, terms["total"], ", ".join(f"{k} {v:.4g}" for k, v in terms.items()))
        return terms

    def _accumulate(self, step, terms):
        for k, v in terms.items():
            self.running[k] = self.running.get(k, 0.0) + float(v)
        self.count += 1
        self.progress.update(1)
        if step % POSTFIX_EVERY == 0 or step == self.args.N_ITERS:
            mean = {k: v / self.count for k, v in self.running.items()}
            self.progress.set_postfix(loss=f"{mean['total']:.4f}", bce=f"{mean['bce']:.3f}", feat=f"{mean['feat']:.4f}")

    def _log_losses(self, step):
        """The mean loss terms since the last line: TensorBoard and a log line."""
        means = {k: v / self.count for k, v in self.running.items()}
        self.train_writer.add_summary(_scalar_summary({f"train/{k}": v for k, v in means.items()}), step)
        rate = self.count / max(time.time() - self.since, 1e-9)
        self.log(
            f"iter {step}: " + "  ".join(f"{k} {v:.5f}" for k, v in sorted(means.items())) + f"  ({rate:.1f} it/s)"
        )
        self.running, self.count, self.since = {}, 0, time.time()

    def _stop(self, sess, step, signum):
        """After a stop signal: snapshot at ``step`` (unless just written), log, raise TrainingInterrupted."""
        if self.saved_at != step:
            self.save(sess, step)
        saved = f"snapshot saved at iteration {step}" if step else "nothing trained yet"
        self.log(f"stopped by {signal.Signals(signum).name}: {saved}; re-run the same command to resume")
        raise TrainingInterrupted(signum, step)


def _report_fatal(err, exp, task):
    """One readable line on stderr and in log.txt (plus the traceback there for unexpected errors)."""
    disk = atomic_io.disk_problem(err)  # full, read-only, permission: one line saying what to do
    expected = isinstance(err, _EXPECTED_ERRORS) or disk is not None
    text = disk or str(err).strip()
    line = f"train_{task.name}: error: {text.splitlines()[0] if text else type(err).__name__}"
    if not expected:
        line += f" ({type(err).__name__})"
        if exp is not None:
            line += f"; the traceback is in {exp.log_file}"
    print(line, file=sys.stderr, flush=True)
    if exp is not None:
        try:  # log.txt may sit on the disk that is full
            exp.log(line)
            if not expected:
                with open(exp.log_file, "a") as f:
                    f.write("".join(traceback.format_exception(err)))
        except OSError:
            pass
    if expected or exp is not None:
        err.reported = True  # (utils.common.cli prints nothing more)


def main(task, argv=None):
    """Entry point of train_<task>.py: parse, check data and experiment folder, train.

    Returns the final iteration; raises :class:`TrainingInterrupted` (a
    SystemExit) after a signal stopped the run, and the original exception (after
    a readable line on stderr and in log.txt) on any error.
    """
    args = config.parse_train_args(task, argv)
    args.data_dir = os.path.abspath(os.path.expanduser(args.data_dir))
    args.task_module = task_ref(task)["task_module"]  # args.json names the module to find the task again
    tfv1.use_graph_mode()  # the process-wide switch, here in the entry point, not at import
    tfv1.select_gpu(args.gpu)
    tfv1.set_verbose(args.verbose)
    exp = None
    try:
        # args.json records the implementation used ('auto' resolved: fused, or local without the library)
        args.projection = projection.resolve_impl(args.projection)
        check_data_dir(args.data_dir, task.data_tree)  # before any experiment folder is created
        exp = Experiment(args.exp)  # takes the lock
        if exp.took_over:
            exp.log(f"took over the lock left by {exp.took_over}, which is no longer running")
        args = task.resolve_args(args)
        resume, changes = prepare_experiment(args, exp, config.train_defaults(task, args.preset), task)
        graph = tf.Graph()
        with graph.as_default():
            trainer = _Trainer(args, task, exp, resume)  # builds the data pipelines: data checks
            _record_args(args, exp, resume, changes)
            return trainer.run()
    except Exception as err:
        _report_fatal(err, exp, task)
        raise
    finally:
        if exp is not None:
            exp.release()


def cli_main(task, argv=None):
    """Command-line entry (utils.common.cli): like :func:`main`, but an expected error (bad data, a locked or
    damaged experiment, refused flags, divergence) exits with status 1 after its one-line message,
    an unexpected one after a line pointing to its traceback, a signal with 128 + its number."""
    sys.exit(cli_tools.run(f"train_{task.name}", lambda a: main(task, a) and 0, argv, expected=_EXPECTED_ERRORS))
