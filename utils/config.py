"""The one argument definition shared by training, metrics and the run scripts.

Flag names follow the original DIFFER code where it had them (``--N_VIEWS``,
``--SIGMA_SQ_MASK``, ``--wt_bce`` ...). Training writes the parsed values to
``<exp>/args.json``; metrics read that file back (:func:`load_train_args`), so
the network they rebuild cannot disagree with the one that was trained.

Task-specific flags are registered by the task (``rgb`` adds ``--wt_rgb`` and
``--skipconn``, ``partseg`` adds ``--wt_partseg`` and ``--n_cls``) through
:func:`train_parser`'s ``task`` argument; everything else is common.
"""
import argparse
import json
import os

TASKS = ("rgb", "partseg")
ARGS_FILE = "args.json"

# Flags that fix the graph: a resumed run or the metrics must agree on them.
ARCHITECTURE_KEYS = ("task", "N_PTS", "IMG_H", "IMG_W", "bottleneck", "skipconn", "n_cls")


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative_float(text):
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return value


def default_data_dir():
    """``<repo>/data``, resolved from this file (not from the working directory)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


def train_parser(task):
    """argparse parser for ``<task>/train_<task>.py``; ``task`` is 'rgb' or 'partseg'."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    p = argparse.ArgumentParser(
        prog=f"train_{task}.py",
        description=f"Train DIFFER ({task}) from 2D supervision. Re-running the same command "
                    "resumes from the latest snapshot in --exp.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("experiment")
    g.add_argument("--exp", required=True, help="experiment folder (created if absent; resumed if present)")
    g.add_argument("--gpu", default=None, help="GPU index to use (sets CUDA_VISIBLE_DEVICES); default: all visible")
    g.add_argument("--seed", type=int, default=1024, help="seed for weights, data order and view choice")
    g.add_argument("--data_dir", default=default_data_dir(), help="root of the data layout (see data/README.md)")
    g.add_argument("--category", default="chair", help="category name (chair, car, airplane, ...) or synset id")

    g = p.add_argument_group("data and views")
    g.add_argument("--N_VIEWS", type=_positive_int, default=4, help="supervision views per sample")
    g.add_argument("--views", choices=("random", "fixed"), default="random",
                   help="supervision views drawn at random per sample, or the first N_VIEWS")
    g.add_argument("--CORR", action="store_true", help="include the input image's own view among the supervision views")
    g.add_argument("--IMG_H", type=_positive_int, default=64, help="image height (px), input and projections")
    g.add_argument("--IMG_W", type=_positive_int, default=64, help="image width (px)")
    g.add_argument("--N_PTS", type=_positive_int, default=1024, help="points in the predicted cloud")
    g.add_argument("--num_workers", type=_positive_int, default=2, help="data-loading threads")

    g = p.add_argument_group("projection")
    g.add_argument("--projection", choices=("auto", "fused", "local", "dense"), default="auto",
                   help="'fused' (compiled tf_ops kernels, fastest), 'local' (windowed graph ops, the readable "
                        "reference), 'dense' (the original's formulation); 'auto' = fused when the compiled "
                        "library loads, else local (args.json keeps 'auto'; the log names the one used)")
    g.add_argument("--SIGMA_SQ_MASK", type=float, default=0.4, help="variance (px^2) of the mask-projection Gaussian")
    g.add_argument("--WELL_RADIUS", type=float, default=1.0, help="half-width (px) of the depth well")
    g.add_argument("--BETA", type=float, default=100.0, help="softmax sharpness over 1/(depth+1)")

    g = p.add_argument_group("loss weights")
    g.add_argument("--wt_bce", type=_non_negative_float, default=1.0, help="mask binary cross-entropy")
    g.add_argument("--wt_aff_fwd", type=_non_negative_float, default=1.0, help="forward affinity (scaled by 1e-4 as in the original)")
    g.add_argument("--wt_aff_bwd", type=_non_negative_float, default=1.0, help="backward affinity (scaled by 1e-4 as in the original)")
    g.add_argument("--wt_aff_pts", type=_non_negative_float, default=0.0,
                   help="point-wise affinity (not in the original): pulls every projected point, "
                        "also off-image ones, towards the GT silhouette; 0 = off")
    if task == "rgb":
        g.add_argument("--wt_rgb", type=_non_negative_float, default=1.0, help="L2 loss on projected colours")
    else:
        g.add_argument("--wt_partseg", type=_non_negative_float, default=1.0, help="cross-entropy on projected part labels")
    g.add_argument("--USE_3D_LOSS", action="store_true",
                   help="add the 3D-supervised baseline loss (Chamfer + feature error through nearest neighbours)")
    g.add_argument("--wt_3d", type=_non_negative_float, default=1.0, help="weight of the 3D loss (with --USE_3D_LOSS)")
    g.add_argument("--wt_decay", type=_non_negative_float, default=1.0,
                   help="multiplier on the weight decay (the original's 1e-5 on convolutions, 1e-3 on "
                        "fully connected layers); 0 = off, which is how the original effectively trained")

    g = p.add_argument_group("network")
    g.add_argument("--bottleneck", type=_positive_int, default=128, help="latent size of the encoder")
    if task == "rgb":
        g.add_argument("--skipconn", action="store_true",
                       help="feed the structure branch's hidden features to the colour branch")
    else:
        g.add_argument("--n_cls", type=int, default=0,
                       help="number of part classes; 0 = read from the data set for --category")

    g = p.add_argument_group("optimisation and logging")
    g.add_argument("--batch_size", type=_positive_int, default=8)
    g.add_argument("--lr", type=float, default=5e-5, help="Adam learning rate")
    g.add_argument("--N_ITERS", type=_positive_int, default=200000, help="total training iterations")
    g.add_argument("--print_n", type=_positive_int, default=100, help="log training losses every print_n iterations")
    g.add_argument("--save_n", type=_positive_int, default=1000,
                   help="every save_n iterations: validation, best model, projection images")
    g.add_argument("--save_model_n", type=_positive_int, default=5000, help="snapshot every save_model_n iterations")
    g.add_argument("--val_batches", type=_positive_int, default=10, help="validation batches per evaluation")
    g.add_argument("--no_progress", action="store_true", help="no progress bar (plain log lines only)")
    p.set_defaults(task=task)
    return p


