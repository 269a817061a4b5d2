"""Speed of one training step, and where its time goes, for each projection implementation.

Usage::

    python benchmarks/bench_train_step.py --task rgb          # demo size: before / local / fused,
                                                              # plus dense / local / fused at a small size
    python benchmarks/bench_train_step.py --task rgb --quick  # 1 round, fewer repeats, no small size

Implementations: ``fused``, ``local``, ``dense`` (``--projection``), and ``before``: ``local``
with the backward affinity as it was before the fused kernels (a brute-force nearest-point
query through ``tf_ops.nn_distance``, both directions; copied here), i.e. the training step the
fused kernels replace.

Each measurement runs in its own process (``sys.executable``), one after the other, on the same
data and seed. A worker builds the training graph of ``utils/model.py`` of the task ``--task``
with the demo's flags (``run_demo.sh``: B = 8 objects x V = 4 views, N = 1024 points, 64 x 64,
the recommended defaults, among them ``--wt_aff_pts 1 --wt_decay 0.1`` and the task's own, Adam),
trains ``--train_first`` steps (so the cloud is roughly
in shape, as during most of a run: the backward affinity's search depends on how far the
ground-truth pixels are from the cloud), then takes the median of ``--repeats`` ``sess.run``
calls on a few fixed batches (fed from memory: the data pipeline is the same for every
implementation and not counted) of:

* the full step (``train_op``: forward, backward, Adam);
* the network's forward pass, the network's forward + backward alone (the gradient of
  sum(xyz) + sum(colours) w.r.t. its weights), the gradients of the whole loss (so Adam is the
  step minus those);
* every 2D part of the loss alone, forward + backward w.r.t. the network's outputs (fed as
  values from the network): the camera transform, each projection, each loss term (BCE and
  forward affinity include the mask projection, the colour L2 the feature projection), and
  all of them together as in the loss ("2D share" = that over the full step).

Two kinds of worker per implementation and round: one on ONE thread timing the CPU time of the
process (the work done, robust against other jobs on a shared machine: the table's breakdown),
one with TensorFlow's default threads (all cores, as in training) timing the full step's wall
clock (the it/s row: what training sees, but noisy when the machine is shared). Every number is
the smallest over ``--rounds`` rounds. Ratios are "this implementation's time / fused's".

Data: the data set in ``--data_dir`` (default ``data/``) when it has the chair category, else a
small demo data set generated into a temporary folder (about 10 s).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = dict(batch=8, views=4, n_pts=1024, size=64)
SMALL = dict(batch=2, views=2, n_pts=256, size=64)  # where dense fits in memory (the renders are 64x64)
COMPONENTS = [  # (key, label)
    ("camera", "camera transform (world -> pixels)"),
    ("mask_proj", "mask projection"),
    ("feat_proj", "feature projection (the task's)"),
    ("bce", "BCE (incl. mask projection)"),
    ("aff_fwd", "forward affinity (incl. mask projection)"),
    ("aff_bwd", "backward affinity"),
    ("aff_pts", "point affinity"),
    ("feat", "the task's feature loss (incl. feature projection)"),
    ("all_2d", "all 2D terms together (as in the loss)"),
]


def _affinity_bwd_before(pix, gt_mask, max_dist_sq=None):
    """utils.losses.affinity_bwd as it was before the fused kernels: the nearest point of every
    pixel by brute force (tf_ops.nn_distance between all pixel centres and all points, which
    also computes the unused other direction). Same values and gradients as today's."""
    import numpy as np

    from utils.common.tfv1 import tf

    import tf_ops

    pix = tf.convert_to_tensor(pix)
    gt = tf.cast(gt_mask, pix.dtype)
    img_h, img_w = int(gt.shape[1]), int(gt.shape[2])
    if max_dist_sq is None:
        max_dist_sq = float(img_h * img_h + img_w * img_w)
    rows, cols = tf.meshgrid(tf.range(img_h), tf.range(img_w), indexing="ij")
    grid = tf.cast(
        tf.stack([tf.reshape(rows, [-1]), tf.reshape(cols, [-1]), tf.zeros([img_h * img_w], tf.int32)], -1), pix.dtype
    )
    grid = tf.tile(grid[None], [tf.shape(pix)[0], 1, 1])  # (B, H*W, 3)
    points = tf.concat([pix[..., :2], tf.zeros_like(pix[..., 2:])], -1)
    bound = float(max(img_h, img_w)) + 2.0 * np.sqrt(max_dist_sq)
    points = tf.clip_by_value(points, -bound, bound)
    dist, _, _, _ = tf_ops.nn_distance(grid, points)
    dist = tf.minimum(tf.reshape(dist, tf.shape(gt)), max_dist_sq)
    return tf.reduce_mean(gt * dist)


