"""Metrics of several evaluations side by side (e.g. the best and the last snapshot).

``python -m utils.eval.compare A/summary.json B/summary.json --labels best final`` prints one
row per metric: the model's value in each summary, then the image-blind baselines and the floor
(ground truth vs an independent resampling of the same surface) of the first one (they do not
depend on the snapshot). run_demo.sh uses it.
"""

import argparse
import json
import math
import sys


def side_by_side(summaries, labels):
    """The text of the table: ``summaries`` (dicts written by utils.eval.evaluate), ``labels`` (str each)."""
    first = summaries[0]
    others = [m for m in first["methods"] if m != "model"]
    floor = first.get("floor") or {}
    columns = [f"{label} (it. {s['step']})" for label, s in zip(labels, summaries)] + others
    keys = [k for k in first.get("headline", []) if k in first["methods"]["model"]]
    keys += [k for k in first["methods"]["model"] if k not in keys]
    width = max(14, *(len(c) for c in columns))
    lines = [
        f"{first['task']} metrics, {first['category']} {first['eval_set']} split, {first['n_samples']} samples: "
        + ", ".join(f"{label} = snapshot {s['snapshot']}" for label, s in zip(labels, summaries)),
        f"{'metric':<16}" + "".join(f"{c:>{width + 2}}" for c in columns),
    ]
    for k in keys:
        values = [s["methods"]["model"].get(k, math.nan) for s in summaries]
        values += [first["methods"][m].get(k, math.nan) for m in others]
        lines.append(f"{k:<16}" + "".join(f"{v:>{width + 2}.5f}" for v in values))
    if floor:
        lines.append(f"{floor['method']}: {floor['label']}" + ("" if floor["available"] else f": {floor['note']}"))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m utils.eval.compare", description=__doc__.splitlines()[0])
    p.add_argument("summaries", nargs="+", help="summary.json files written by the metrics")
    p.add_argument("--labels", nargs="+", default=None, help="a column title per summary (default: 1, 2, ...)")
    args = p.parse_args(argv)
    labels = args.labels or [str(i + 1) for i in range(len(args.summaries))]
    if len(labels) != len(args.summaries):
        p.error(f"--labels: expected {len(args.summaries)} labels (one per summary), got {len(labels)}")
    summaries = []
    for path in args.summaries:
        try:
            with open(path) as f:
                summaries.append(json.load(f))
        except (OSError, ValueError) as err:
            print(
                f"compare: cannot read {path} ({err}); expected a summary.json written by the metrics", file=sys.stderr
            )
            return 2
    print(side_by_side(summaries, labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
