"""Inference throughput of a trained model (utils/eval/inference.py) on the CPU, batch 1 vs batch 32.

    python benchmarks/bench_predict.py --task rgb             # default architecture, random weights
    python benchmarks/bench_predict.py --exp experiments/demo_rgb --snapshot best

Speed does not depend on the weights, so without ``--exp`` a throw-away experiment with the
default architecture (64x64 input, 1024 points) is written to a temporary folder and restored
like a trained one. Per batch size, in one process (TensorFlow's default thread pools, all
cores visible, no GPU):

* network: images/s of the session alone, ``batch / median(sess.run time)`` over ``--reps``
  runs after two warm-up runs;
* end to end: images/s for ``--images`` 64x64 PNG files read, run and written as PLY (what
  ``predict_*.py --no_sheet`` does per image), median over 3 passes;
* and once: seconds per PNG sheet (input + cloud from 4 angles, matplotlib) and per GIF.

Prints a markdown table with the batch-32 / batch-1 ratios.
"""

import argparse
import os
import statistics
import tempfile
import time

import cv2
import numpy as np

from utils.common.tfv1 import tf, use_graph_mode
from utils.eval import inference
from utils.experiment import Experiment
from utils.model import GraphSettings, build_graph
from utils.task import as_task, available_tasks, task_from_ref, task_ref
from utils.train import config


def make_untrained_experiment(folder, task, seed=0):
    """An experiment folder with the default architecture and freshly initialised weights
    (``task``: a Task or its name; flags that depend on the data, such as partseg's number of
    parts, are resolved by the task for the default category)."""
    task = as_task(task)
    args = task.resolve_args(config.train_parser(task).parse_args(["--exp", folder, "--seed", str(seed)]))
    args.task_module = task_ref(task)["task_module"]
    exp = Experiment(folder)
    config.save_args(args, exp.root)
    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        build_graph(GraphSettings.from_args(args, task), task, 1, training=False)
        saver = tf.train.Saver(tf.global_variables("recon_net"))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            exp.save(saver, sess, 0)
    return folder


def network_images_per_s(pred, reps):
    H, W = pred.image_size
    images = np.random.default_rng(0).random((pred.batch_size, H, W, 3), dtype=np.float32)
    for _ in range(2):
        pred.predict(images)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        pred.predict(images)
        times.append(time.perf_counter() - t0)
    return pred.batch_size / statistics.median(times)


def end_to_end_images_per_s(pred, task, files, out_dir):
    H, W = pred.image_size
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for start in range(0, len(files), pred.batch_size):
            chunk = files[start : start + pred.batch_size]
            images = np.stack([inference.load_image(f, H, W) for f in chunk])
            xyz, feat = pred.predict(images)
            for i, f in enumerate(chunk):
                inference.write_outputs(
                    out_dir, os.path.basename(f)[:-4], images[i], xyz[i], feat[i], task, sheet=False
                )
        times.append(time.perf_counter() - t0)
    return len(files) / statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", default=None, help="a trained experiment (default: untrained, default architecture)")
    p.add_argument("--snapshot", default="latest")
    p.add_argument("--task", choices=available_tasks(), help="the task of the untrained model (without --exp)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--images", type=int, default=64, help="PNG files for the end-to-end measurement")
    args = p.parse_args(argv)
    if not args.exp and not args.task:
        p.error("give --exp (a trained experiment) or --task (an untrained model of that task)")
    use_graph_mode()

    with tempfile.TemporaryDirectory() as tmp:
        exp = args.exp or make_untrained_experiment(os.path.join(tmp, "exp"), args.task)
        targs = config.load_train_args(exp)
        task_name = targs.task
        task = task_from_ref(task_name, getattr(targs, "task_module", None))
        rng = np.random.default_rng(1)
        files = []
        for k in range(args.images):
            files.append(os.path.join(tmp, f"img_{k:03d}.png"))
            cv2.imwrite(files[-1], rng.integers(0, 256, (targs.IMG_H, targs.IMG_W, 3), dtype=np.uint8))
        rows = []
        for B in args.batches:
            with inference.Predictor(exp, task, args.snapshot, batch_size=B) as pred:
                rows.append(
                    (
                        B,
                        network_images_per_s(pred, args.reps),
                        end_to_end_images_per_s(pred, task, files, os.path.join(tmp, "out")),
                    )
                )
                if B == args.batches[0]:
                    H, W = pred.image_size
                    img = inference.load_image(files[0], H, W)
                    xyz, feat = pred.predict(img[None])
                    t0 = time.perf_counter()
                    inference.write_outputs(os.path.join(tmp, "pics"), "x", img, xyz[0], feat[0], task, sheet=True)
                    t_sheet = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    inference.write_outputs(
                        os.path.join(tmp, "pics"), "y", img, xyz[0], feat[0], task, sheet=False, gif=True
                    )
                    t_gif = time.perf_counter() - t0

    print(
        f"\nInference throughput ({task_name}, {targs.IMG_H}x{targs.IMG_W} input, {targs.N_PTS} points, CPU, "
        f"{os.cpu_count()} cores visible, {'trained: ' + exp if args.exp else 'untrained weights'})\n"
    )
    print(f"| batch | network (images/s) | read + network + PLY (images/s) | network vs batch {rows[0][0]} |")
    print("| --- | --- | --- | --- |")
    for B, net, e2e in rows:
        ratio = "" if B == rows[0][0] else f"{net / rows[0][1]:.1f}x"
        print(f"| {B} | {net:,.1f} | {e2e:,.1f} | {ratio} |")
    print(
        f"\nPNG sheet (input + 4 views, matplotlib): {t_sheet:.2f} s per image; turntable GIF: {t_gif:.2f} s per image."
    )
    return rows


if __name__ == "__main__":
    from utils.common import cli

    cli.exit_with("bench_predict", lambda argv: main(argv) and 0)