def _demo_flags(cfg, impl, data_dir, exp):
    return [
        "--exp",
        exp,
        "--data_dir",
        data_dir,
        "--category",
        "chair",
        "--projection",
        impl,
        "--batch_size",
        str(cfg["batch"]),
        "--N_VIEWS",
        str(cfg["views"]),
        "--N_PTS",
        str(cfg["n_pts"]),
        "--IMG_H",
        str(cfg["size"]),
        "--IMG_W",
        str(cfg["size"]),
        "--lr",
        "3e-4",
        "--wt_aff_pts",
        "1.0",
        "--wt_decay",
        "0.1",
        "--seed",
        "7",
    ]  # the task's own flags: their recommended values


def _median_ms(sess, fetch, feeds, repeats):
    """(wall ms, process CPU ms): medians over ``repeats`` runs after two warm-up runs."""
    for k in range(2):
        sess.run(fetch, feeds[k % len(feeds)])
    wall, cpu = [], []
    for k in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        sess.run(fetch, feeds[k % len(feeds)])
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu)


def _scalar(tf, tensors):
    """One cheap scalar that depends on all ``tensors`` (fetching them would time their copies)."""
    return tf.add_n([tf.reduce_sum(t) for t in tensors])


def _components(settings, task, g):
    """The 2D parts of the loss, built by the graph builder's own functions (utils.model.render_views,
    loss_terms_2d, loss_weights_2d) on placeholders for the network's outputs.

    Returns (placeholders xyz, feat; dict key -> a scalar that needs the term's gradients w.r.t. both)."""
    import numpy as np

    from utils.common.tfv1 import tf
    from utils.model import _flatten_views, loss_terms_2d, loss_weights_2d, render_views

    xyz = tf.placeholder(tf.float32, g.xyz.shape, "bench_xyz")
    feat = tf.placeholder(tf.float32, g.feat.shape, "bench_feat")
    ph = g.ph
    pix, mask, proj = render_views(settings, task, xyz, feat, ph["az"], ph["el"])
    gt_mask = _flatten_views(ph["mask"])
    terms = loss_terms_2d(
        settings, task, pix, mask, proj, gt_mask, _flatten_views(ph["dist"]), _flatten_views(ph[task.view_key])
    )
    weights = tf.constant(np.random.default_rng(1).uniform(size=proj.shape.as_list()).astype(np.float32))
    terms.update(
        camera=tf.reduce_sum(pix * tf.constant([1e-3, 1e-3, 1.0])),
        mask_proj=tf.reduce_sum(mask * gt_mask),
        feat_proj=tf.reduce_sum(proj * weights),
    )
    terms["all_2d"] = tf.add_n([w * terms[name] for w, name in loss_weights_2d(settings) if w])
    grads = {k: _scalar(tf, [x for x in tf.gradients(t, [xyz, feat]) if x is not None]) for k, t in terms.items()}
    return xyz, feat, grads


