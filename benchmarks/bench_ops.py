"""Speed and accuracy of the tf_ops kernels against pure-TF graphs and scipy, in one run.

    python benchmarks/bench_ops.py [--batch 8] [--points 1024] [--reps 15]

Prints one markdown table (median wall times over --reps runs after warm-up, all on the CPU
in one process, TensorFlow's default intra-op thread pool = all cores):

* Chamfer (nn_distance) forward and forward+backward: the compiled op vs the best pure-TF
  graph (matmul form |a|^2 + |b|^2 - 2ab^T for the argmin, exact distances and a cheap
  gradient through gather: tf_ops.fallback), the matmul form differentiated through
  reduce_min, the broadcast form (B,N,M,3), and scipy's cKDTree (forward only); plus the
  projection-loss shape 4096 x 1024.
* EMD by auction_match vs scipy's exact linear_sum_assignment: time and cost ratio.
* approx_match + match_cost (compiled and pure-TF) vs the exact EMD: time and cost ratio.
Inputs live in tf.Variables, so no graph is constant-folded away.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
from scipy.spatial import cKDTree

from utils.common.tfv1 import tf, use_graph_mode  # before tf_ops: TensorFlow loads quietly

import tf_ops
from tf_ops import fallback, reference


def host_median_ms(fn, reps, warmup=1):
    """Median wall time (ms) of ``fn()`` over ``reps`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def median_ms(sess, fetches, reps, warmup=2):
    """Median wall time (ms) of ``sess.run(fetches)``."""
    return host_median_ms(lambda: sess.run(fetches), reps, warmup)


# --------------------------------------------------------------------- pure-TF Chamfer variants
def chamfer_matmul_reduce_min(a, b):
    """Matmul form, distances straight from reduce_min (TF's min gradient: equality masks)."""
    d = (
        tf.reduce_sum(tf.square(a), -1)[:, :, None]
        + tf.reduce_sum(tf.square(b), -1)[:, None, :]
        - 2.0 * tf.matmul(a, b, transpose_b=True)
    )
    return tf.reduce_min(d, 2), tf.reduce_min(d, 1)


def chamfer_broadcast(a, b):
    """Broadcast form: (B,N,M,3) differences."""
    d = tf.reduce_sum(tf.square(a[:, :, None, :] - b[:, None, :, :]), -1)
    return tf.reduce_min(d, 2), tf.reduce_min(d, 1)


def chamfer_rows(sess, rng, bsz, n, m, reps, label, with_kdtree=True, with_broadcast=True):
    p = (rng.random((bsz, n, 3)) - 0.5).astype(np.float32)
    q = (rng.random((bsz, m, 3)) - 0.5).astype(np.float32)
    a, b = tf.Variable(p), tf.Variable(q)
    sess.run(tf.variables_initializer([a, b]))
    variants = [
        ("compiled op (tf_ops.nn_distance)", lambda x, y: tf_ops.nn_distance(x, y)[0::2]),
        ("pure TF, matmul form + gather (tf_ops.fallback)", lambda x, y: fallback.nn_distance(x, y)[0::2]),
        ("pure TF, matmul form + reduce_min", chamfer_matmul_reduce_min),
    ]
    if with_broadcast:
        variants.append(("pure TF, broadcast form", chamfer_broadcast))
    rows, base = [], None
    for name, fn in variants:
        d1, d2 = fn(a, b)
        loss = tf.reduce_mean(d1) + tf.reduce_mean(d2)
        grads = tf.gradients(loss, [a, b])
        fwd = median_ms(sess, [d1, d2], reps)
        both = median_ms(sess, [loss] + grads, reps)
        if base is None:
            base = (fwd, both)
        rows.append(
            (f"Chamfer {label}", name, f"{fwd:.2f}", f"{both:.2f}", f"{fwd / base[0]:.1f}x / {both / base[1]:.1f}x", "")
        )
    if with_kdtree:

        def kdtree():
            for k in range(bsz):
                cKDTree(q[k]).query(p[k])
                cKDTree(p[k]).query(q[k])

        fwd = host_median_ms(kdtree, reps)
        rows.append(
            (
                f"Chamfer {label}",
                "scipy cKDTree (build + query, both ways)",
                f"{fwd:.2f}",
                "-",
                f"{fwd / base[0]:.1f}x / -",
                "",
            )
        )
    return rows


def emd_rows(sess, rng, bsz, n, reps):
    rows = []
    p = (rng.random((bsz, n, 3)) - 0.5).astype(np.float32)
    q = (rng.random((bsz, n, 3)) - 0.5).astype(np.float32)
    t0 = time.perf_counter()
    exact = np.array([reference.emd_exact(p[k], q[k]) for k in range(bsz)])
    a, b = tf.Variable(p), tf.Variable(q)
    sess.run(tf.variables_initializer([a, b]))

    def exact_all():
        for k in range(bsz):
            reference.exact_assignment(p[k], q[k])

    t_exact = host_median_ms(exact_all, max(3, reps // 3), warmup=0)
    del t0
    rows.append((f"EMD B={bsz} N={n}", "scipy linear_sum_assignment (exact)", f"{t_exact:.1f}", "-", "1.0x", "1"))

    idx1, _ = tf_ops.auction_match(a, b)
    t_auc = median_ms(sess, idx1, reps)
    i1 = sess.run(idx1)
    ratio = np.array([reference.assignment_cost(p[k], q[k], i1[k]) for k in range(bsz)]) / exact
    rows.append(
        (
            f"EMD B={bsz} N={n}",
            "auction_match (compiled, rel_tol 1e-4)",
            f"{t_auc:.1f}",
            "-",
            f"{t_auc / t_exact:.2f}x",
            f"{ratio.max():.6f} (max)",
        )
    )

    for name, mod in [
        ("approx_match + match_cost (compiled)", tf_ops),
        ("approx_match + match_cost (pure TF)", fallback),
    ]:
        cost = mod.match_cost(a, b, mod.approx_match(a, b))
        t = median_ms(sess, cost, max(3, reps // 3) if mod is fallback else reps)
        r = sess.run(cost) / n / exact
        rows.append(
            (
                f"EMD B={bsz} N={n}",
                name,
                f"{t:.1f}",
                "-",
                f"{t / t_exact:.2f}x",
                f"{r.mean():.3f} (mean), {r.min():.3f}-{r.max():.3f}",
            )
        )
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    use_graph_mode()
    if tf_ops.backend() != "compiled":
        print(f"compiled tf_ops not available ({tf_ops.load_error()}); run: python tf_ops/build.py", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    bsz, n = args.batch, args.points
    rows = []
    with tf.Session() as sess:
        rows += chamfer_rows(sess, rng, bsz, n, n, args.reps, f"B={bsz} N=M={n}")
        rows += chamfer_rows(
            sess,
            rng,
            4,
            4096,
            n,
            max(5, args.reps // 2),
            f"B=4 4096x{n} (projection loss)",
            with_kdtree=False,
            with_broadcast=False,
        )
        rows += emd_rows(sess, rng, bsz, n, args.reps)
    print(f"tf_ops benchmark: CPU, {os.cpu_count()} cores, TensorFlow {tf.__version__}, median of {args.reps} runs\n")
    print("| task | implementation | forward ms | fwd+bwd ms | time vs first row | cost / exact EMD |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    from utils.common import cli

    cli.exit_with("bench_ops", main)
