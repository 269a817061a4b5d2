"""Speed and memory of the projections: dense (the original's formulation) vs local vs fused (the default).

Usage::

    python benchmarks/bench_projection.py            # the full table (a few minutes on 2 cores)
    python benchmarks/bench_projection.py --quick    # base configuration only

Each configuration runs in its own subprocess (``sys.executable``), so memory numbers do not
leak from one configuration into the next. A worker builds, for B objects seen from V views
(B*V projections), the camera transform, ``mask_projection`` and ``feature_projection`` (rgb)
with the implementation ``impl`` ('fused': the compiled tf_ops kernels; a worker that finds no
compiled library reports an error rather than timing the local ops in its place) and the
gradient of a weighted sum of both images w.r.t. the points and their colours, then

* time: the median over ``--repeats`` (>= 5) runs of one forward+backward ``sess.run``, after
  two warm-up runs;
* memory: the peak resident set size during the runs minus the resident set size after the
  graph and session are built and before the first run (TensorFlow's own few hundred MB are
  not the projection's). Before that baseline the session runs a toy instance of the same
  computation (16 points, 8x8), so TensorFlow's lazy one-off set-up (thread pools, kernel
  libraries, ~20 MB) is not counted either; with glibc, freed heap is handed back
  (``malloc_trim``) before the baseline. The peak is the kernel's high-water mark (VmHWM),
  reset to the current RSS right before the first run through ``/proc/self/clear_refs``;
  where that is not available, ``resource.getrusage(...).ru_maxrss``, the peak over the whole
  process (then the import's peak may hide small configurations' memory).

Dense configurations are skipped when their estimated memory exceeds ``--max-dense-gb``.
"""

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

B_OBJECTS, N_VIEWS = 4, 4
BASE = dict(n_pts=1024, size=64)
# (impl, n_pts, image size); dense where it fits; fused (the default --projection) everywhere
CONFIGS = [
    ("dense", 1024, 64),
    ("local", 1024, 64),
    ("fused", 1024, 64),
    ("local", 1024, 128),
    ("fused", 1024, 128),
    ("dense", 1024, 128),
    ("local", 1024, 256),
    ("fused", 1024, 256),
    ("local", 4096, 64),
    ("fused", 4096, 64),
    ("dense", 4096, 64),
    ("local", 16384, 64),
    ("fused", 16384, 64),
]
QUICK = 3  # --quick: the base configuration of each implementation
DENSE_BYTES_PER_ENTRY = 85  # measured peak (forward+backward) per (projection, point, pixel)


def _rss_bytes():
    import psutil

    return psutil.Process().memory_info().rss


def _reset_peak():
    """Reset the kernel's RSS high-water mark to the current RSS; False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes(reset_ok):
    if reset_ok:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _malloc_trim():
    """Return free heap memory to the system (glibc); a no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _build(impl, n_pts, size, rng):
    """Graph of one configuration: returns the gradient tensors and their feed dict."""
    import numpy as np

    from utils.common.tfv1 import tf
    from utils.render import camera
    from utils.render.projection import feature_projection, mask_projection

    batch = B_OBJECTS * N_VIEWS
    xyz = tf.placeholder(tf.float32, [B_OBJECTS, n_pts, 3])
    rgb = tf.placeholder(tf.float32, [B_OBJECTS, n_pts, 3])
    az = tf.placeholder(tf.float32, [batch])
    el = tf.placeholder(tf.float32, [batch])
    w_mask = tf.placeholder(tf.float32, [batch, size, size])
    w_rgb = tf.placeholder(tf.float32, [batch, size, size, 3])
    xyz_v = tf.reshape(tf.tile(xyz[:, None], [1, N_VIEWS, 1, 1]), [batch, n_pts, 3])
    rgb_v = tf.reshape(tf.tile(rgb[:, None], [1, N_VIEWS, 1, 1]), [batch, n_pts, 3])
    pix = camera.project(xyz_v, az, el, size, size)
    mask = mask_projection(pix, size, size, impl=impl)
    image, _ = feature_projection(pix, rgb_v, size, size, impl=impl)
    loss = tf.reduce_sum(mask * w_mask) + tf.reduce_sum(image * w_rgb)
    grads = tf.gradients(loss, [xyz, rgb])
    feed = {
        xyz: rng.uniform(-0.4, 0.4, (B_OBJECTS, n_pts, 3)).astype(np.float32),
        rgb: rng.uniform(size=(B_OBJECTS, n_pts, 3)).astype(np.float32),
        az: rng.uniform(0, 2 * np.pi, batch).astype(np.float32),
        el: rng.uniform(-0.5, 0.5, batch).astype(np.float32),
        w_mask: rng.uniform(size=(batch, size, size)).astype(np.float32),
        w_rgb: rng.uniform(size=(batch, size, size, 3)).astype(np.float32),
    }
    return grads, feed