def worker(task_name, impl, cfg, data_dir, repeats, train_first, threads, step_only=False):
    """Build, train briefly, time; print one JSON line. ``threads``: 0 = TF's default."""
    import numpy as np

    from utils import losses
    from utils.common.tfv1 import tf
    from utils.data import BatchPipeline
    from utils.model import GraphSettings, build_graph
    from utils.render import projection
    from utils.task import task_from_ref
    from utils.train import config

    TASK = task_from_ref(task_name)
    if impl == "before":
        losses.affinity_bwd = _affinity_bwd_before  # utils.model and _components look it up at build time
    with tempfile.TemporaryDirectory() as exp:
        args = config.train_parser(TASK).parse_args(
            _demo_flags(cfg, "local" if impl == "before" else impl, data_dir, exp)
        )
    resolved = projection.resolve_impl(args.projection)
    args = TASK.resolve_args(args)
    B = args.batch_size
    pipe = BatchPipeline(
        data_dir,
        "chair",
        "train",
        task=TASK,
        batch_size=B,
        n_views=args.N_VIEWS,
        img_h=args.IMG_H,
        img_w=args.IMG_W,
        seed=args.seed,
        num_workers=1,
    )
    batches = [pipe.get_batch(k) for k in range(max(4, min(train_first, 64)))]
    pipe.close()
    tf.set_random_seed(args.seed)
    settings = GraphSettings.from_args(args, TASK)
    g = build_graph(settings, TASK, B, n_gt_pts=batches[0]["pcl"].shape[1])
    train_vars = tf.trainable_variables("recon_net")
    grads = tf.gradients(g.loss, train_vars)
    train_op = tf.train.AdamOptimizer(args.lr, beta1=0.9).apply_gradients(zip(grads, train_vars))
    loss_grads = _scalar(tf, grads)
    net_grads = _scalar(tf, tf.gradients(tf.reduce_sum(g.xyz) + tf.reduce_sum(g.feat), train_vars))
    xyz_ph, feat_ph, comp = _components(settings, TASK, g)
    config_proto = tf.ConfigProto()
    if threads:
        config_proto.intra_op_parallelism_threads = threads
        config_proto.inter_op_parallelism_threads = threads
    out = dict(impl=impl, resolved=resolved, cfg=cfg, repeats=repeats, train_first=train_first, threads=threads)
    with tf.Session(config=config_proto) as sess:
        sess.run(tf.global_variables_initializer())
        t0 = time.perf_counter()
        loss_values = []
        for k in range(train_first):
            _, loss = sess.run([train_op, g.loss], g.feed(batches[k % len(batches)]))
            loss_values.append(float(loss))
        out["train_first_s"] = time.perf_counter() - t0
        out["loss_first_last"] = [loss_values[0], loss_values[-1]] if loss_values else []
        feeds = [g.feed(b) for b in batches[:4]]
        times = {"step": _median_ms(sess, train_op, feeds, repeats)}
        if not step_only:
            times["net_fwd"] = _median_ms(sess, [g.xyz, g.feat], feeds, repeats)
            times["net_fwd_bwd"] = _median_ms(sess, net_grads, feeds, repeats)
            times["loss_fwd"] = _median_ms(sess, g.loss, feeds, repeats)
            times["loss_grads"] = _median_ms(sess, loss_grads, feeds, repeats)
            # the 2D parts, fed with the network's current outputs
            comp_feeds = []
            for fd in feeds:
                xyz_v, feat_v = sess.run([g.xyz, g.feat], fd)
                comp_feeds.append({**fd, xyz_ph: xyz_v, feat_ph: feat_v})
            for key, _ in COMPONENTS:
                times[key] = _median_ms(sess, comp[key], comp_feeds, repeats)
            assert np.isfinite(sess.run(comp["all_2d"], comp_feeds[0]))
    out["wall_ms"] = {k: v[0] for k, v in times.items()}
    out["cpu_ms"] = {k: v[1] for k, v in times.items()}
    print(json.dumps(out))


def _ensure_data(data_dir, task_name):
    """(data dir, temporary dir or None): the given data set, or a small generated one."""
    from utils.data import has_dataset
    from utils.task import task_from_ref

    if has_dataset(data_dir, "chair", task_from_ref(task_name).data_tree):
        return data_dir, None
    from utils.datagen.demo_data import generate

    tmp = tempfile.TemporaryDirectory(prefix="bench_train_step_")
    print(f"# no chair data set in {data_dir}: generating a small demo set in {tmp.name}", file=sys.stderr, flush=True)
    generate(tmp.name, categories=["chair"], n_models=24, workers=1, progress=False)
    return tmp.name, tmp


def _run(impl, cfg, data_dir, args, threads, step_only):
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--task",
        args.task,
        "--worker",
        impl,
        json.dumps(cfg),
        "--data_dir",
        data_dir,
        "--repeats",
        str(args.repeats),
        "--train_first",
        str(args.train_first),
        "--threads",
        str(threads),
    ]
    if step_only:
        cmd.append("--step_only")
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        print(f"# {impl} {cfg} threads={threads}: FAILED\n" + "\n".join(tail), file=sys.stderr, flush=True)
        return None
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"# done {impl} {cfg} threads={threads or 'default'} in {time.time() - t0:.0f} s", file=sys.stderr, flush=True
    )
    return res


ROWS = [
    ("full training step", "step"),
    ("network forward", "net_fwd"),
    ("network forward + backward", "net_fwd_bwd"),
    ("forward of the whole loss", "loss_fwd"),
    ("gradients of the whole loss (no optimiser)", "loss_grads"),
]


