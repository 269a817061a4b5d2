"""The task: the one extension point of DIFFER, and the registry that finds a task by name.

A *task* (``rgb.task.TASK``, ``partseg.task.TASK``) supplies everything that differs between
colour and part reconstruction: its flags, its targets in the batch pipeline, its losses and
network output, its metrics, pictures and inference outputs (see :class:`Task`). Shared code
never branches on a task's name; it calls the hooks below. Adding a task means one new folder
``<name>/`` with a ``task.py`` that defines ``TASK = MyTask()`` (and thin entry points that pass
it to ``utils.train.loop.main``, ``utils.eval.evaluate.main``, ``utils.eval.inference.main``).

The registry: training records the task's name and module in ``args.json`` (keys ``task`` and
``task_module``, :func:`task_ref`); code that starts from an experiment folder finds the task
again with :func:`task_from_ref` (which imports that module). ``<name>`` alone means the module
``<name>.task``. This module imports no TensorFlow, so listing tasks stays quick.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: this module imports neither numpy nor TensorFlow
    import numpy as np

    from utils.common.tfv1 import tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASK_FILE = "task.py"  # a folder of the repository holding this file is a task


class Task:
    """What a task must provide: the interface between the shared code and ``rgb/``, ``partseg/``.

    Subclassed in rgb/task.py (``RGBTask``) and partseg/task.py (``PartsegTask``); each module's
    ``TASK`` is the one instance the entry points pass around. Data attributes describe the
    task; the methods below are the hooks, in groups. A hook that raises NotImplementedError
    here must be provided by every task; the others have a default.

    Attributes:
        name: the task's name (also its folder: ``<name>/task.py``), e.g. 'rgb'.
        view_key: batch key of the per-view GT feature maps (e.g. 'rgb').
        point_key: batch key of the GT per-point features (e.g. 'pcl_rgb').
        view_dtype, point_dtype: dtypes of those placeholders (a TF dtype or its name).
        feature_dims: trailing dimensions of one GT pixel / point feature: (3,) for a colour,
            () for a part label.
        activation: output activation of the feature branch ('sigmoid', 'softmax' or None).
        weight_flag: the training flag weighting the task's 2D feature loss (e.g. 'wt_rgb').
        headline: the metrics printed first in tables (e.g. ('chamfer', 'emd', 'colour')).
        data_tree: sub-folder of the data root that holds the task's tree
            (utils.data.layout.tree_dirs); '' = the data root itself.
        presets: {preset name: {flag: value}} for the task's own flags (merged into
            utils.train.config.RECOMMENDED / ORIGINAL).
        architecture_flags: the task's flags that fix the graph (resume and metrics must agree).
        metric_phrase: what the feature metric is, for the metrics' --help ('colour error').
        output_phrase: adjective of the predicted clouds, for predict's --help ('coloured').
        ply_phrase: what the PLY holds besides the points ('coloured').
        feature_phrase: what the exported 'features' output means ('colours in [0, 1]').
        baseline_label: a line describing the task's image-blind baseline (ablation tables).
    """

    name = view_key = point_key = None
    view_dtype = point_dtype = "float32"
    feature_dims = ()
    activation = None
    weight_flag = None
    headline = ("chamfer", "emd")
    data_tree = ""
    presets = {}
    architecture_flags = ()
    metric_phrase = "feature metrics"
    output_phrase = "feature-carrying"
    ply_phrase = "coloured"
    feature_phrase = "per-point features"
    baseline_label = "image-blind baseline (training medoid)"

    # -- flags (utils.train.config) -------------------------------------------------------
    def add_train_flags(self, groups: dict[str, argparse._ArgumentGroup]) -> None:
        """Add the task's training flags.

        Args:
            groups: dict of argparse argument groups of the training parser by title:
                'loss weights' and 'network'. Flags without a default there take theirs from
                :attr:`presets`.
        """
        raise NotImplementedError

    def add_metrics_flags(self, parser: argparse.ArgumentParser) -> None:
        """Add the task's own flags to the metrics parser (none by default)."""

    def resolve_args(self, args: argparse.Namespace) -> argparse.Namespace:
        """Fill in flag values that depend on the data (e.g. partseg's ``--n_cls 0``).

        Args:
            args: the training Namespace; left unchanged.
        Returns:
            a new namespace (a copy of ``args`` by default).
        """
        return copy.copy(args)

    # -- data (utils.data.pipeline.BatchPipeline) ------------------------------------------
    def data_options(self, args: argparse.Namespace) -> dict[str, Any]:
        """The pipeline options the training flags give this task (keyword arguments of
        BatchPipeline that it passes to :meth:`open_data`); none by default."""
        return {}

    def open_data(self, pipe: Any, **options: Any) -> None:
        """Called once by a BatchPipeline of this task (``options``: :meth:`data_options`), to
        read what its targets need (e.g. the number of parts). Nothing by default."""
        if options:
            raise TypeError(f"task {self.name} takes no pipeline options, got {sorted(options)}")

    def load_targets(self, pipe: Any, model: int, views: list[int], masks: np.ndarray) -> dict[str, np.ndarray]:
        """The task's targets of one sample, numpy (the pipeline stacks them into the batch).

        Args:
            pipe: the BatchPipeline (``pipe.model_dir(kind, model)`` with kind 'rendered',
                'pcl' or 'labels'; ``pipe.img_h``, ``pipe.img_w``, ``pipe.n_pts``).
            model: int, index of the model in ``pipe.models``.
            views: list of int, the V supervision views.
            masks: float32 (V, H, W) silhouettes in {0, 1} of those views.
        Returns:
            dict: ``view_key`` -> (V, H, W) + feature_dims, ``point_key`` -> (n_pts,) + feature_dims.
            Integer arrays become int32 in the batch, others float32.
        """
        raise NotImplementedError

    def load_resampled_targets(self, pipe: Any, model: int) -> dict[str, np.ndarray]:
        """The per-point targets of the second, independent sampling of the model's surface (the
        floor row; ``*_resample*.npy``, data/README.md): dict ``point_key`` -> (n_pts,) +
        feature_dims, or {} (the default) when the task has none."""
        return {}

    # -- graph hooks (utils.model.build_graph, the training pictures) ---------------------
    def n_feat(self, args: argparse.Namespace) -> int:
        """C, the per-point feature width the network predicts, from the (resolved) flags."""
        raise NotImplementedError

    def feat_activation(self) -> str | None:
        """The feature branch's output activation (:attr:`activation`)."""
        return self.activation

    def weight(self, args: argparse.Namespace) -> float:
        """The weight of the task's 2D feature loss (the flag :attr:`weight_flag`)."""
        return getattr(args, self.weight_flag)

    def project(
        self, pix: tf.Tensor, feat: tf.Tensor, *, img_h: int, img_w: int, well_radius: float, beta: float, impl: str
    ) -> tf.Tensor:
        """Depth-aware feature projection.

        Args:
            pix: float32 (B, N, 3) row, col (px), depth (camera.project).
            feat: float32 (B, N, C) predicted features.
            img_h, img_w: int, image size (px); well_radius: float, half-width of the depth
                well (px); beta: float, softmax sharpness over 1/(depth+1); impl: 'fused',
                'local', 'dense' or 'auto' (utils.render.projection).
        Returns:
            float32 (B, H, W, C') projected map.
        """
        raise NotImplementedError

    def view_loss(self, proj: tf.Tensor, gt_view: tf.Tensor) -> tf.Tensor:
        """Scalar loss between a projected map (B, H, W, C') and GT maps (B, H, W) + feature_dims."""
        raise NotImplementedError

    def feature_loss_3d(self, feat: tf.Tensor, gt_feat: tf.Tensor, idx_fwd: tf.Tensor, idx_bwd: tf.Tensor) -> tf.Tensor:
        """Scalar 3D feature loss through nearest neighbours (``--USE_3D_LOSS``).

        Args:
            feat: float32 (B, N, C) predicted features; gt_feat: (B, N_gt) + feature_dims.
            idx_fwd: int32 (B, N_gt), nearest predicted point of each GT point.
            idx_bwd: int32 (B, N), nearest GT point of each predicted point.
        """
        raise NotImplementedError

    def display(self, proj: tf.Tensor) -> tf.Tensor:
        """(B, H, W, C') projected map -> float32 (B, H, W, 3) picture in [0, 1] (TensorBoard)."""
        raise NotImplementedError

    def display_gt(self, gt_view: tf.Tensor) -> tf.Tensor:
        """(B, H, W) + feature_dims GT maps -> float32 (B, H, W, 3) picture in [0, 1] (TensorBoard)."""
        raise NotImplementedError

    def display_np(self, view: np.ndarray, gt: bool) -> np.ndarray:
        """Numpy twin of :meth:`display` (``gt=False``, a projected map (H, W, C')) and of
        :meth:`display_gt` (``gt=True``, a GT map) -> (H, W, 3) in [0, 1] (PNG pictures)."""
        raise NotImplementedError

    # -- evaluation hooks (utils.eval.evaluate, utils.eval.inference) ----------------------
    def point_colours(self, feat: np.ndarray) -> np.ndarray:
        """(N, C) predicted features -> (N, 3) colours in [0, 1] for pictures and PLY files."""
        raise NotImplementedError

    def gt_point_colours(self, gt_feat: np.ndarray) -> np.ndarray:
        """(N,) + feature_dims GT features -> (N, 3) colours in [0, 1]."""
        raise NotImplementedError

    def point_properties(self, feat: np.ndarray) -> dict[str, np.ndarray]:
        """(N, C) predicted features -> dict name -> (N,) extra PLY vertex properties (none by default)."""
        return {}

    def legend(self, data_dir: str, category: str, n_feat: int) -> list[tuple[str, np.ndarray]] | None:
        """[(name, colour (3,) in [0, 1])] drawn beside prediction pictures; None (default): no legend.

        Args:
            data_dir, category: the experiment's data root and category (args.json).
            n_feat: int, C, the feature width the network predicts.
        """
        return None

    def feature_metrics(
        self, gt_feat: np.ndarray, feat: np.ndarray, idx_fwd: np.ndarray, idx_bwd: np.ndarray, margs: argparse.Namespace
    ) -> dict[str, np.ndarray]:
        """Per-sample feature metrics through nearest-neighbour correspondences.

        Args:
            gt_feat: (B, N_gt) + feature_dims numpy; feat: (B, N, C) numpy predictions.
            idx_fwd (B, N_gt), idx_bwd (B, N): from utils.metrics.cloud_metrics.
            margs: the metrics Namespace (task-specific options, e.g. --freq_wt).
        Returns:
            dict name -> (B,) numpy array.
        """
        raise NotImplementedError

    def group_feature_metrics(
        self, gt_feat: np.ndarray, feat: np.ndarray, idx_fwd: np.ndarray, groups: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Feature errors over groups of ground-truth points (the side record of the demo data,
        utils.metrics.side_groups), forward only: each GT point against its nearest predicted point.

        Args:
            gt_feat: (B, N_gt) + feature_dims numpy; feat: (B, N, C) numpy predictions.
            idx_fwd: (B, N_gt) nearest predicted point of each GT point.
            groups: dict group name -> bool (B, N_gt).
        Returns:
            dict metric name -> (B,) numpy array (NaN where a sample's group is empty); {} (the
            default) when the task reports none.
        """
        return {}

    def baselines(
        self, train_clouds: np.ndarray, train_feats: np.ndarray, medoid: int, n_feat: int
    ) -> list[tuple[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]]]:
        """Predictors that ignore the image, scored beside the model.

        Args:
            train_clouds: float32 (M, N_gt, 3) training clouds; train_feats: (M, N_gt) + feature_dims.
            medoid: int, index of the training medoid cloud (utils.metrics.medoid_index).
            n_feat: int, C, the feature width the network predicts (:meth:`n_feat`).
        Returns:
            list of (name, fn): ``fn(pred_xyz (B, N, 3), pred_feat (B, N, C))`` returns the
            baseline's (xyz (B, N', 3), features (B, N', C)).
        """
        raise NotImplementedError


# --------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------
def task_ref(task: Task) -> dict[str, str]:
    """What args.json records of ``task``: {'task': name, 'task_module': module defining it}."""
    return dict(task=task.name, task_module=type(task).__module__)


def task_from_ref(name: str, module: str | None = None) -> Task:
    """The task called ``name``, defined in ``module`` (default ``<name>.task``).

    The module is imported and searched for a :class:`Task` instance of that name (its ``TASK``
    first). Raises ValueError naming what was looked for when there is none.
    """
    if not name:
        raise ValueError("no task name (args.json must hold 'task', written by training)")
    module = module or f"{name}.{TASK_FILE[:-3]}"
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise ValueError(
            f"task {name!r}: cannot import its module {module!r} ({err}); tasks found: "
            f"{', '.join(available_tasks()) or 'none'}"
        ) from None
    candidates = [getattr(mod, "TASK", None)] + list(vars(mod).values())
    for obj in candidates:
        if isinstance(obj, Task) and obj.name == name:
            return obj
    raise ValueError(f"module {module!r} defines no Task named {name!r} (expected TASK = {name.title()}Task())")


def as_task(task: Task | str) -> Task:
    """A :class:`Task` from a task or a task name (looked up with :func:`task_from_ref`)."""
    return task if isinstance(task, Task) else task_from_ref(task)


def available_tasks(root: str = ROOT) -> list[str]:
    """Names of the task folders of the repository: top-level folders holding ``task.py`` (but
    ``utils/``, whose task.py is this interface), sorted."""
    here = os.path.basename(os.path.dirname(os.path.abspath(__file__)))
    return sorted(
        d
        for d in os.listdir(root)
        if not d.startswith((".", "_")) and d != here and os.path.isfile(os.path.join(root, d, TASK_FILE))
    )