def worker(impl, n_pts, size, repeats, threads):
    """Build, run, measure one configuration; print one JSON line."""
    import numpy as np

    from utils.common.tfv1 import tf
    from utils.render.projection import resolve_impl

    if resolve_impl(impl) != impl:
        raise SystemExit(
            f"impl {impl!r} is not available here (it would run {resolve_impl(impl)!r}): "
            "build the compiled ops with python tf_ops/build.py"
        )
    rng = np.random.default_rng(0)
    # A toy instance of the same computation warms TensorFlow up (thread pools, kernel
    # libraries) before the baseline, so those one-off costs are not counted.
    toy_grads, toy_feed = _build(impl, 16, 8, rng)
    grads, feed = _build(impl, n_pts, size, rng)
    config = tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
    with tf.Session(config=config) as sess:
        for _ in range(2):
            sess.run(toy_grads, toy_feed)
        _malloc_trim()
        # from the built graph, before its first run, to the peak of all its runs
        base = _rss_bytes()
        reset_ok = _reset_peak()
        times = []
        for i in range(repeats + 2):
            t0 = time.perf_counter()
            out = sess.run(grads, feed)
            if i >= 2:  # two warm-up runs
                times.append(time.perf_counter() - t0)
        peak = _peak_bytes(reset_ok)
    assert all(np.all(np.isfinite(g)) for g in out)
    print(
        json.dumps(
            dict(
                impl=impl,
                n_pts=n_pts,
                size=size,
                time_s=statistics.median(times),
                mem_bytes=max(peak - base, 0),
                peak_source="VmHWM" if reset_ok else "ru_maxrss",
                repeats=repeats,
            )
        )
    )


def _run_config(impl, n_pts, size, args):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        impl,
        str(n_pts),
        str(size),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return dict(impl=impl, n_pts=n_pts, size=size, error=proc.stderr.strip().splitlines()[-1:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_mb(n_bytes):
    return f"{n_bytes / 2**20:,.1f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per configuration (>= 5)")
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow intra/inter-op threads")
    parser.add_argument(
        "--max-dense-gb", type=float, default=8.0, help="skip dense configurations estimated to need more memory"
    )
    parser.add_argument("--quick", action="store_true", help="base configuration only")
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "N", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        from utils.common.tfv1 import use_graph_mode

        use_graph_mode()
        impl, n_pts, size = args.worker
        worker(impl, int(n_pts), int(size), args.repeats, args.threads)
        return 0
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")

    configs = CONFIGS[:QUICK] if args.quick else CONFIGS
    rows, results = [], {}
    for impl, n_pts, size in configs:
        need = B_OBJECTS * N_VIEWS * n_pts * size * size * DENSE_BYTES_PER_ENTRY
        if impl == "dense" and need > args.max_dense_gb * 2**30:
            rows.append(
                f"| {impl} | {n_pts} | {size}x{size} | skipped: needs ~{need / 2**30:.0f} GB "
                f"(> --max-dense-gb {args.max_dense_gb:g}) | | |"
            )
            continue
        res = _run_config(impl, n_pts, size, args)
        if "error" in res:
            rows.append(f"| {impl} | {n_pts} | {size}x{size} | failed: {res['error']} | | |")
            continue
        results[(impl, n_pts, size)] = res
        dense = results.get(("dense", n_pts, size))
        ratio = ""
        if impl != "dense" and dense:
            ratio = (
                f"{dense['time_s'] / res['time_s']:.0f}x faster, "
                f"{dense['mem_bytes'] / max(res['mem_bytes'], 1):.0f}x less memory"
            )
        rows.append(
            f"| {impl} | {n_pts} | {size}x{size} | {res['time_s'] * 1e3:,.1f} | {_fmt_mb(res['mem_bytes'])} | {ratio} |"
        )
        print(f"# done {impl} N={n_pts} {size}x{size}", file=sys.stderr, flush=True)

    print(
        f"B={B_OBJECTS} objects x V={N_VIEWS} views = {B_OBJECTS * N_VIEWS} projections, mask + rgb, "
        f"forward+backward, median of {args.repeats}, {args.threads} threads"
    )
    print()
    print("| impl | N points | image | time (ms) | memory (MB) | vs dense |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)
    base_local = results.get(("local", BASE["n_pts"], BASE["size"]))
    if base_local:
        scal = []
        for key, label in [
            (("local", 4096, 64), "N x4"),
            (("local", 16384, 64), "N x16"),
            (("local", 1024, 128), "pixels x4"),
            (("local", 1024, 256), "pixels x16"),
        ]:
            if key in results:
                scal.append(f"{label}: time x{results[key]['time_s'] / base_local['time_s']:.1f}")
        if scal:
            print()
            print("local scaling from the base configuration: " + ", ".join(scal))
    peak_sources = {r["peak_source"] for r in results.values()}
    print(f"(peak memory from {', '.join(sorted(peak_sources))})")
    return 0


if __name__ == "__main__":
    from utils.common import cli

    cli.exit_with("bench_projection", main)
