"""The training loop shared by rgb/ and partseg/.

``main(task, argv)`` parses the shared flags (utils.config), prepares the
experiment folder (utils.experiment), builds the one graph (utils.model) and
trains with Adam, logging to TensorBoard, log.txt and a progress bar. Every
``save_n`` iterations it validates (scaled Chamfer on the val split), keeps the
best model and writes projection pictures; every ``save_model_n`` iterations it
writes a snapshot. Re-running the same command resumes from the latest
snapshot: the step counter, the weights, Adam's state and -- because batch k is
a pure function of (seed, k) -- the data order continue where they stopped.
"""
import math
import os
import time

import numpy as np

from utils import config, projection, visualize
from utils.data import BatchPipeline
from utils.experiment import BEST, SNAPSHOTS, Experiment
from utils.model import build_graph
from utils.tfv1 import tf


def _scalar_summary(values):
    return tf.Summary(value=[tf.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])


def _session_config():
    cfg = tf.ConfigProto()
    cfg.gpu_options.allow_growth = True
    return cfg


def prepare(args, task):
    """Create/validate the experiment folder and store args.json. Returns the Experiment."""
    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
    exp = Experiment(args.exp)
    task.resolve_args(args)
    if os.path.isfile(exp.path(config.ARGS_FILE)):
        config.check_compatible(config.load_train_args(exp.root), args)
    config.save_args(args, exp.root)
    return exp


def _pipeline(args, task, split, start_step=0, shuffle=True, view_mode=None):
    return BatchPipeline(args.data_dir, args.category, split, task=task.name, batch_size=args.batch_size,
                         n_views=args.N_VIEWS, img_h=args.IMG_H, img_w=args.IMG_W,
                         view_mode=view_mode or args.views, use_input_view=args.CORR, shuffle=shuffle,
                         seed=args.seed, num_workers=args.num_workers, start_step=start_step)


