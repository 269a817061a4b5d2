"""The one argument definition shared by training, metrics and the run scripts.

Flag names follow the original DIFFER code where it had them (``--N_VIEWS``,
``--SIGMA_SQ_MASK``, ``--wt_bce`` ...). Training writes the parsed values to
``<exp>/args.json``; metrics read that file back (:func:`load_train_args`), so
the network they rebuild cannot disagree with the one that was trained.

Task-specific flags are registered by the task (:meth:`utils.task.Task.add_train_flags`,
with their preset values in ``Task.presets``) through :func:`train_parser`'s ``task``
argument; everything else is common. Every function here that takes a ``task`` accepts a
:class:`utils.task.Task` or a task's name (found with :func:`utils.task.as_task`).

Presets. The parser's defaults are the settings we recommend (:data:`RECOMMENDED`,
validated on the demo data). ``--preset original`` replaces those defaults by the
original code's *effective* training settings (:data:`ORIGINAL`: what its
``run_train_rgb.sh`` and ``train_rgb.py`` actually did, which is not always what
its flags said); flags given explicitly on the command line still win. Use
:func:`parse_train_args` rather than ``train_parser(...).parse_args`` so the
preset is applied.
"""

import argparse
import json
import os
import time

from utils.common import atomic_io
from utils.common.cli import non_negative_float, non_negative_int, positive_float, positive_int
from utils.task import as_task, task_from_ref

ARGS_FILE = "args.json"
PRESET_NAMES = ("recommended", "original")
HISTORY_FILE = "args_history.jsonl"

# Flags that fix the graph: a resumed run or the metrics must agree on them (plus the task's
# Task.architecture_flags).
ARCHITECTURE_KEYS = ("task", "N_PTS", "IMG_H", "IMG_W", "bottleneck", "input_scale")

# The recommended settings: the parser's defaults (the demo's configuration).
RECOMMENDED = dict(
    N_VIEWS=4,
    views="random",
    input_views="random",
    CORR=False,
    SIGMA_SQ_MASK=0.4,
    WELL_RADIUS=1.0,
    BETA=100.0,
    wt_bce=1.0,
    wt_aff_fwd=1.0,
    wt_aff_bwd=1.0,
    affinity="paper",
    affinity_view_weight="equal",
    wt_aff_pts=1.0,
    wt_decay=0.1,
    input_scale="unit",
    init="he",
    batch_size=8,
    lr=3e-4,
    N_ITERS=8000,
    print_n=250,
    save_n=500,
    save_model_n=500,
    val_clip_box=0.0,
    val_selection="balanced",
    val_samples=500,
    val_chamfer="distance",
)

# The original code's effective training (klnavaneet/differ, rgb/run_train_rgb.sh + src/train_utils.py
# + rgb/train_rgb.py); docs/deviations.md explains each value. The task's own flags (the original's
# --wt_rgb 1. --skipconn) are in its Task.presets.
ORIGINAL = dict(
    N_VIEWS=4,  # run_train_rgb.sh
    views="fixed",  # --views is never read: supervision views are always 0..N_VIEWS-1
    input_views="all",  # every (model, input view) pair once per epoch, shuffled
    CORR=False,
    SIGMA_SQ_MASK=0.4,
    WELL_RADIUS=1.0,
    BETA=100.0,  # run script; parser defaults of well/beta
    wt_bce=1.0,
    wt_aff_fwd=1.0,
    wt_aff_bwd=1.0,  # run script
    affinity="original",  # the affinity code as it behaves (mis-tiled masks), see utils/losses.py
    affinity_view_weight="original",  # its `dist_mat += 1.` on one shared array: view k's affinity x (k + 1)
    wt_aff_pts=0.0,  # not in the original
    wt_decay=0.0,  # weight decay declared in the layers, never added to the loss
    input_scale="255",  # images fed as raw 0..255 values
    init="tflearn",  # tflearn's default initialisers
    batch_size=1,
    lr=5e-5,  # parser defaults, not overridden by the run script
    N_ITERS=200000,
    print_n=100,
    save_n=1000,
    save_model_n=5000,  # run script
    val_clip_box=0.4,  # training-time validation: box measured on predictions clipped to +-0.4
    val_selection="every_10th",
    val_samples=0,  # every 10th (model, view) pair of the shuffled val list
    val_chamfer="squared",  # its validation Chamfer: mean squared nearest-neighbour distances
)
PRESETS = {"recommended": RECOMMENDED, "original": ORIGINAL}

