"""How the object sits in an experiment's training renders, measured once and kept beside the model.

``--fit object`` (utils/eval/preprocess.py) frames a photo so that its object's bounding box has
the median size and centre of the training renders' masks. :func:`training_framing` measures them
on the experiment's training data (``args.json``'s data_dir) the first time it is asked and writes
them to ``<exp>/input_framing.json``; later calls, and machines without the data set, read that
file. ``--export`` copies the numbers into the SavedModel's ``differ.json`` (key ``framing``).
"""

import json
import os

from utils.common import atomic_io, cli
from utils.data import shapenet
from utils.eval import preprocess

FRAMING_FILE = "input_framing.json"


def measure_training_framing(targs, tree, max_models=200):
    """:func:`preprocess.measure_framing` over the masks (``depth_{k}.png``, every view) of up to
    ``max_models`` training models, evenly spaced in the split. Raises DataError/OSError/ValueError
    when the training renders cannot be read."""
    from utils import data

    models = data.list_models(targs.data_dir, targs.category, "train", tree)
    step = max(1, len(models) // max_models)
    rendered = os.path.join(data.tree_dirs(targs.data_dir, tree)["rendered"], shapenet.synset_id(targs.category))

    def masks():
        for m in models[::step][:max_models]:
            k = 0
            while os.path.isfile(os.path.join(rendered, m, data.depth_file(k))):
                yield data.read_mask(os.path.join(rendered, m, data.depth_file(k)), targs.IMG_H, targs.IMG_W)
                k += 1

    framing = preprocess.measure_framing(masks())
    framing["source"] = f"masks of {framing['n_renders']} training renders in {targs.data_dir}"
    return framing


def training_framing(exp_dir, targs, tree):
    """The training framing of an experiment: (dict or None, where it came from).

    Reads ``<exp>/input_framing.json``; without it, measures the training renders and writes the
    file (atomically; a read-only folder is only reported). None when neither is there.
    """
    from utils import data

    path = os.path.join(exp_dir, FRAMING_FILE)
    if os.path.isfile(path):
        try:
            with open(path) as f:
                framing = json.load(f)
            if {"img_h", "img_w", "bbox_size", "bbox_centre", "share", "share_range"} <= set(framing):
                return framing, path
        except (OSError, ValueError):
            pass
        cli.warn(f"{path}: not a framing file; measuring the training renders again")
    try:
        framing = measure_training_framing(targs, tree)
    except (data.DataError, OSError, ValueError):
        return None, f"unknown: no {path} and the training renders were not found"
    try:
        atomic_io.write_json(path, framing)
        return framing, f"{framing['source']} (kept in {path})"
    except OSError as err:
        return framing, f"{framing['source']} (not kept: {path}: {err.strerror or err})"
