"""Speed of one training step, and where its time goes, for each projection implementation.

Usage::

    python benchmarks/bench_train_step.py                 # demo configuration: local vs fused,
                                                          # plus dense vs local vs fused at a small size
    python benchmarks/bench_train_step.py --quick         # fewer repeats, no small-size section

Each (implementation, configuration) runs in its own process (``sys.executable``), one after
the other, on the same data and with the same seed. A worker builds the rgb training graph of
``utils/model.py`` with ``--projection <impl>`` and the demo's flags (``run_demo.sh``: B = 8
objects x V = 4 views, N = 1024 points, 64 x 64, ``--skipconn --wt_aff_pts 1 --wt_decay 0.1``,
Adam), first trains ``--train_first`` steps (so the cloud is roughly in shape, as during most of
a run: the backward affinity's search depends on how far the ground-truth pixels are from the
cloud), then times, each as the median of ``--repeats`` ``sess.run`` calls on a few fixed
batches (fed from memory: the data pipeline is the same for every implementation and not
counted):

* the full step (``train_op``: forward, backward, Adam) -> it/s;
* the network's forward pass, the gradients of the whole loss (no optimiser), so the optimiser
  is the difference;
* every 2D part of the loss alone, forward + backward w.r.t. the network's outputs (xyz and
  colours fed as values from the network): the camera transform, each projection, each loss
  term (BCE and forward affinity include the mask projection, the colour L2 the feature
  projection), and all of them together as in the training loss. "2D share" = that last one
  over the full step.

Implementations: ``fused``, ``local``, ``dense`` (``--projection``), and ``before``: ``local``
with the backward affinity as it was before the fused kernels (a brute-force nearest-point
query through ``tf_ops.nn_distance``, both directions, copied here), i.e. the training step
the fused kernels are measured against.

Noise: the workers run one after the other, ``--rounds`` times in turn; every number in the
table is the smallest over the rounds (the run least disturbed by other work on the machine),
each a median of ``--repeats`` runs. Ratios are "this implementation's time / fused's".

Data: the data set in ``--data_dir`` (default ``data/``) when it has the category, else a
small demo data set generated into a temporary folder (about 10 s). Threads: TensorFlow's
default, as in training (all cores), unless ``--threads``.
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
SMALL = dict(batch=2, views=2, n_pts=256, size=32)  # where dense fits in memory
COMPONENTS = [  # (key, label)
    ("camera", "camera transform (world -> pixels)"),
    ("mask_proj", "mask projection"),
    ("feat_proj", "feature (rgb) projection"),
    ("bce", "BCE (incl. mask projection)"),
    ("aff_fwd", "forward affinity (incl. mask projection)"),
    ("aff_bwd", "backward affinity"),
    ("aff_pts", "point affinity"),
    ("feat", "rgb L2 (incl. feature projection)"),
    ("all_2d", "all 2D terms together (as in the loss)"),
]


def _affinity_bwd_before(pix, gt_mask, max_dist_sq=None):
    """utils.losses.affinity_bwd as it was before the fused kernels: the nearest point of every
    pixel by brute force (tf_ops.nn_distance between all pixel centres and all points, which
    also computes the unused other direction). Same values and gradients as today's."""
    import numpy as np

    import tf_ops
    from utils.tfv1 import tf

    pix = tf.convert_to_tensor(pix)
    gt = tf.cast(gt_mask, pix.dtype)
    img_h, img_w = int(gt.shape[1]), int(gt.shape[2])
    if max_dist_sq is None:
        max_dist_sq = float(img_h * img_h + img_w * img_w)
    rows, cols = tf.meshgrid(tf.range(img_h), tf.range(img_w), indexing="ij")
    grid = tf.cast(tf.stack([tf.reshape(rows, [-1]), tf.reshape(cols, [-1]), tf.zeros([img_h * img_w], tf.int32)],
                            -1), pix.dtype)
    grid = tf.tile(grid[None], [tf.shape(pix)[0], 1, 1])  # (B, H*W, 3)
    points = tf.concat([pix[..., :2], tf.zeros_like(pix[..., 2:])], -1)
    bound = float(max(img_h, img_w)) + 2.0 * np.sqrt(max_dist_sq)
    points = tf.clip_by_value(points, -bound, bound)
    dist, _, _, _ = tf_ops.nn_distance(grid, points)
    dist = tf.minimum(tf.reshape(dist, tf.shape(gt)), max_dist_sq)
    return tf.reduce_mean(gt * dist)