# Flags that do not change what is trained: a resumed run may change them freely (a larger
# N_ITERS extends the run). Every other flag must match args.json unless --override is given.
RUNTIME_KEYS = (
    "exp",
    "gpu",
    "num_workers",
    "print_n",
    "save_n",
    "save_model_n",
    "val_batches",
    "no_progress",
    "verbose",
    "N_ITERS",
    "override",
    "view_cache",
    "cache_dir",
    "task_module",
)
# Flags a resumed run may change, with a line in the log: the projection implementations compute
# the same maps (fused, local and dense agree to 1e-5: tests/test_projection.py, test_training.py),
# so a run started with the compiled op may go on where it is missing, and back.
SWITCHABLE_KEYS = ("projection",)
VERBOSE_HELP = "also show TensorFlow's start-up and info messages (hidden by default)"


class ResumeError(ValueError):
    """A resumed run was given flags that change what is trained (without --override)."""


def default_data_dir():
    """``<repo>/data``, resolved from this file (not from the working directory)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "data")


def _presets(task):
    """{preset: values} of the shared flags and ``task``'s own (Task.presets)."""
    return {name: {**values, **task.presets.get(name, {})} for name, values in PRESETS.items()}


def _preset_note(dest, presets):
    """' [original: X]' for a flag whose original value differs from the recommended one."""
    original, recommended = presets["original"], presets["recommended"]
    if dest in original and original[dest] != recommended.get(dest):
        return f" [--preset original: {original[dest]}]"
    return ""


