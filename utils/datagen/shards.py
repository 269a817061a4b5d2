"""The incremental state of a ``make_dataset.py`` output folder: which models are complete, the
shards of a run spread over many machines, and how a finished model is moved into place.

Everything lives in ``<out>/.make_dataset/``: ``models/<synset>/<model id>.json`` (a model's
completion record, written after its folders are in place; a re-run skips the model),
``params.json`` (the options the folder was made with), ``shards/<k>-of-<n>.json`` (the report of
shard k of n) and the workers' temporary folders (``tmp`` or ``tmp-<k>-of-<n>``).

Sharding (``--shard k/n``, then ``--finalize``): the sorted model list is dealt round-robin into n
parts (:func:`shard_sources`); shard k renders only its part, with its own temporary folder, and
writes a report instead of the splits and summary, so n processes on any machines sharing the
output folder fill one tree without touching each other's files.
"""

import json
import os
import shutil
from pathlib import Path

from utils.common import atomic_io
from utils.datagen.writer import model_folders, write_model

STATE_DIR = ".make_dataset"


# --------------------------------------------------------------------------
# complete models
# --------------------------------------------------------------------------
def _record_path(out, synset, model_id):
    return Path(out) / STATE_DIR / "models" / synset / f"{model_id}.json"


def read_record(out, synset, model_id):
    """The completion record of a model whose folders are all in place, else None."""
    path = _record_path(out, synset, model_id)
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not all((Path(out) / f).is_dir() for f in model_folders(synset, model_id, rec.get("partseg", False))):
        return None
    return rec


def _remove_model(out, synset, model_id):
    """Delete a model's record and folders (an interrupted or forced model)."""
    rec = _record_path(out, synset, model_id)
    if rec.exists():
        rec.unlink()
    for f in model_folders(synset, model_id, True):
        if (Path(out) / f).exists():
            shutil.rmtree(Path(out) / f)


def place_model(out, tmp_root, synset, model_id, model, record):
    """Write a built model (:func:`utils.datagen.build.build_model`) into a private temporary folder
    under ``tmp_root``, move its folders into place under ``out`` (replacing an earlier version) and
    write its completion record (``record`` plus ``partseg``). Returns the record."""
    out = Path(out)
    tmp = Path(tmp_root) / f"{synset}_{model_id}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        write_model(tmp, synset, model_id, model)
        _remove_model(out, synset, model_id)
        partseg = "labels" in model
        for rel in model_folders(synset, model_id, partseg):
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, out / rel)
        rec = dict(record, partseg=partseg)
        path = _record_path(out, synset, model_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_io.write_text(path, json.dumps(rec, indent=1) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rec


# --------------------------------------------------------------------------
# shards
# --------------------------------------------------------------------------
def parse_shard(text):
    """'k/n' -> (k, n) with 1 <= k <= n; ValueError naming --shard otherwise."""
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise ValueError(f"--shard {text!r}: expected k/n with 1 <= k <= n (the k-th of n parts), e.g. 3/8")
    return k, n


def shard_sources(sources, k, n):
    """The k-th (1-based) of n disjoint parts of ``sources``: every n-th model of the list sorted by
    (synset, model id), starting at the k-th. The parts cover the list, differ in size by at most
    one model, and depend only on the list (the same on every machine and every re-run)."""
    ordered = sorted(sources, key=lambda s: (s.synset, s.model_id))
    return ordered[k - 1 :: n]


def shard_name(shard):
    return f"{shard[0]}-of-{shard[1]}"


def shard_report_path(out, shard):
    return Path(out) / STATE_DIR / "shards" / f"{shard_name(shard)}.json"


def workers_tmp(out, shard):
    """Temporary folder of a run's workers: one per shard, so one shard's start-up clean-up never
    removes another's models in progress."""
    return Path(out) / STATE_DIR / ("tmp" if shard is None else f"tmp-{shard_name(shard)}")


def read_shard_reports(out):
    """{(k, n): report} of every shard report under ``out`` (unreadable ones skipped)."""
    folder = Path(out) / STATE_DIR / "shards"
    reports = {}
    for path in sorted(folder.glob("*-of-*.json")) if folder.is_dir() else []:
        try:
            rep = json.loads(path.read_text())
            reports[(int(rep["shard"][0]), int(rep["shard"][1]))] = rep
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
    return reports
