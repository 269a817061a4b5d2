"""The batch pipeline: deterministic, prefetching batches of (image, views, cloud) (numpy only)."""
import math
import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from utils.data.distance_map import gt_distance_transform
from utils.data.layout import (N_GT_PTS, PCL_COLOURS_FILE, DataError, PCL_FILE, PCL_LABELS_FILE, VIEW_MODES, VIEWS_FILE,
                               _synset, check_views_match_renders, depth_file, label_map_file, list_models, n_parts,
                               render_file, task_dirs)
from utils.data.readers import (read_cloud, read_cloud_colours, read_cloud_labels, read_label_map, read_mask,
                                read_rgb, read_views)

# Salt of the seed of each epoch's sample order, rng([seed, epoch, EPOCH_ORDER_SALT]): it keeps that
# stream apart from the per-sample generators, rng([seed, step, i]) with i < batch size.
EPOCH_ORDER_SALT = 0x5EED
CACHED_EPOCH_ORDERS = 4  # permutations kept in memory (an epoch boundary may fall inside a batch)


class BatchPipeline:
    """Batches of (input image, V supervision views, ground-truth cloud) for one category/split.

    Entry points and scripts build it from the training flags with :meth:`from_args`.
    Sizes: ``n_models``, ``n_samples`` (per epoch) and ``steps_per_epoch``; there is no
    ``len()``, which could be read as any of them.

    Determinism: batch ``step`` depends only on ``(seed, step)`` and the data.
    The samples (one per model, or one per (model, view) pair with
    ``all_input_views``) form an endless stream of epochs; epoch ``e`` visits
    them in the order of a permutation seeded by ``(seed, e)`` (identity when
    ``shuffle=False``), and batch ``step`` takes stream positions
    ``[step*B, (step+1)*B)`` (an epoch boundary may fall inside a batch).
    Per sample ``i`` of batch ``step``, a generator seeded by ``(seed, step, i)``
    draws the input view (unless ``all_input_views``) and, with
    ``view_mode='random'``, the supervision views. A run resumed with
    ``start_step=s`` therefore sees exactly the batches of an uninterrupted run.

    Views: ``view_mode='fixed'`` supervises with views 0..V-1 (modulo the
    model's view count, as the original); ``'random'`` with V distinct views
    drawn at random (repeated only when V exceeds the count).
    ``use_input_view=True`` makes the first supervision view the input view
    (with V=1 this is the original's ``--CORR``).

    Checks (DataError naming the file): ``view.txt`` has one finite
    'azimuth elevation' line per ``render_k.png``; part labels (partseg) lie in
    ``0..n_cls`` (label maps) and ``1..n_cls`` (point labels), ``n_cls`` being
    the number of parts of the category when not given.

    Iteration (``next(pipeline)``, ``for batch in pipeline``) yields batches
    ``start_step, start_step+1, ...`` computed ahead by ``num_workers`` threads
    (``prefetch`` batches in flight), forever; with ``repeat=False`` it yields one
    pass over the samples (``steps_per_epoch`` batches) and stops. The last batch
    of a pass is **padded** to ``batch_size`` by repeating its last sample; the
    key ``'valid'`` (bool, (B,)) marks the real samples. ``get_batch(step)``
    computes any batch synchronously (padding applies when ``repeat=False``).

    Batch dict (numpy): 'image' float32 (B,H,W,3) in [0,1]; 'input_az',
    'input_el' float32 (B,) radians; 'input_view' int32 (B,); 'views' int32
    (B,V); 'mask' float32 (B,V,H,W) in {0,1}; 'dist' float32 (B,V,H,W) squared
    px distance to the nearest foreground pixel (:mod:`utils.data.distance_map`); 'az', 'el' float32 (B,V)
    radians; 'pcl' float32 (B,N,3) renderer frame; task rgb: 'rgb' float32
    (B,V,H,W,3) in [0,1], background 0, and 'pcl_rgb' float32 (B,N,3); task
    partseg: 'labels' int32 (B,V,H,W) (0 background, k part k) and
    'pcl_labels' int32 (B,N) (0-based); 'model_id' str (B,); 'valid' bool (B,).
    """

    def __init__(self, data_dir, category, split, task="rgb", batch_size=1, n_views=1, img_h=64, img_w=64,
                 n_pts=N_GT_PTS, view_mode="random", use_input_view=False, shuffle=True, seed=0, num_workers=2,
                 prefetch=4, start_step=0, repeat=True, all_input_views=False, n_cls=None):
        if view_mode not in VIEW_MODES:
            raise ValueError(f"view_mode must be one of {VIEW_MODES}, got {view_mode!r}")
        if batch_size < 1 or n_views < 1:
            raise ValueError("batch_size and n_views must be >= 1")
        if seed < 0 or start_step < 0:
            raise ValueError("seed and start_step must be >= 0")
        self.data_dir, self.task, self.split = data_dir, task, split
        self.category, self.synset = category, _synset(category)
        self.batch_size, self.n_views = int(batch_size), int(n_views)
        self.img_h, self.img_w, self.n_pts = int(img_h), int(img_w), int(n_pts)
        self.view_mode, self.use_input_view = view_mode, bool(use_input_view)
        self.shuffle, self.seed, self.repeat = bool(shuffle), int(seed), bool(repeat)
        self.all_input_views = bool(all_input_views)
        self.dirs = task_dirs(data_dir, task)
        self.models = list_models(data_dir, category, split, task)
        if task == "partseg" and not n_cls:
            n_cls = n_parts(data_dir, category)
        self.n_cls = int(n_cls) if task == "partseg" else None
        self._angles = {}
        self._angles_lock = threading.Lock()
        self._perms, self._perm_lock = {}, threading.Lock()
        if self.all_input_views:
            self.samples = [(m, v) for m in range(len(self.models)) for v in range(len(self._views_deg(m)))]
        else:
            self.samples = [(m, None) for m in range(len(self.models))]
        self._check_first_model()

        self.num_workers, self.prefetch = max(0, int(num_workers)), max(1, int(prefetch))
        self._executor = ThreadPoolExecutor(self.num_workers, "batch") if self.num_workers else None
        self._pending = deque()
        self._next_step = self._next_submit = int(start_step)
        self._closed = False

    @classmethod
    def from_args(cls, args, task, split, **overrides):
        """The pipeline the training flags describe, for ``split``.

        Args:
            args: the training Namespace (``utils.train.config.parse_train_args`` or args.json): reads
                data_dir, category, batch_size, N_VIEWS, IMG_H, IMG_W, views, CORR, seed,
                num_workers, input_views and (partseg) n_cls.
            task: 'rgb' or 'partseg'.
            split: 'train', 'val' or 'test'.
            overrides: constructor arguments that replace the mapped ones (e.g. ``shuffle=False,
                repeat=False, view_mode='fixed', batch_size=1, start_step=k``).
        """
        kw = dict(task=task, batch_size=args.batch_size, n_views=args.N_VIEWS, img_h=args.IMG_H, img_w=args.IMG_W,
                  view_mode=args.views, use_input_view=args.CORR, seed=args.seed, num_workers=args.num_workers,
                  all_input_views=args.input_views == "all", n_cls=getattr(args, "n_cls", None) or None)
        kw.update(overrides)
        return cls(args.data_dir, args.category, split, **kw)

    # ---------------------------------------------------------------- sizes
    @property
    def n_models(self):
        """Models in the split (a model has one sample, or one per input view with ``all_input_views``)."""
        return len(self.models)

    @property
    def n_samples(self):
        """Samples per epoch: models, or (model, view) pairs with ``all_input_views``."""
        return len(self.samples)

    @property
    def steps_per_epoch(self):
        """Batches per pass over the samples (the last one possibly padded)."""
        return math.ceil(self.n_samples / self.batch_size)

    # ---------------------------------------------------------------- files
    def _model_dir(self, key, m):
        return os.path.join(self.dirs[key], self.synset, self.models[m])

    def _views_deg(self, m):
        """The model's view angles, degrees (V, 2); read once, then cached."""
        with self._angles_lock:
            angles = self._angles.get(m)
        if angles is None:
            path = os.path.join(self._model_dir("rendered", m), VIEWS_FILE)
            angles = read_views(path)
            check_views_match_renders(path, len(angles))
            with self._angles_lock:
                self._angles[m] = angles
        return angles

    def _check_first_model(self):
        """Fail early (in the caller's thread) when the first model is incomplete."""
        self._load_sample(0, 0, 0)

    # ---------------------------------------------------------------- sampling
    def _sample_index(self, step, i):
        """Index into ``samples`` of item ``i`` of batch ``step`` (and whether it is padding)."""
        n, pos = self.n_samples, step * self.batch_size + i
        if self.repeat:
            valid = True
            epoch, k = divmod(pos, n)
        else:  # one pass; positions past its end repeat the last sample (padding)
            valid = pos < n
            epoch, k = 0, min(pos, n - 1)
        if self.shuffle:
            k = int(self._permutation(epoch)[k])
        return k, valid

    def _permutation(self, epoch):
        """Sample order of an epoch, seeded by (seed, epoch); the last few are cached."""
        with self._perm_lock:
            perm = self._perms.get(epoch)
            if perm is None:
                perm = np.random.default_rng([self.seed, epoch, EPOCH_ORDER_SALT]).permutation(self.n_samples)
                if len(self._perms) >= CACHED_EPOCH_ORDERS:
                    self._perms.pop(next(iter(self._perms)))
                self._perms[epoch] = perm
            return perm

    def _choose_views(self, rng, n_avail, input_view):
        V = self.n_views
        if self.view_mode == "fixed":
            views = [v % n_avail for v in range(V)]
        else:
            views = []
            while len(views) < V:
                views.extend(rng.permutation(n_avail).tolist())
            views = views[:V]
        if self.use_input_view:
            rest = [v for v in views if v != input_view]
            views = ([input_view] + rest)[:V]
            views += [views[j % len(views)] for j in range(V - len(views))]
        return views

    def _load_sample(self, step, i, k):
        m, input_view = self.samples[k]
        angles = self._views_deg(m)
        n_avail = len(angles)
        if self.n_views > n_avail and self.view_mode == "random":  # distinct views ('fixed' wraps, as the original)
            raise DataError(f"--N_VIEWS {self.n_views}: {os.path.join(self._model_dir('rendered', m), VIEWS_FILE)} "
                            f"lists {n_avail} views; expected --N_VIEWS <= {n_avail} (distinct supervision views)")
        rng = np.random.default_rng([self.seed, step, i])
        if input_view is None:
            input_view = int(rng.integers(n_avail))
        views = self._choose_views(rng, n_avail, input_view)
        rdir, pdir = self._model_dir("rendered", m), self._model_dir("pcl", m)
        H, W = self.img_h, self.img_w
        out = dict(image=read_rgb(os.path.join(rdir, render_file(input_view)), H, W),
                   input_view=input_view, views=np.array(views, np.int32),
                   input_az=np.radians(angles[input_view, 0]), input_el=np.radians(angles[input_view, 1]),
                   az=np.radians(angles[views, 0]), el=np.radians(angles[views, 1]),
                   model_id=self.models[m])
        masks = np.stack([read_mask(os.path.join(rdir, depth_file(v)), H, W) for v in views])
        out["mask"] = masks
        out["dist"] = gt_distance_transform(masks)
        out["pcl"] = read_cloud(os.path.join(pdir, PCL_FILE), self.n_pts)
        if self.task == "rgb":
            out["rgb"] = np.stack([read_rgb(os.path.join(rdir, render_file(v)), H, W) for v in views])
            out["rgb"] *= masks[..., None]
            out["pcl_rgb"] = read_cloud_colours(os.path.join(pdir, PCL_COLOURS_FILE), self.n_pts)
        else:
            ldir = self._model_dir("labels", m)
            lab = []
            for v in views:
                path = os.path.join(ldir, label_map_file(v))
                if not os.path.isfile(path):  # some copies keep the label maps beside the renders
                    alt = os.path.join(rdir, label_map_file(v))
                    path = alt if os.path.isfile(alt) else path
                lab.append(read_label_map(path, H, W, self.n_cls))
            out["labels"] = np.stack(lab)
            out["pcl_labels"] = read_cloud_labels(os.path.join(pdir, PCL_LABELS_FILE), self.n_pts, self.n_cls)
        return out

    def get_batch(self, step):
        """Batch number ``step`` (a pure function of seed, step and the data), computed now."""
        items, valid = [], []
        for i in range(self.batch_size):
            k, ok = self._sample_index(step, i)
            items.append(self._load_sample(step, i, k))
            valid.append(ok)
        batch = {}
        for key in items[0]:
            vals = [it[key] for it in items]
            if key == "model_id":
                batch[key] = np.array(vals, dtype=str)
            elif key in ("labels", "pcl_labels", "views", "input_view"):
                batch[key] = np.asarray(vals, np.int32)
            else:
                batch[key] = np.asarray(vals, np.float32)
        batch["valid"] = np.array(valid, bool)
        return batch

    # ---------------------------------------------------------------- iteration
    def _end(self):
        return None if self.repeat else self.steps_per_epoch

    def _fill(self):
        end = self._end()
        while len(self._pending) < self.prefetch and (end is None or self._next_submit < end):
            self._pending.append(self._executor.submit(self.get_batch, self._next_submit))
            self._next_submit += 1

    def __iter__(self):
        return self

    def __next__(self):
        if self._closed:
            raise RuntimeError("BatchPipeline is closed")
        end = self._end()
        if end is not None and self._next_step >= end:
            raise StopIteration
        if self._executor is None:
            batch = self.get_batch(self._next_step)
        else:
            self._fill()
            batch = self._pending.popleft().result()  # re-raises a worker's DataError here
            self._fill()
        self._next_step += 1
        return batch

    def close(self):
        """Stop the worker threads (pending batches are dropped)."""
        if self._closed:
            return
        self._closed = True
        if self._executor is not None:
            for fut in self._pending:
                fut.cancel()
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        # A pipeline dropped without close() stops its threads here. Nothing is swallowed: Python
        # reports an error raised in __del__ ("Exception ignored in ...") on stderr.
        if getattr(self, "_closed", True) is False:
            self.close()