def train_parser(task):
    """argparse parser for ``<task>/train_<task>.py``; ``task``: a Task (or its name).

    Its defaults are :data:`RECOMMENDED` (and the task's ``presets['recommended']``);
    :func:`parse_train_args` applies ``--preset``.
    """
    task = as_task(task)
    presets = _presets(task)
    p = argparse.ArgumentParser(
        prog=f"train_{task.name}.py",
        description=f"Train DIFFER ({task.name}) from 2D supervision. Re-running the same command "
        "resumes from the latest snapshot in --exp. Defaults are the recommended settings; "
        "'--preset original' switches to the original code's effective settings (shown in "
        "[brackets] where they differ); explicit flags override either.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("experiment")
    g.add_argument("--exp", required=True, help="experiment folder (created if absent; resumed if present)")
    g.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default="recommended",
        help="default values of the flags below: 'recommended' (ours, validated on the demo data) "
        "or 'original' (the original code's effective training; docs/deviations.md)",
    )
    g.add_argument("--gpu", default=None, help="GPU index to use (sets CUDA_VISIBLE_DEVICES); default: all visible")
    g.add_argument("--seed", type=non_negative_int, default=1024, help="seed for weights, data order and view choice")
    g.add_argument("--data_dir", default=default_data_dir(), help="root of the data layout (see data/README.md)")
    g.add_argument("--category", default="chair", help="category name (chair, car, airplane, ...) or synset id")

    g = p.add_argument_group("data and views")
    g.add_argument("--N_VIEWS", type=positive_int, help="supervision views per sample")
    g.add_argument(
        "--views",
        choices=("random", "fixed"),
        help="supervision views drawn at random per sample, or always views 0..N_VIEWS-1",
    )
    g.add_argument(
        "--input_views",
        choices=("random", "all"),
        help="an epoch visits every model once with a random input view ('random'), or every "
        "(model, input view) pair once ('all')",
    )
    g.add_argument(
        "--CORR",
        action=argparse.BooleanOptionalAction,
        help="include the input image's own view among the supervision views",
    )
    g.add_argument("--IMG_H", type=positive_int, default=64, help="image height (px), input and projections")
    g.add_argument("--IMG_W", type=positive_int, default=64, help="image width (px)")
    g.add_argument("--N_PTS", type=positive_int, default=1024, help="points in the predicted cloud")
    g.add_argument("--num_workers", type=positive_int, default=2, help="data-loading threads")
    g.add_argument(
        "--view_cache",
        choices=("off", "auto"),
        default="auto",
        help="'auto': read the decoded views from a packed, memory-mapped cache (built on first use, "
        "rebuilt when the data files change; the same batches bit for bit, for a fraction of the "
        "CPU; utils/data/cache.py; the PNG files are read when the cache folder cannot be "
        "written); 'off': decode the PNG files every batch",
    )
    g.add_argument("--cache_dir", default=None, help="folder of the view caches (default: <data_dir>/.cache)")

    g = p.add_argument_group("projection")
    g.add_argument(
        "--projection",
        choices=("auto", "fused", "local", "dense"),
        default="auto",
        help="'fused' (compiled tf_ops kernels, fastest), 'local' (windowed graph ops, the readable "
        "reference), 'dense' (the original's formulation); 'auto' = fused when the compiled "
        "library loads, else local (args.json records the one used, so metrics and resuming run it too)",
    )
    g.add_argument("--SIGMA_SQ_MASK", type=positive_float, help="variance (px^2) of the mask-projection Gaussian")
    g.add_argument("--WELL_RADIUS", type=positive_float, help="half-width (px) of the depth well")
    g.add_argument("--BETA", type=non_negative_float, help="softmax sharpness over 1/(depth+1)")

    g = p.add_argument_group("loss weights")
    g.add_argument("--wt_bce", type=non_negative_float, help="mask binary cross-entropy")
    g.add_argument("--wt_aff_fwd", type=non_negative_float, help="forward affinity (scaled by 1e-4 as in the original)")
    g.add_argument(
        "--wt_aff_bwd", type=non_negative_float, help="backward affinity (scaled by 1e-4 as in the original)"
    )
    g.add_argument(
        "--affinity",
        choices=("paper", "original"),
        help="affinity terms: 'paper' (squared px distance to the other silhouette / nearest "
        "point) or 'original' (what the original code computed: mask values weighted 1 "
        "inside and 1e6 outside the other mask); see utils/losses.py",
    )
    g.add_argument(
        "--affinity_view_weight",
        choices=("equal", "original"),
        help="weight of supervision view k (0-based) in the affinity terms: 'equal' (1 for every "
        "view) or 'original' (k + 1: what the original's `dist_mat += 1.` on one array shared "
        "by all views did; docs/deviations.md)",
    )
    g.add_argument(
        "--wt_aff_pts",
        type=non_negative_float,
        help="point-wise affinity (not in the original): pulls every projected point, "
        "also off-image ones, towards the GT silhouette; 0 = off",
    )
    groups = {"loss weights": g}
    g.add_argument(
        "--USE_3D_LOSS",
        action="store_true",
        help="add the 3D-supervised baseline loss (Chamfer + feature error through nearest neighbours)",
    )
    g.add_argument("--wt_3d", type=non_negative_float, default=1.0, help="weight of the 3D loss (with --USE_3D_LOSS)")
    g.add_argument(
        "--wt_decay",
        type=non_negative_float,
        help="multiplier on the weight decay (1e-5 on convolutions, 1e-3 on fully connected "
        "layers, as the original declared); 0 = off, which is how the original trained",
    )

    g = p.add_argument_group("network")
    g.add_argument("--bottleneck", type=positive_int, default=128, help="latent size of the encoder")
    g.add_argument(
        "--input_scale",
        choices=("unit", "255"),
        help="input image values seen by the network: [0, 1] ('unit') or 0..255 ('255', the original)",
    )
    g.add_argument(
        "--init",
        choices=("he", "tflearn"),
        help="weight initialisers: 'he' (He-normal, small output layers) or 'tflearn' (the original: "
        "uniform scaling on convolutions, truncated N(0, 0.02) on fully connected layers)",
    )
    groups["network"] = g
    task.add_train_flags(groups)

    g = p.add_argument_group("optimisation and logging")
    g.add_argument("--batch_size", type=positive_int)
    g.add_argument("--lr", type=positive_float, help="Adam learning rate")
    g.add_argument("--N_ITERS", type=positive_int, help="total training iterations")
    g.add_argument("--print_n", type=positive_int, help="log training losses every print_n iterations")
    g.add_argument(
        "--save_n", type=positive_int, help="every save_n iterations: validation, best model, projection images"
    )
    g.add_argument("--save_model_n", type=positive_int, help="snapshot every save_model_n iterations")
    g.add_argument(
        "--val_batches",
        type=positive_int,
        default=10,
        help="validation batches (of --batch_size, the training graph) whose 2D loss terms are "
        "logged to TensorBoard (val/<term>) and whose first batch is drawn; the best "
        "snapshot is chosen on the validation set below, not on these",
    )
    g.add_argument(
        "--val_selection",
        choices=("balanced", "every_10th"),
        help="the validation set, chosen once per experiment (seeded; <exp>/val_set.json): "
        "'balanced' = every validation model with one input view, then more (model, view) "
        "pairs, one more view per model at a time, up to --val_samples; 'every_10th' = every "
        "10th pair of a seeded shuffle of all (model, view) pairs (the original's rule)",
    )
    g.add_argument(
        "--val_samples",
        type=non_negative_int,
        help="size of the validation set ((model, input view) pairs); 0 = every pair the selection gives",
    )
    g.add_argument(
        "--val_chamfer",
        choices=("distance", "squared"),
        help="validation Chamfer: mean nearest-neighbour 'distance' (the reported metric's form) "
        "or mean 'squared' distance (the original's validation)",
    )
    g.add_argument(
        "--val_clip_box",
        type=non_negative_float,
        help="validation Chamfer: measure the prediction's bounding box on coordinates clipped "
        "to +-val_clip_box (0 = no clipping, as the metrics)",
    )
    g.add_argument(
        "--no_progress",
        action="store_true",
        help="no progress bar (it is drawn only on a terminal; a log file gets the --print_n lines)",
    )
    g.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    g.add_argument(
        "--override",
        action="store_true",
        help="resume even though flags that change what is trained differ from the experiment's "
        "args.json (the change is logged; earlier flags are kept in " + HISTORY_FILE + ")",
    )
    dests = {a.dest for a in p._actions}
    p.set_defaults(task=task.name, **{k: v for k, v in presets["recommended"].items() if k in dests})
    for action in p._actions:
        action.help = (action.help or "") + _preset_note(action.dest, presets)
    return p


