"""Results over seeds: mean and spread of each metric, paired differences from a reference, and the
rule that reads a difference as a finding (numpy only).

A *run* is one (variant, seed) with its metrics. Over the seeds of a variant, each metric gets
its mean and spread (:func:`spread`): the sample standard deviation with :data:`STD_MIN_RUNS` or
more runs, the range (min, max) below that. A variant's difference from the reference variant is
taken seed by seed over the seeds both have (paired: the same initialisation seed and data order
on both sides), and read as a finding only when it exceeds its spread (:func:`exceeds_spread`):
``|mean| > standard deviation``, or with fewer pairs every paired difference of one sign. The
ablation (``claims/ablation.py``) and the renderer-alone comparison (``claims/renderer_alone.py``,
models instead of seeds) share it.
"""

import numpy as np

STD_MIN_RUNS = 4  # from this many runs on, the spread is the standard deviation; below, the range


def spread(values):
    """Mean and spread of one metric over runs (numpy only).

    Args:
        values: sequence of floats, one per run (NaN and None are left out).
    Returns:
        dict(n, mean, kind, std, min, max): ``kind`` is ``"std"`` (sample standard deviation,
        ddof=1) for ``n >= STD_MIN_RUNS`` runs, ``"range"`` (min, max) below that, ``"none"``
        for no runs; ``std`` is None unless ``kind == "std"``.
    """
    v = np.array([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if v.size == 0:
        return dict(n=0, mean=None, kind="none", std=None, min=None, max=None)
    kind = "std" if v.size >= STD_MIN_RUNS else "range"
    return dict(
        n=int(v.size),
        mean=float(v.mean()),
        kind=kind,
        std=float(v.std(ddof=1)) if kind == "std" else None,
        min=float(v.min()),
        max=float(v.max()),
    )


def exceeds_spread(stats):
    """Whether a paired difference is read as a finding: its mean beyond one standard deviation
    (``kind == "std"``), or, with fewer runs, every paired difference of one sign (the range
    excludes 0)."""
    if stats["kind"] == "std":
        return abs(stats["mean"]) > stats["std"]
    if stats["kind"] == "range":
        return stats["min"] > 0 or stats["max"] < 0
    return False


def aggregate(runs, keys, reference):
    """Per variant, the mean and spread over seeds of each metric, and the difference from
    ``reference`` over the paired seeds. A pure function (numpy only).

    Args:
        runs: iterable of dicts ``variant`` (str), ``seed`` (int), ``metrics`` (dict metric ->
            float, or None for a failed or missing run).
        keys: the metrics to aggregate (e.g. the task's headline metrics).
        reference: the variant the differences are taken from.
    Returns:
        dict variant -> dict(seeds: the seeds with metrics, sorted; metrics: {key: spread()};
        diff: {key: spread() of variant(seed) - reference(seed) over the seeds both have, plus
        ``finding`` (exceeds_spread) and ``pairs`` (the seeds used)}, or None for the reference
        itself or without a reference run). Variants keep their first-appearance order.
    """
    by_variant = {}
    for r in runs:
        values = by_variant.setdefault(r["variant"], {})
        if r.get("metrics"):
            values[r["seed"]] = r["metrics"]
    ref = by_variant.get(reference, {})
    out = {}
    for name, values in by_variant.items():
        seeds = sorted(values)
        entry = dict(seeds=seeds, metrics={k: spread([values[s].get(k) for s in seeds]) for k in keys}, diff=None)
        pairs = [s for s in seeds if s in ref]
        if name != reference and ref:
            entry["diff"] = {}
            for k in keys:
                d = [
                    values[s][k] - ref[s][k]
                    for s in pairs
                    if values[s].get(k) is not None and ref[s].get(k) is not None
                ]
                stats = spread(d)
                entry["diff"][k] = dict(stats, finding=exceeds_spread(stats), pairs=pairs)
        out[name] = entry
    return out


def fmt_spread(stats, signed=False):
    """'mean ± std' or 'mean [min, max]' (one run: the value alone)."""
    if stats is None or stats["kind"] == "none":
        return "-"
    f = "{:+.4f}" if signed else "{:.4f}"
    text = f.format(stats["mean"])
    if stats["kind"] == "std":
        return f"{text} ± {stats['std']:.4f}"
    if stats["n"] > 1:
        return f"{text} [{f.format(stats['min'])}, {f.format(stats['max'])}]"
    return text


def summary_lines(summary, keys, reference):
    """Markdown lines of the seeded table: per variant, the seeds, mean and spread of each metric,
    and the paired difference from ``reference`` (``*``: it exceeds its spread)."""
    lines = [
        "| variant | seeds | " + " | ".join(keys) + " | " + " | ".join(f"Δ {k} vs {reference}" for k in keys) + " |",
        "| --- | --- | " + " | ".join("---" for _ in 2 * list(keys)) + " |",
    ]
    for name, e in summary.items():
        diffs = [
            (
                "-"
                if e["diff"] is None
                else fmt_spread(e["diff"][k], signed=True) + (" *" if e["diff"][k]["finding"] else "")
            )
            for k in keys
        ]
        lines.append(
            f"| {name} | {len(e['seeds'])} | "
            + " | ".join(fmt_spread(e["metrics"][k]) for k in keys)
            + " | "
            + " | ".join(diffs)
            + " |"
        )
    return lines