class _Trainer:
    def __init__(self, args, task, exp):
        self.args, self.task, self.exp = args, task, exp
        resume = exp.pointer(SNAPSHOTS)
        self.start_step = resume["step"] if resume else 0
        self.train_data = _pipeline(args, task, "train", start_step=self.start_step)
        self.val_data = _pipeline(args, task, "val", shuffle=False, view_mode="fixed")
        probe = self.val_data.get_batch(0)
        n_gt = probe["pcl"].shape[1]
        self.n_val = max(1, min(args.val_batches, len(self.val_data) // args.batch_size))

        tf.set_random_seed(args.seed)
        self.g = g = build_graph(args, task, args.batch_size, n_gt_pts=n_gt)
        self.global_step = tf.train.get_or_create_global_step()
        train_vars = tf.trainable_variables("recon_net")
        self.train_op = tf.train.AdamOptimizer(args.lr, beta1=0.9).minimize(
            g.loss, global_step=self.global_step, var_list=train_vars)
        self.saver = tf.train.Saver(tf.global_variables(), max_to_keep=None)
        V = args.N_VIEWS
        with tf.name_scope("images"):
            gt_view = tf.reshape(g.ph[task.view_key], [-1] + g.ph[task.view_key].shape.as_list()[2:])
            pictures = tf.concat([
                tf.image.grayscale_to_rgb(tf.reshape(g.ph["mask"], [-1, args.IMG_H, args.IMG_W, 1])[:V]),
                tf.image.grayscale_to_rgb(g.pred_mask[:V, :, :, None]),
                task.display_gt(gt_view)[:V], task.display(g.proj)[:V]], axis=2)
            self.image_summary = tf.summary.merge([
                tf.summary.image("input", g.ph["image"][:1]),
                tf.summary.image("views_gtmask_predmask_gtfeat_predfeat", pictures, max_outputs=V)])
        best = exp.pointer(BEST)
        self.best_value = best["value"] if best and "value" in best else math.inf

    def validate(self, sess, step, writer, echo):
        keys = sorted(self.g.terms)
        sums = dict.fromkeys(keys + ["chamfer", "chamfer_fwd", "chamfer_bwd"], 0.0)
        for k in range(self.n_val):
            batch = self.val_data.get_batch(k)
            terms, val = sess.run([self.g.terms, self.g.val], self.g.feed(batch))
            for key in keys:
                sums[key] += terms[key] / self.n_val
            for key in ("chamfer", "chamfer_fwd", "chamfer_bwd"):
                sums[key] += float(np.mean(val[key])) / self.n_val
            if k == 0:
                self._save_pictures(sess, batch, step, writer)
        writer.add_summary(_scalar_summary({f"val/{k}": v for k, v in sums.items()}), step)
        msg = f"val @ {step}: chamfer {sums['chamfer']:.4f} (fwd {sums['chamfer_fwd']:.4f}, bwd {sums['chamfer_bwd']:.4f})"
        if sums["chamfer"] < self.best_value:
            self.best_value = sums["chamfer"]
            self.exp.save(self.saver, sess, step, kind=BEST, extra={"value": self.best_value})
            msg += "  [new best, saved]"
        self.exp.log(msg, echo)

    def _save_pictures(self, sess, batch, step, writer):
        g, task, V = self.g, self.task, self.args.N_VIEWS
        fd = g.feed(batch)
        pred_mask, proj, summ = sess.run([g.pred_mask, g.proj, self.image_summary], fd)
        writer.add_summary(summ, step)
        folder = self.exp.path("log_proj_images", f"{step:07d}")
        for b in range(min(4, self.args.batch_size)):
            row = [batch["image"][b]]
            for v in range(min(V, 2)):
                row += [batch["mask"][b, v], pred_mask[b * V + v],
                        task.display_np(batch[task.view_key][b, v], gt=True),
                        task.display_np(proj[b * V + v], gt=False)]
            name = str(batch["model_id"][b]).replace("/", "_")
            visualize.save_image_row(os.path.join(folder, f"{b}_{name}.png"), row)

    def run(self):
        args, exp, g = self.args, self.exp, self.g
        from tqdm import tqdm
        with tf.Session(config=_session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            step = 0
            if self.start_step:
                prefix, step = exp.checkpoint("latest")
                self.saver.restore(sess, prefix)
                step = int(sess.run(self.global_step))
            train_writer = tf.summary.FileWriter(exp.path("logs", "train"), sess.graph if step == 0 else None)
            val_writer = tf.summary.FileWriter(exp.path("logs", "val"))
            bar = tqdm(total=args.N_ITERS, initial=step, disable=args.no_progress, dynamic_ncols=True,
                       desc=f"train {self.task.name}", unit="it")
            echo = bar.write if not args.no_progress else print
            exp.log(("resumed at" if step else "started at") + f" iteration {step}; "
                    f"{len(self.train_data)} training models, {self.n_val} validation batches; "
                    f"projection: {projection.resolve_impl(args.projection)}", echo)
            running, count, since = {}, 0, time.time()
            try:
                while step < args.N_ITERS:
                    batch = next(self.train_data)
                    _, terms = sess.run([self.train_op, g.terms], g.feed(batch))
                    step += 1
                    if not np.isfinite(terms["total"]):
                        raise FloatingPointError(
                            f"loss became {terms['total']} at iteration {step} ({terms}); "
                            f"lower --lr or check the data. Last snapshot: {exp.pointer(SNAPSHOTS)}")
                    for k, v in terms.items():
                        running[k] = running.get(k, 0.0) + float(v)
                    count += 1
                    bar.update(1)
                    if step % 10 == 0 or step == args.N_ITERS:
                        bar.set_postfix(loss=f"{running['total'] / count:.4f}", bce=f"{running['bce'] / count:.3f}",
                                        feat=f"{running['feat'] / count:.4f}")
                    if step % args.print_n == 0 or step == args.N_ITERS:
                        means = {k: v / count for k, v in running.items()}
                        train_writer.add_summary(_scalar_summary({f"train/{k}": v for k, v in means.items()}), step)
                        rate = count / max(time.time() - since, 1e-9)
                        exp.log(f"iter {step}: " + "  ".join(f"{k} {v:.5f}" for k, v in sorted(means.items()))
                                + f"  ({rate:.1f} it/s)", echo)
                        running, count, since = {}, 0, time.time()
                    if step % args.save_n == 0 or step == args.N_ITERS:
                        self.validate(sess, step, val_writer, echo)
                    if step % args.save_model_n == 0 or step == args.N_ITERS:
                        exp.save(self.saver, sess, step)
            except KeyboardInterrupt:
                exp.save(self.saver, sess, step)
                exp.log(f"interrupted: snapshot saved at iteration {step}; re-run the same command to resume", echo)
                raise
            finally:
                bar.close()
                train_writer.close()
                val_writer.close()
                self.train_data.close()
                self.val_data.close()
            exp.log(f"finished: {step} iterations; best validation Chamfer {self.best_value:.4f}", echo)
        return step


def main(task, argv=None):
    """Entry point of train_<task>.py: parse, prepare the experiment, train."""
    args = config.train_parser(task.name).parse_args(argv)
    exp = prepare(args, task)
    graph = tf.Graph()
    with graph.as_default():
        return _Trainer(args, task, exp).run()