def preset_values(preset, task):
    """The flag values a preset sets for ``task`` (the keys its parser has)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESET_NAMES}, got {preset!r}")
    task = as_task(task)
    dests = {a.dest for a in train_parser(task)._actions}
    return {k: v for k, v in _presets(task)[preset].items() if k in dests}


def _preset_parser(task, preset):
    parser = train_parser(task)
    parser.set_defaults(**preset_values(preset, task))
    return parser


def train_defaults(task, preset="recommended"):
    """{flag: default} of the training parser under ``preset``."""
    parser = _preset_parser(task, preset)
    return {a.dest: parser.get_default(a.dest) for a in parser._actions if a.dest != "help"}


def parse_train_args(task, argv=None):
    """Parse training flags with the preset applied: preset values replace the defaults, and
    flags given on the command line win over both. Returns the Namespace."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", choices=PRESET_NAMES, default="recommended")
    known, _ = pre.parse_known_args(argv)
    return _preset_parser(task, known.preset).parse_args(argv)


def args_json(args):
    """The text :func:`save_args` writes for ``args``."""
    return json.dumps(vars(args), indent=2, sort_keys=True)


def save_args(args, exp_dir):
    """Write ``args`` (a Namespace) to ``<exp_dir>/args.json`` atomically."""
    path = os.path.join(exp_dir, ARGS_FILE)
    atomic_io.write_text(path, args_json(args))
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
    if not isinstance(values, dict) or not values.get("task"):
        raise ValueError(f"{path}: expected a JSON object with a 'task' entry (written by training)")
    try:
        task = task_from_ref(values["task"], values.get("task_module"))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    check_saved_values(values, task, path)
    defaults = preset_values("recommended", task)
    missing = {k: v for k, v in defaults.items() if k not in values}
    # args.json files written before a flag existed: the flag's default is the behaviour they had.
    return argparse.Namespace(**{**missing, **values})


