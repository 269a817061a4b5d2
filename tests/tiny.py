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


def make_data(out, seed=3, *extra):
    """Make a tiny demo data set in ``out``: chairs, 8 train / 1 val / 1 test models, 4 views each, one
    worker, then ``extra`` (e.g. ``--colours two-sided``); returns ``out`` (a str)."""
    from utils.datagen import demo_data

    argv = ["--out", str(out), "--categories", "chair", "--n_models", "10", "--n_views", "4", "--seed", str(seed)]
    assert demo_data.main([*argv, "--workers", "1", *extra]) == 0
    return str(out)