def metrics_parser(task):
    """argparse parser for ``<task>/metrics_<task>.py`` (architecture comes from args.json)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    p = argparse.ArgumentParser(
        prog=f"metrics_{task}.py",
        description=f"Evaluate a trained DIFFER ({task}) experiment: Chamfer, EMD and "
                    + ("colour error" if task == "rgb" else "part mIoU")
                    + " against a baseline that ignores the image.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--exp", required=True, help="experiment folder written by training (holds args.json)")
    p.add_argument("--snapshot", default="best", help="'best', 'latest' or an iteration number")
    p.add_argument("--eval_set", choices=("train", "val", "test"), default="test")
    p.add_argument("--data_dir", default=None, help="override the data root stored in args.json")
    p.add_argument("--gpu", default=None, help="GPU index to use (sets CUDA_VISIBLE_DEVICES)")
    p.add_argument("--batch_size", type=_positive_int, default=16)
    p.add_argument("--max_samples", type=int, default=0, help="evaluate at most this many samples (0 = all)")
    p.add_argument("--baseline_models", type=_positive_int, default=200,
                   help="training clouds used to find the baseline's medoid")
    p.add_argument("--out", default=None, help="output folder (default: <exp>/metrics_<eval_set>_<snapshot>)")
    if task == "partseg":
        p.add_argument("--freq_wt", action="store_true", help="also report frequency-weighted IoU")
    g = p.add_argument_group("pictures")
    g.add_argument("--visualize", action="store_true",
                   help="interactive window per sample (needs a display); n / right arrow: next, q: quit")
    g.add_argument("--save_screenshots", action="store_true", help="PNG grids (input, GT, prediction from several angles)")
    g.add_argument("--save_gifs", action="store_true", help="turntable GIFs of GT and prediction")
    g.add_argument("--save_ply", action="store_true", help="predicted clouds as coloured PLY files")
    g.add_argument("--n_pictures", type=int, default=8, help="samples to draw with --save_screenshots/--save_gifs (0 = all)")
    g.add_argument("--tqdm", action="store_true", help="progress bar")
    p.set_defaults(task=task)
    return p


def save_args(args, exp_dir):
    """Write ``args`` (a Namespace) to ``<exp_dir>/args.json`` atomically."""
    path = os.path.join(exp_dir, ARGS_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(vars(args), f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path


def load_train_args(exp_dir):
    """Read ``<exp_dir>/args.json`` back into an ``argparse.Namespace``."""
    path = os.path.join(exp_dir, ARGS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: --exp must be an experiment folder written by training")
    try:
        with open(path) as f:
            values = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from e
    return argparse.Namespace(**values)


def check_compatible(saved, current):
    """Raise ValueError if two arg sets disagree on a key that fixes the graph."""
    diffs = [f"{k}: saved {getattr(saved, k, None)!r}, now {getattr(current, k, None)!r}"
             for k in ARCHITECTURE_KEYS if getattr(saved, k, None) != getattr(current, k, None)]
    if diffs:
        raise ValueError("the experiment folder was created with a different architecture ("
                         + "; ".join(diffs) + "); use a new --exp or the saved flags")


def flags_in_script(path):
    """The ``--flags`` a run script passes (for tests that parse scripts against the parser)."""
    import re
    import shlex
    with open(path) as f:
        text = f.read().replace("\\\n", " ")
    flags = []
    for line in text.splitlines():
        if ".py" not in line or line.lstrip().startswith("#"):
            continue
        tokens = shlex.split(line, comments=True)
        start = next(i for i, t in enumerate(tokens) if t.endswith(".py")) + 1
        flags.append([t for t in tokens[start:] if not re.fullmatch(r'"?\$[@*]"?', t)])
    return flags