def check_saved_values(values, task, path):
    """ValueError naming the first value of a saved args.json that its flag would refuse on the command
    line (``N_PTS: -5``, a word for a number, an unknown choice): an edited or damaged file is
    reported as such, not later as a failure it leads to."""
    for action in train_parser(task)._actions:
        value = values.get(action.dest)
        if action.dest == "help" or value is None:
            continue
        items = value if isinstance(value, list) and action.nargs not in (None, "?") else [value]
        for item in items:
            problem = None
            flag = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)
            if isinstance(action, flag):
                if not isinstance(item, bool):
                    problem = "expected true or false"
            elif action.choices is not None and item not in action.choices:
                problem = f"expected one of {', '.join(map(str, action.choices))}"
            elif callable(action.type):
                try:
                    action.type(str(item))
                except (argparse.ArgumentTypeError, ValueError, TypeError) as err:
                    kind = "a whole number" if "int" in getattr(action.type, "__name__", "") else "a number"
                    problem = str(err) if isinstance(err, argparse.ArgumentTypeError) else f"expected {kind}"
            if problem:
                raise ValueError(
                    f"{path}: {action.dest} is {json.dumps(item)}, a value --{action.dest} refuses ({problem}); "
                    "the file was changed after training wrote it"
                )


def architecture_keys(task):
    """The flags that fix the graph of ``task``: :data:`ARCHITECTURE_KEYS` and its own."""
    return ARCHITECTURE_KEYS + tuple(as_task(task).architecture_flags)


def check_compatible(saved, current, task=None):
    """Raise ValueError if two arg sets disagree on a key that fixes the graph (of ``task``,
    default: the one ``current`` names)."""
    keys = architecture_keys(task or current.task)
    diffs = [
        f"{k}: saved {getattr(saved, k, None)!r}, now {getattr(current, k, None)!r}"
        for k in keys
        if getattr(saved, k, None) != getattr(current, k, None)
    ]
    if diffs:
        raise ValueError(
            "the experiment folder was created with a different architecture ("
            + "; ".join(diffs)
            + "); use a new --exp or the saved flags"
        )


_MISSING = object()


def _plain(value):
    """The value as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def changed_flags(saved, current, defaults=None, ignore=RUNTIME_KEYS + SWITCHABLE_KEYS):
    """Flags that change what is trained and differ between args.json and this command.

    Compares the two Namespaces key by key, skipping ``ignore`` (the
    :data:`RUNTIME_KEYS` and :data:`SWITCHABLE_KEYS`). ``data_dir`` is compared as an absolute path. A key
    absent from ``saved`` (a flag added after the experiment was created) counts
    as unchanged when the new value equals its entry in ``defaults`` (parser
    defaults); a key absent from ``current`` (a flag since removed) is skipped.

    Returns:
        list of ``(key, saved value, new value)``, sorted by key; a missing
        saved value is reported as ``None``.
    """
    old, new = vars(saved), vars(current)
    changes = []
    for key in sorted(set(old) | set(new)):
        if key in ignore or key not in new:
            continue
        a, b = old.get(key, _MISSING), _plain(new[key])
        if key == "data_dir":
            a = a if a is _MISSING or a is None else os.path.abspath(a)
            b = b if b is None else os.path.abspath(b)
        if a is _MISSING:
            if defaults is not None and key in defaults and b == _plain(defaults[key]):
                continue
            a = None
        if a != b:
            changes.append((key, a, b))
    return changes


def describe_changes(changes):
    return "; ".join(f"--{k}: {a!r} -> {b!r}" for k, a, b in changes)


def check_resume(saved, current, exp_dir, override=False, defaults=None):
    """Refuse to resume with flags that change what is trained, unless ``override`` (--override).

    Returns the list of :func:`changed_flags` (empty when nothing changed);
    raises :class:`ResumeError` naming them when they are not accepted.
    """
    changes = changed_flags(saved, current, defaults)
    if changes and not override:
        raise ResumeError(
            f"{os.path.join(exp_dir, ARGS_FILE)} was trained with other flags ({describe_changes(changes)}). "
            "Re-run with the saved flags to resume, choose a new --exp, or add --override to continue "
            f"training with the new flags (the change is logged; {HISTORY_FILE} keeps the earlier ones)"
        )
    return changes


def append_history(exp_dir, args, step, changes):
    """Append one JSON line (time, iteration, changed flags, all flags) to ``<exp_dir>/args_history.jsonl``."""
    entry = dict(
        time=time.strftime("%Y-%m-%d %H:%M:%S"),
        step=int(step),
        changes={k: [a, b] for k, a, b in changes},
        args=_plain(vars(args)),
    )
    with open(os.path.join(exp_dir, HISTORY_FILE), "a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