def _demo_flags(cfg, impl, data_dir, exp):
    return ["--exp", exp, "--data_dir", data_dir, "--category", "chair", "--projection", impl,
            "--batch_size", str(cfg["batch"]), "--N_VIEWS", str(cfg["views"]), "--N_PTS", str(cfg["n_pts"]),
            "--IMG_H", str(cfg["size"]), "--IMG_W", str(cfg["size"]), "--lr", "3e-4", "--wt_aff_pts", "1.0",
            "--wt_decay", "0.1", "--wt_rgb", "1.0", "--skipconn", "--seed", "7"]


def _median_ms(sess, fetches, feeds, repeats):
    for k in range(2):  # warm-up
        sess.run(fetches, feeds[k % len(feeds)])
    times = []
    for k in range(repeats):
        t0 = time.perf_counter()
        sess.run(fetches, feeds[k % len(feeds)])
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _components(args, task, g, batch_size):
    """The 2D parts of the loss rebuilt on placeholders for the network's outputs.

    Returns (placeholders xyz, feat; dict key -> gradient tensors w.r.t. both)."""
    from utils import camera, losses, projection
    from utils.model import AFFINITY_SCALE, _flatten_views, _repeat_views
    from utils.tfv1 import tf

    B, V, H, W = batch_size, args.N_VIEWS, args.IMG_H, args.IMG_W
    xyz = tf.placeholder(tf.float32, g.xyz.shape, "bench_xyz")
    feat = tf.placeholder(tf.float32, g.feat.shape, "bench_feat")
    ph = g.ph
    pix = camera.project(_repeat_views(xyz, V), _flatten_views(ph["az"]), _flatten_views(ph["el"]), H, W)
    feat_v = _repeat_views(feat, V)
    gt_mask = _flatten_views(ph["mask"])
    dist = _flatten_views(ph["dist"])
    mask = projection.mask_projection(pix, H, W, args.SIGMA_SQ_MASK, impl=args.projection)
    proj = task.project(pix, feat_v, args)
    import numpy as np
    weights = tf.constant(np.random.default_rng(1).uniform(size=proj.shape.as_list()).astype(np.float32))
    terms = dict(
        camera=tf.reduce_sum(pix * tf.constant([1e-3, 1e-3, 1.0])),
        mask_proj=tf.reduce_sum(mask * gt_mask),
        feat_proj=tf.reduce_sum(proj * weights),
        bce=losses.mask_bce(mask, gt_mask),
        aff_fwd=losses.affinity_fwd(mask, dist),
        aff_bwd=losses.affinity_bwd(pix, gt_mask),
        aff_pts=losses.affinity_points(pix, dist),
        feat=task.view_loss(proj, _flatten_views(ph[task.view_key])),
    )
    terms["all_2d"] = (args.wt_bce * terms["bce"]
                       + AFFINITY_SCALE * (args.wt_aff_fwd * terms["aff_fwd"] + args.wt_aff_bwd * terms["aff_bwd"])
                       + args.wt_aff_pts * terms["aff_pts"] + task.weight(args) * terms["feat"])
    grads = {k: [x for x in tf.gradients(t, [xyz, feat]) if x is not None] for k, t in terms.items()}
    return xyz, feat, grads


