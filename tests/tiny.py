"""The tiny training configuration every test that trains starts from (one argument list, not one per
test file): a few iterations on small batches, few points, no progress bar, snapshots only when
asked. A test adds the flags it is about after it (argparse keeps the last value of a flag)."""

import importlib

TINY_TRAIN = (
    "--category",
    "chair",
    "--N_VIEWS",
    "2",
    "--batch_size",
    "2",
    "--N_PTS",
    "256",
    "--bottleneck",
    "16",
    "--save_n",
    "100",
    "--save_model_n",
    "100",
    "--val_batches",
    "1",
    "--num_workers",
    "1",
    "--no_progress",
)


def train_argv(exp, data_dir, iters, *extra):
    """The training argv of a tiny run: ``--exp``, ``--data_dir``, ``--N_ITERS`` and :data:`TINY_TRAIN`,
    then ``extra``."""
    return ["--exp", str(exp), "--data_dir", str(data_dir), "--N_ITERS", str(iters), *TINY_TRAIN, *extra]


def train(task, data_dir, exp, iters=2, extra=()):
    """Train a tiny experiment of ``task`` (a task name: its ``<task>.train_<task>`` entry point; or a
    Task object: utils.train.loop.main) for ``iters`` iterations; returns ``exp`` (a str)."""
    argv = train_argv(exp, data_dir, iters, *extra)
    if isinstance(task, str):
        done = importlib.import_module(f"{task}.train_{task}").main(argv)
    else:
        from utils.train import loop

        done = loop.main(task, argv)
    assert done == iters
    return str(exp)