def _table(cpu, wall):
    """Markdown table. cpu: impl -> smallest CPU ms per key (one thread); wall: impl -> full-step
    wall ms (default threads). One column per implementation, then "time / fused's"."""
    impls = list(cpu)
    ref = "fused" if "fused" in cpu else impls[-1]
    others = [i for i in impls if i != ref]

    def ratio(a, b):
        return f"{a / b:.1f}x" if a > 0.05 and b > 0.05 else ""

    lines = [
        "| one thread, CPU ms | " + " | ".join(impls) + " | " + " | ".join(f"{i} / {ref}" for i in others) + " |",
        "| --- |" + " --- |" * (len(impls) + len(others)),
    ]

    def row(label, values):
        lines.append(
            f"| {label} | "
            + " | ".join(f"{values[i]:.1f}" for i in impls)
            + " | "
            + " | ".join(ratio(values[i], values[ref]) for i in others)
            + " |"
        )

    for label, key in ROWS:
        row(label, {i: cpu[i][key] for i in impls})
    row("Adam = full step - gradients", {i: cpu[i]["step"] - cpu[i]["loss_grads"] for i in impls})
    for key, label in COMPONENTS:
        row(f"{label}, fwd+bwd", {i: cpu[i][key] for i in impls})
    lines.append(
        "| 2D terms / full step | "
        + " | ".join(f"{100 * cpu[i]['all_2d'] / cpu[i]['step']:.0f}%" for i in impls)
        + " |"
        + " |" * len(others)
    )
    if wall:
        lines.append(
            "| **training speed, wall clock, default threads (it/s)** | "
            + " | ".join(f"{1e3 / wall[i]:.1f}" if i in wall else "" for i in impls)
            + " | "
            + " | ".join(f"{wall[i] / wall[ref]:.2f}x" if i in wall and ref in wall else "" for i in others)
            + " |"
        )
    return "\n".join(lines)


def main(argv=None):
    from utils.task import available_tasks

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=available_tasks(), required=True, help="the task whose training step is timed")
    p.add_argument(
        "--impls",
        nargs="+",
        default=["before", "local", "fused"],
        help="implementations at the demo size (before, local, fused, dense)",
    )
    p.add_argument(
        "--small_impls",
        nargs="+",
        default=["dense", "local", "fused"],
        help="implementations at the small size (B=2, V=2, N=256, 64x64)",
    )
    p.add_argument("--repeats", type=int, default=30, help="timed runs per measurement (median)")
    p.add_argument("--rounds", type=int, default=2, help="times each worker runs (the smallest value counts)")
    p.add_argument("--train_first", type=int, default=200, help="training steps before timing")
    p.add_argument("--threads", type=int, default=0, help="threads of the wall-clock workers (0: TF's default)")
    p.add_argument("--data_dir", default=os.path.join(ROOT, "data"))
    p.add_argument("--quick", action="store_true", help="10 repeats, 1 round, 50 training steps first, no small size")
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "CFG"), help=argparse.SUPPRESS)
    p.add_argument("--step_only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        from utils.common.tfv1 import use_graph_mode

        use_graph_mode()
        worker(
            args.task,
            args.worker[0],
            json.loads(args.worker[1]),
            args.data_dir,
            args.repeats,
            args.train_first,
            args.threads,
            args.step_only,
        )
        return 0
    if args.quick:
        args.repeats, args.rounds, args.train_first, args.small_impls = 10, 1, 50, []
    data_dir, tmp = _ensure_data(args.data_dir, args.task)
    try:
        for cfg, impls, with_wall in [(DEMO, args.impls, True), (SMALL, args.small_impls, False)]:
            if not impls:
                continue
            cpu, wall, wall_all = {}, {}, {i: [] for i in impls}
            for _ in range(args.rounds):
                for impl in impls:
                    res = _run(impl, cfg, data_dir, args, threads=1, step_only=False)
                    if res is not None:
                        cpu[impl] = {k: min(v, cpu.get(impl, {}).get(k, v)) for k, v in res["cpu_ms"].items()}
                    if with_wall:
                        res = _run(impl, cfg, data_dir, args, threads=args.threads, step_only=True)
                        if res is not None:
                            wall_all[impl].append(round(res["wall_ms"]["step"], 1))
                            wall[impl] = min(wall_all[impl])
            if not cpu:
                continue
            print(
                f"\nB={cfg['batch']} objects x V={cfg['views']} views, N={cfg['n_pts']}, {cfg['size']}x{cfg['size']}, "
                f"{args.task}; after {args.train_first} training steps; medians of {args.repeats} runs, "
                f"the smallest of "
                f"{args.rounds} round(s)"
                + (
                    "; full step wall ms per round (default threads): "
                    + "; ".join(f"{i} {v}" for i, v in wall_all.items())
                    if with_wall
                    else ""
                )
            )
            print()
            print(_table(cpu, wall))
            sys.stdout.flush()
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    from utils.common import cli

    cli.exit_with("bench_train_step", main)
