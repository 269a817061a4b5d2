"""Does the data pipeline keep up with the training step? PNG path and view cache, one run.

Usage::

    python benchmarks/bench_data.py            # demo configuration, data/ (needs the chair set)
    python benchmarks/bench_data.py --quick    # fewer batches and step repeats

At the demo's configuration (rgb, B = 8 objects x V = 4 random views, 64 x 64, random input
view, shuffled) it measures:

* **the loader alone**, per path (``png``: decode the PNG files and compute the distance maps
  every batch; ``cache``: the packed view cache of ``utils/data/cache.py``, built first if needed)
  and per number of worker threads (1, 2): samples/s of ``next(pipeline)`` over ``--batches``
  batches after a warm-up (wall clock, nothing else running in the process; each batch is kept
  until the next one, as the training loop does), and the CPU time the process spent per batch
  meanwhile (``time.process_time``, all threads);
* **the training step**: the fused rgb training step with the demo's flags, built by
  ``benchmarks/bench_train_step.py``'s worker (the real graph builder of ``utils/model.py`` and
  Adam, TensorFlow's default threads, fed from memory): median wall and process-CPU time of a
  step after ``--train_first`` steps; its samples/s is B / step time;

and prints one table: the loader's samples/s over the step's (it must stay well above 1 or the
step waits), and the loader's share of the CPU of training, loader CPU / (loader CPU + step CPU)
per batch. The **GPU projection** assumes a GPU step ``--gpu_speedup`` (default 10) times shorter
than this machine's step, the order of magnitude the issue quotes (no GPU was measured): the
loader must then supply that many times more samples/s, with the CPU it has.

Also printed: the distance maps of one batch computed from its masks (as the PNG path does)
against converting the cached ones, the reason the cache stores them.

Timings are noisy on a shared machine: each number is the best of ``--rounds`` rounds.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = dict(batch=8, views=4, n_pts=1024, size=64)  # the demo (run_demo.sh, recommended preset)
SEED = 7


def _pipeline(task, data_dir, mode, workers, cache_dir=None):
    from utils.data import BatchPipeline
    from utils.task import task_from_ref

    return BatchPipeline(
        data_dir,
        "chair",
        "train",
        task=task_from_ref(task),
        batch_size=CFG["batch"],
        n_views=CFG["views"],
        img_h=CFG["size"],
        img_w=CFG["size"],
        seed=SEED,
        num_workers=workers,
        view_cache="auto" if mode == "cache" else "off",
        cache_dir=cache_dir,
    )


def loader_rate(task, data_dir, mode, workers, batches, cache_dir=None):
    """(samples/s, process CPU ms per batch) of ``next(pipeline)`` with ``workers`` threads, as the
    training loop takes batches (each kept until the next; after ``prefetch`` warm-up batches)."""
    with _pipeline(task, data_dir, mode, workers, cache_dir) as pipe:
        for _ in range(pipe.prefetch + 1):
            batch = next(pipe)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(batches):
            batch = next(pipe)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        del batch
    return batches * CFG["batch"] / wall, 1e3 * cpu / batches


def dist_ms(task, data_dir, repeats, cache_dir=None):
    """(ms to compute a batch's distance maps from its masks, ms to convert the cached ones)."""
    import numpy as np

    from utils.data.distance_map import gt_distance_transform

    with _pipeline(task, data_dir, "cache", 0, cache_dir) as pipe:
        batch = pipe.get_batch(0)
        rows = pipe._cache.start[[pipe.models.index(m) for m in batch["model_id"]]][:, None] + batch["views"]
        compute, convert = [], []
        for _ in range(repeats):
            c0 = time.process_time()
            gt_distance_transform(batch["mask"])
            compute.append(time.process_time() - c0)
            c0 = time.process_time()
            np.asarray(pipe._cache.arrays["dist"][rows]).astype(np.float32)
            convert.append(time.process_time() - c0)
    return 1e3 * statistics.median(compute), 1e3 * statistics.median(convert)


def step_times(task, data_dir, repeats, train_first):
    """(wall ms, process CPU ms) of the fused training step, from bench_train_step's worker."""
    cmd = [
        sys.executable,
        os.path.join(ROOT, "benchmarks", "bench_train_step.py"),
        "--task",
        task,
        "--worker",
        "fused",
        json.dumps(CFG),
        "--data_dir",
        data_dir,
        "--repeats",
        str(repeats),
        "--train_first",
        str(train_first),
        "--threads",
        "0",
        "--step_only",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError("training-step worker failed:\n" + "\n".join(proc.stderr.strip().splitlines()[-5:]))
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return res["wall_ms"]["step"], res["cpu_ms"]["step"]


def table(step_wall, step_cpu, rates, cpu, gpu_speedup):
    """Markdown table of loader samples/s against the step's (and a GPU step's)."""
    B = CFG["batch"]
    step_rate = 1e3 * B / step_wall
    gpu_rate = step_rate * gpu_speedup
    lines = [
        f"training step (fused, default threads): {step_wall:.1f} ms wall, {step_cpu:.1f} ms CPU per step "
        f"-> {step_rate:.0f} samples/s; projected GPU step (/{gpu_speedup:g}): {step_wall / gpu_speedup:.1f} ms "
        f"-> {gpu_rate:.0f} samples/s",
        "",
        "| loader | threads | samples/s | / step's samples/s | / GPU step's (projected) | CPU ms per batch "
        "| CPU share of training |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (mode, workers), rate in rates.items():
        c = cpu[mode, workers]
        lines.append(
            f"| {mode} | {workers} | {rate:.0f} | {rate / step_rate:.1f}x | {rate / gpu_rate:.2f}x | "
            f"{c:.2f} | {100 * c / (c + step_cpu):.1f}% |"
        )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from utils.task import available_tasks

    p.add_argument(
        "--task",
        choices=available_tasks(),
        required=True,
        help="the task whose loader and training step are timed (the demo's: rgb)",
    )
    p.add_argument("--data_dir", default=os.path.join(ROOT, "data"), help="data root with the chair set (demo)")
    p.add_argument("--cache_dir", default=None, help="view caches (default: <data_dir>/.cache)")
    p.add_argument("--batches", type=int, default=60, help="batches timed per loader measurement")
    p.add_argument("--rounds", type=int, default=2, help="rounds of loader measurements (the best counts)")
    p.add_argument("--repeats", type=int, default=30, help="timed training steps (median)")
    p.add_argument("--train_first", type=int, default=30, help="training steps before timing the step")
    p.add_argument("--gpu_speedup", type=float, default=10.0, help="assumed GPU step speed-up over this CPU")
    p.add_argument("--quick", action="store_true", help="20 batches, 1 round, 10 step repeats")
    args = p.parse_args(argv)
    if args.quick:
        args.batches, args.rounds, args.repeats, args.train_first = 20, 1, 10, 10
    from utils.data import missing_dataset
    from utils.task import task_from_ref

    problem = missing_dataset("bench_data", args.data_dir, "chair", task_from_ref(args.task).data_tree)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    with _pipeline(args.task, args.data_dir, "cache", 0, args.cache_dir):
        pass  # build (or check) the cache before timing
    rates, cpu = {}, {}
    for _ in range(args.rounds):
        for mode in ("png", "cache"):
            for workers in (1, 2):
                r, c = loader_rate(args.task, args.data_dir, mode, workers, args.batches, args.cache_dir)
                rates[mode, workers] = max(rates.get((mode, workers), 0.0), r)
                cpu[mode, workers] = min(cpu.get((mode, workers), 1e9), c)
            print(f"# loader {mode}: done", file=sys.stderr, flush=True)
    compute, convert = dist_ms(args.task, args.data_dir, args.batches, args.cache_dir)
    step_wall, step_cpu = step_times(args.task, args.data_dir, args.repeats, args.train_first)
    print(
        f"\n{args.task}, B={CFG['batch']} x V={CFG['views']} views, {CFG['size']}x{CFG['size']}, random views; "
        f"loader: best "
        f"of {args.rounds} round(s) of {args.batches} batches; step: median of {args.repeats} after "
        f"{args.train_first} training steps\n"
    )
    print(table(step_wall, step_cpu, rates, cpu, args.gpu_speedup))
    print(
        f"\ndistance maps of one batch ({CFG['batch'] * CFG['views']} views): computed from the masks "
        f"{compute:.2f} ms CPU, converted from the cache {convert:.3f} ms CPU"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
