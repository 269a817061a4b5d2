"""The validation set: which (model, input view) pairs choose the best snapshot (numpy only).

Chosen once per experiment from the seed, the selection rule and the size, never from the
batch size: the training loop records it in ``<exp>/val_set.json`` and evaluates it in
batches of its own (utils.train.loop).

Rules (``--val_selection``):

* ``balanced`` (ours): round 0 takes every validation model once, each with one input view
  drawn from the seed; round r adds one more (not yet taken) view of every model; the
  models keep one seeded order in every round. The first ``n_samples`` pairs are the set, so
  every model counts equally (within one sample) at any size, and a size of at least the
  number of models covers every model.
* ``every_10th`` (the original's ``rgb/train_rgb.py``: ``random.shuffle(val_pair_indices)``
  then ``for b in xrange(0, batches, 10)`` with batch size 1): every 10th pair of a seeded
  shuffle of all (model, view) pairs, listed model by model as the original's
  ``product(models, views)``; ``n_samples`` (when > 0) caps it. The shuffle is ours (numpy,
  from ``--seed``), not Python 2's ``random.shuffle`` seeded with 1024, so the pairs differ
  from the original's even on its data; the rule is the same.
"""

import numpy as np

SELECTIONS = ("balanced", "every_10th")
VAL_SET_SALT = 0x7A15  # rng([seed, VAL_SET_SALT]): apart from the batch pipeline's streams
ORIGINAL_STRIDE = 10


def choose_pairs(n_views, n_samples, seed, selection="balanced"):
    """The validation pairs.

    Args:
        n_views: sequence of int, the number of views of each validation model (in split order).
        n_samples: int >= 0, size of the set; 0 = every pair the rule gives.
        seed: int >= 0 (the experiment's ``--seed``).
        selection: 'balanced' or 'every_10th' (module docstring).
    Returns:
        list of (model index, view index) tuples of ints, distinct pairs, in the rule's order.
    """
    if selection not in SELECTIONS:
        raise ValueError(f"val selection must be one of {SELECTIONS}, got {selection!r}")
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    n_views = [int(v) for v in n_views]
    rng = np.random.default_rng([int(seed), VAL_SET_SALT])
    if selection == "every_10th":
        pairs = [(m, v) for m, count in enumerate(n_views) for v in range(count)]
        order = rng.permutation(len(pairs))
        pairs = [pairs[k] for k in order[::ORIGINAL_STRIDE]]
    else:
        models = rng.permutation(len(n_views))
        views = [rng.permutation(count) for count in n_views]
        pairs = [(int(m), int(views[m][r])) for r in range(max(n_views, default=0)) for m in models if r < n_views[m]]
    return [(int(m), int(v)) for m, v in (pairs[:n_samples] if n_samples else pairs)]
