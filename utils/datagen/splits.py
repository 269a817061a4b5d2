"""Train/val/test split lists of a generated data set: a seeded partition per category, or lists
reused from elsewhere (a folder of split files, ShapeNetCore's ``all.csv``), written as the
layout's ``<synset>_<split>_list.{txt,npy}`` files."""

import csv
from pathlib import Path

import numpy as np

from utils.common import atomic_io
from utils.data import SPLITS, DataError, read_split, split_list_file

SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, val, test
SPLIT_SALT = 7  # split_models seeds its permutation with (seed, synset, SPLIT_SALT)


def split_counts(n, fractions=SPLIT_FRACTIONS):
    """(n_train, n_val, n_test) for ``n`` models: non-negative, summing to ``n``.

    The val and test shares are rounded, and get at least one model each when there are 3
    models or more and their fraction is not zero; a zero fraction always gets none. The rest
    goes to train, or, when the train fraction is zero, to test (or val).
    """
    f_train, f_val, f_test = (float(f) for f in fractions)
    if min(f_train, f_val, f_test) < 0:
        raise ValueError(f"split fractions must be non-negative, got {tuple(fractions)}")
    n_val = int(round(f_val * n)) if f_val > 0 else 0
    n_test = int(round(f_test * n)) if f_test > 0 else 0
    if n >= 3:
        n_val, n_test = (max(1, n_val) if f_val > 0 else 0), (max(1, n_test) if f_test > 0 else 0)
    excess = n_val + n_test - n  # rounding up both: the larger share gives way
    if excess > 0:
        if n_val >= n_test:
            n_val -= excess
        else:
            n_test -= excess
    n_train = n - n_val - n_test
    if f_train == 0 and n_train:  # nothing may go to train: the rest to test (or val)
        if f_test > 0:
            n_test += n_train
        else:
            n_val += n_train
        n_train = 0
    elif f_train > 0 and n_train == 0 and n >= 3:  # a train share gets a model too
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
        n_train = 1
    return n_train, n_val, n_test


def split_models(ids, seed, synset, fractions=SPLIT_FRACTIONS):
    """Deterministic train/val/test partition of ``ids`` (each list sorted): disjoint, covering
    ``ids``, sizes from :func:`split_counts`.

    A permutation seeded by (seed, synset) of ``ids`` in the given order, cut at those sizes.
    """
    n = len(ids)
    perm = np.random.default_rng([int(seed), int(synset), SPLIT_SALT]).permutation(n)
    n_train, n_val, _ = split_counts(n, fractions)
    pick = lambda a, b: sorted(ids[i] for i in perm[a:b])  # noqa: E731
    return {"train": pick(0, n_train), "val": pick(n_train, n_train + n_val), "test": pick(n_train + n_val, n)}


def write_splits(folder, synset, splits, ext=".txt"):
    """``<synset>_{train,val,test}_list.txt`` (one id per line) or ``.npy`` (1-D string array)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        ids = splits.get(name, [])
        path = folder / split_list_file(synset, name, ext)
        if ext == ".npy":
            np.save(path, np.array(ids, dtype=str))
        else:
            atomic_io.write_text(path, "".join(i + "\n" for i in ids))


def parse_fractions(text):
    """'0.8,0.1,0.1' -> (0.8, 0.1, 0.1); ValueError unless three non-negative numbers summing to 1."""
    try:
        vals = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3 or min(vals) < 0 or abs(sum(vals) - 1) > 1e-6:
        raise ValueError(f"--split {text!r}: expected three fractions train,val,test summing to 1, e.g. 0.8,0.1,0.1")
    return vals


def read_split_source(path, synset):
    """Split lists to reuse: ``{split: [ids]}`` for ``synset`` from a folder of
    ``<synset>_{train,val,test}_list.{txt,npy}`` files or a CSV with columns
    ``synsetId``, ``modelId``, ``split`` (ShapeNetCore's ``all.csv``).
    Missing lists are empty."""
    path = Path(path)
    out = {name: [] for name in SPLITS}
    if path.is_file():
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and not {"synsetId", "modelId", "split"} <= set(rows[0]):
            raise ValueError(f"--splits_from {path}: expected CSV columns synsetId, modelId, split")
        for r in rows:
            name = r["split"].strip().lower()
            name = "val" if name == "validation" else name
            if r["synsetId"].strip().zfill(8) == synset and name in out:
                out[name].append(r["modelId"].strip())
        return out
    if not path.is_dir():
        raise ValueError(f"--splits_from {path}: no such folder or CSV file")
    for name in SPLITS:
        for ext in (".txt", ".npy"):
            f = path / split_list_file(synset, name, ext)
            if f.is_file():
                try:
                    out[name] = read_split(str(f))
                except DataError as err:
                    raise ValueError(f"--splits_from: {err}") from None
                break
    return out


def make_splits(ids, synset, seed, fractions, reuse=None):
    """``({split: sorted ids}, [ids left out])``: ``reuse`` lists filtered to ``ids``, or a fresh
    seeded partition (:func:`split_models`)."""
    ids = sorted(ids)
    if reuse is None:
        return split_models(ids, seed, synset, fractions), []
    have = set(ids)
    splits = {name: sorted(i for i in reuse.get(name, []) if i in have) for name in SPLITS}
    listed = set().union(*map(set, splits.values()))
    return splits, [i for i in ids if i not in listed]