def worker(impl, cfg, data_dir, repeats, train_first, threads):
    """Build, train briefly, time; print one JSON line."""
    import numpy as np

    from rgb.net import TASK
    from utils import config, projection
    from utils.data import BatchPipeline
    from utils.model import build_graph
    from utils.tfv1 import tf

    from utils import losses

    if impl == "before":
        losses.affinity_bwd = _affinity_bwd_before  # utils.model and _components look it up at build time
    with tempfile.TemporaryDirectory() as exp:
        args = config.train_parser("rgb").parse_args(
            _demo_flags(cfg, "local" if impl == "before" else impl, data_dir, exp))
    resolved = projection.resolve_impl(args.projection)
    B = args.batch_size
    pipe = BatchPipeline(data_dir, "chair", "train", task="rgb", batch_size=B, n_views=args.N_VIEWS,
                         img_h=args.IMG_H, img_w=args.IMG_W, seed=args.seed, num_workers=1)
    batches = [pipe.get_batch(k) for k in range(max(4, min(train_first, 64)))]
    pipe.close()
    tf.set_random_seed(args.seed)
    g = build_graph(args, TASK, B, n_gt_pts=batches[0]["pcl"].shape[1])
    train_vars = tf.trainable_variables("recon_net")
    grads = tf.gradients(g.loss, train_vars)
    train_op = tf.train.AdamOptimizer(args.lr, beta1=0.9).apply_gradients(zip(grads, train_vars))
    xyz_ph, feat_ph, comp = _components(args, TASK, g, B)
    config_proto = tf.ConfigProto()
    if threads:
        config_proto.intra_op_parallelism_threads = threads
        config_proto.inter_op_parallelism_threads = threads
    out = dict(impl=impl, resolved=resolved, cfg=cfg, repeats=repeats, train_first=train_first)
    with tf.Session(config=config_proto) as sess:
        sess.run(tf.global_variables_initializer())
        t0 = time.perf_counter()
        losses = []
        for k in range(train_first):
            _, loss = sess.run([train_op, g.loss], g.feed(batches[k % len(batches)]))
            losses.append(float(loss))
        out["train_first_s"] = time.perf_counter() - t0
        out["loss_first_last"] = [losses[0], losses[-1]] if losses else []
        timed = batches[:4]
        feeds = [g.feed(b) for b in timed]
        out["step_ms"] = _median_ms(sess, train_op, feeds, repeats)
        out["net_fwd_ms"] = _median_ms(sess, [g.xyz, g.feat], feeds, repeats)
        out["loss_fwd_ms"] = _median_ms(sess, g.loss, feeds, repeats)
        out["grads_ms"] = _median_ms(sess, grads, feeds, repeats)
        # the component graphs, fed with the network's current outputs
        comp_feeds = []
        for fd in feeds:
            xyz_v, feat_v = sess.run([g.xyz, g.feat], fd)
            comp_feeds.append({**fd, xyz_ph: xyz_v, feat_ph: feat_v})
        out["components_ms"] = {k: _median_ms(sess, comp[k], comp_feeds, repeats) for k, _ in COMPONENTS}
        assert all(np.all(np.isfinite(v)) for v in sess.run(comp["all_2d"], comp_feeds[0]))
    print(json.dumps(out))


def _ensure_data(data_dir):
    """(data dir, temporary dir or None): the given data set, or a small generated one."""
    from utils.data import has_dataset
    if has_dataset(data_dir, "chair", "rgb"):
        return data_dir, None
    from utils.demo_data import generate
    tmp = tempfile.TemporaryDirectory(prefix="bench_train_step_")
    print(f"# no chair data set in {data_dir}: generating a small demo set in {tmp.name}", file=sys.stderr, flush=True)
    generate(tmp.name, categories=["chair"], n_models=24, workers=1, progress=False)
    return tmp.name, tmp


def _run(impl, cfg, data_dir, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", impl, json.dumps(cfg), "--data_dir", data_dir,
           "--repeats", str(args.repeats), "--train_first", str(args.train_first), "--threads", str(args.threads)]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-3:]
        print(f"# {impl} {cfg}: FAILED\n" + "\n".join(tail), file=sys.stderr, flush=True)
        return None
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"# done {impl} {cfg} in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return res


def _best(runs):
    """Per measurement, the smallest value over the rounds of one implementation."""
    out = dict(runs[0])
    for key in ("step_ms", "net_fwd_ms", "loss_fwd_ms", "grads_ms"):
        out[key] = min(r[key] for r in runs)
    out["components_ms"] = {k: min(r["components_ms"][k] for r in runs) for k in runs[0]["components_ms"]}
    out["step_ms_all"] = [round(r["step_ms"], 1) for r in runs]
    return out


