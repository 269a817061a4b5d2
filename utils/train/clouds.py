"""Point clouds in TensorBoard: a run's predictions, to turn in the browser as training goes.

At every validation the trainer writes, beside the scalars and pictures of ``<exp>/logs/val``, the
predicted clouds of the first :data:`CLOUD_SAMPLES` samples of the validation set (``val_set.json``:
fixed for the experiment) as summaries of TensorBoard's mesh plugin (its MESH dashboard), and once
per training process their ground-truth clouds. Tags: ``clouds/<k>_<model>_view<v>/prediction`` and
``.../ground_truth`` (sorted side by side); points carry the task's colours (rgb: the colours,
partseg: the part colours, :meth:`utils.task.Task.point_colours`). Clouds are drawn as the pictures
draw them: scaled to the unit cube (the prediction's box measured on coordinates clipped to
``visualize.PICTURE_BOX_CLIP``), in the ShapeNet frame (y up, TensorBoard's up axis).

The cost is one forward pass of the validation graph on those samples and about 15 kB of event file
per cloud (1024 points); the trainer times it and reports its share of the run (log.txt).
"""

import time

import numpy as np

from utils import metrics
from utils.common import visualize
from utils.data import shapenet

CLOUD_SAMPLES = 4  # validation samples whose clouds are written at every validation
POINT_SIZE = 0.012  # three.js PointsMaterial size, in units of the unit cube the clouds are scaled to
TAG = "clouds"


def upright(xyz, box_clip=None):
    """float (N, 3) renderer-frame cloud -> float32 (N, 3) scaled to the unit cube (box measured on
    coordinates clipped to +-``box_clip`` when given), in the ShapeNet frame (y up)."""
    return shapenet.undo_preprocess_pcl_gt(metrics.scale_to_unit_cube_np(xyz, box_clip)).astype(np.float32)


def cloud_tag(k, model_id, view, which):
    """``clouds/<k>_<model>_view<v>/<which>``, which: 'prediction' or 'ground_truth'."""
    name = str(model_id).replace("/", "_")
    return f"{TAG}/{k}_{name}_view{int(view)}/{which}"


def mesh_summary(tag, xyz, colours, description=""):
    """One cloud as a serialized ``Summary`` of TensorBoard's mesh plugin (``FileWriter.add_summary``
    takes it as is).

    Args:
        xyz: float (N, 3) points; colours: float (N, 3) in [0, 1].
    """
    from tensorboard.plugins.mesh import summary_v2

    rgb = (np.clip(np.asarray(colours, np.float64), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    summary = summary_v2.mesh_pb(
        tag,
        np.asarray(xyz, np.float32)[None],
        colors=rgb[None],
        config_dict=dict(material=dict(cls="PointsMaterial", size=POINT_SIZE)),
        description=description,
    )
    return summary.SerializeToString()


class CloudSummaries:
    """The clouds of the first ``n`` validation-set samples, written at each validation.

    Args:
        task: the Task (its point colours). vg: the validation graph (utils.model.build_validation_graph:
            ``ph['image']`` with a static batch size, ``xyz``, ``feat``).
        first_batch: the validation set's first batch (a BatchPipeline batch: image, pcl, the task's
            point features, model_id, input_view, valid).
        n: samples (at most the batch's valid ones); none, with ``note`` saying why, when TensorBoard
            is not installed.
    """

    def __init__(self, task, vg, first_batch, n=CLOUD_SAMPLES):
        n = min(int(n), int(np.sum(first_batch["valid"])))
        self.note = None  # why no clouds are written, for the log
        try:
            from tensorboard.plugins.mesh import summary_v2  # noqa: F401
        except ImportError as err:
            n = 0
            self.note = (
                f"no clouds in TensorBoard: the tensorboard package cannot be imported ({err}); "
                "pip install -r requirements.txt"
            )
        self.task, self.vg, self.n = task, vg, n
        batch_size = vg.ph["image"].shape.as_list()[0]
        images = first_batch["image"][:n]
        # padded to the graph's static batch size with copies of the last sample
        self.images = np.concatenate([images, np.repeat(images[-1:], batch_size - n, axis=0)]) if n else images
        self.names = [(k, str(first_batch["model_id"][k]), int(first_batch["input_view"][k])) for k in range(n)]
        self.gt = [
            (upright(first_batch["pcl"][k]), task.gt_point_colours(first_batch[task.point_key][k])) for k in range(n)
        ]
        self.gt_written = False

    def write(self, sess, writer, step):
        """Predict the samples' clouds and write them (and, the first time, the ground truth) at
        ``step``; returns the seconds it took."""
        if not self.n:
            return 0.0
        start = time.time()
        xyz, feat = sess.run([self.vg.xyz, self.vg.feat], {self.vg.ph["image"]: self.images})
        for (k, model_id, view), (gt_xyz, gt_col) in zip(self.names, self.gt):
            what = f"model {model_id}, input view {view} (validation set sample {k})"
            shown = upright(xyz[k], visualize.PICTURE_BOX_CLIP)
            writer.add_summary(
                mesh_summary(
                    cloud_tag(k, model_id, view, "prediction"),
                    shown,
                    self.task.point_colours(feat[k]),
                    f"Predicted cloud of {what}, unit cube, y up.",
                ),
                step,
            )
            if not self.gt_written:
                writer.add_summary(
                    mesh_summary(
                        cloud_tag(k, model_id, view, "ground_truth"), gt_xyz, gt_col, f"Ground truth of {what}."
                    ),
                    step,
                )
        self.gt_written = True
        writer.flush()
        return time.time() - start