def _table(results):
    """Markdown table: one column per implementation, then "time / fused's" for the others."""
    ref = next((r for r in results if r["impl"] == "fused"), results[-1])
    others = [r for r in results if r is not ref]
    rows = [("full training step", lambda r: r["step_ms"]),
            ("network forward", lambda r: r["net_fwd_ms"]),
            ("forward of the whole loss (network + all terms)", lambda r: r["loss_fwd_ms"]),
            ("gradients of the whole loss (no optimiser)", lambda r: r["grads_ms"]),
            ("optimiser (Adam) = step - gradients", lambda r: r["step_ms"] - r["grads_ms"])]
    rows += [(f"{label}, fwd+bwd", (lambda k: lambda r: r["components_ms"][k])(key)) for key, label in COMPONENTS]
    head = ("| | " + " | ".join(f"{r['impl']}" for r in results) + " | "
            + " | ".join(f"{r['impl']} / {ref['impl']}" for r in others) + " |")
    lines = [head, "| --- |" + " --- |" * (len(results) + len(others))]
    lines.append("| training speed (it/s) | " + " | ".join(f"{1e3 / r['step_ms']:.1f}" for r in results) + " | "
                 + " | ".join(f"{r['step_ms'] / ref['step_ms']:.2f}x" for r in others) + " |")
    for label, fn in rows:
        ratios = [f"{fn(r) / fn(ref):.1f}x" if fn(ref) > 0.05 and fn(r) > 0.05 else "" for r in others]
        lines.append(f"| {label} (ms) | " + " | ".join(f"{fn(r):.1f}" for r in results) + " | "
                     + " | ".join(ratios) + " |")
    lines.append("| 2D terms / full step | " + " | ".join(
        f"{100 * r['components_ms']['all_2d'] / r['step_ms']:.0f}%" for r in results) + " |"
        + " |" * len(others))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impls", nargs="+", default=["before", "local", "fused"],
                   help="implementations at the demo size (before, local, fused, dense)")
    p.add_argument("--small_impls", nargs="+", default=["dense", "local", "fused"],
                   help="implementations at the small size (B=2, V=2, N=256, 32x32)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs per measurement (median)")
    p.add_argument("--rounds", type=int, default=3, help="times each worker runs (the smallest value counts)")
    p.add_argument("--train_first", type=int, default=200, help="training steps before timing")
    p.add_argument("--threads", type=int, default=0, help="TF intra/inter-op threads (0: TF's default)")
    p.add_argument("--data_dir", default=os.path.join(ROOT, "data"))
    p.add_argument("--quick", action="store_true", help="10 repeats, 1 round, 50 training steps first, no small size")
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "CFG"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker[0], json.loads(args.worker[1]), args.data_dir, args.repeats, args.train_first,
               args.threads)
        return 0
    if args.quick:
        args.repeats, args.rounds, args.train_first, args.small_impls = 10, 1, 50, []
    data_dir, tmp = _ensure_data(args.data_dir)
    try:
        for cfg, impls in [(DEMO, args.impls), (SMALL, args.small_impls)]:
            if not impls:
                continue
            runs = {i: [] for i in impls}
            for _ in range(args.rounds):
                for impl in impls:
                    res = _run(impl, cfg, data_dir, args)
                    if res is not None:
                        runs[impl].append(res)
            results = [_best(r) for r in runs.values() if r]
            if not results:
                continue
            print(f"\nB={cfg['batch']} objects x V={cfg['views']} views, N={cfg['n_pts']}, "
                  f"{cfg['size']}x{cfg['size']}, rgb; smallest over {args.rounds} round(s) of the median of "
                  f"{args.repeats} runs, after {args.train_first} training steps; threads: "
                  f"{args.threads or 'TF default'}; full step per round: "
                  + "; ".join(f"{r['impl']} {r['step_ms_all']}" for r in results))
            print()
            print(_table(results))
            sys.stdout.flush()
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
