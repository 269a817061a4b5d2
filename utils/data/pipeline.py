"""The batch pipeline: deterministic, prefetching batches of (image, views, cloud) (numpy only)."""

import math
import os
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from utils.common import atomic_io
from utils.data import cache as view_cache_mod
from utils.data.distance_map import gt_distance_transform
from utils.data.layout import (
    N_GT_PTS,
    PCL_FILE,
    PCL_SIDES_FILE,
    RESAMPLE_PCL_FILE,
    VIEW_MODES,
    VIEWS_FILE,
    _synset,
    check_views_match_renders,
    depth_file,
    list_models,
    render_file,
    tree_dirs,
)
from utils.data.readers import DataError, read_cloud, read_mask, read_point_sides, read_rgb, read_views

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
    ``pairs`` (a list of (model id, input view)) replaces the samples by exactly those pairs,
    in that order (the validation set, :mod:`utils.data.val_set`).

    Views: ``view_mode='fixed'`` supervises with views 0..V-1 (modulo the
    model's view count, as the original); ``'random'`` with V distinct views
    drawn at random (repeated only when V exceeds the count).
    ``use_input_view=True`` makes the first supervision view the input view
    (with V=1 this is the original's ``--CORR``).

    Checks (DataError naming the file): ``view.txt`` has one finite
    'azimuth elevation' line per ``render_k.png``; the task checks its own targets.

    The task (a :class:`utils.task.Task`, duck-typed: ``data_tree``, ``open_data``,
    ``load_targets``) decides which tree of the data root is read and adds its targets to
    each sample; without a task the batches hold the shared keys only. Keyword arguments
    the constructor does not know (``task_options``, e.g. partseg's ``n_cls``) go to
    ``task.open_data``.

    Iteration (``next(pipeline)``, ``for batch in pipeline``) yields batches
    ``start_step, start_step+1, ...`` computed ahead by ``num_workers`` threads
    (``prefetch`` batches in flight), forever; with ``repeat=False`` it yields one
    pass over the samples (``steps_per_epoch`` batches) and stops. The last batch
    of a pass is **padded** to ``batch_size`` by repeating its last sample; the
    key ``'valid'`` (bool, (B,)) marks the real samples. ``get_batch(step)``
    computes any batch synchronously (padding applies when ``repeat=False``).

    ``view_cache='auto'`` reads the decoded views from the packed cache of
    :mod:`utils.data.cache` (built or rebuilt at construction when missing,
    stale or damaged; in ``cache_dir``, default ``<data_dir>/.cache``) instead
    of decoding PNG files: the same batches, bit for bit, for less CPU. When
    the cache folder cannot be written (no space on its disk, read-only), it
    says so in one line and reads the PNG files. A chunk found damaged while
    reading (its CRC-32) rebuilds the cache before the batch is made.

    Batch dict (numpy): 'image' float32 (B,H,W,3) in [0,1]; 'input_az',
    'input_el' float32 (B,) radians; 'input_view' int32 (B,); 'views' int32
    (B,V); 'mask' float32 (B,V,H,W) in {0,1}; 'dist' float32 (B,V,H,W) squared
    px distance to the nearest foreground pixel (:mod:`utils.data.distance_map`); 'az', 'el' float32 (B,V)
    radians; 'pcl' float32 (B,N,3) renderer frame; 'model_id' str (B,); 'valid'
    bool (B,); and the task's targets (:meth:`utils.task.Task.load_targets`; integer
    arrays become int32, others float32), e.g. rgb's 'rgb' float32 (B,V,H,W,3) and
    'pcl_rgb' float32 (B,N,3).
    """

    def __init__(
        self,
        data_dir,
        category,
        split,
        task=None,
        batch_size=1,
        n_views=1,
        img_h=64,
        img_w=64,
        n_pts=N_GT_PTS,
        view_mode="random",
        use_input_view=False,
        shuffle=True,
        seed=0,
        num_workers=2,
        prefetch=4,
        start_step=0,
        repeat=True,
        all_input_views=False,
        pairs=None,
        view_cache="off",
        cache_dir=None,
        **task_options,
    ):
        if view_mode not in VIEW_MODES:
            raise ValueError(f"view_mode must be one of {VIEW_MODES}, got {view_mode!r}")
        if batch_size < 1 or n_views < 1:
            raise ValueError("batch_size and n_views must be >= 1")
        if seed < 0 or start_step < 0:
            raise ValueError("seed and start_step must be >= 0")
        if view_cache not in view_cache_mod.VIEW_CACHE_MODES:
            raise ValueError(f"view_cache must be one of {view_cache_mod.VIEW_CACHE_MODES}, got {view_cache!r}")
        self.data_dir, self.task, self.split = data_dir, task, split
        self.category, self.synset = category, _synset(category)
        self.batch_size, self.n_views = int(batch_size), int(n_views)
        self.img_h, self.img_w, self.n_pts = int(img_h), int(img_w), int(n_pts)
        self.view_mode, self.use_input_view = view_mode, bool(use_input_view)
        self.shuffle, self.seed, self.repeat = bool(shuffle), int(seed), bool(repeat)
        self.all_input_views = bool(all_input_views)
        tree = getattr(task, "data_tree", "")
        self.dirs = tree_dirs(data_dir, tree)
        self.models = list_models(data_dir, category, split, tree)
        if task is not None:
            task.open_data(self, **task_options)
        elif task_options:
            raise TypeError(f"BatchPipeline without a task takes no options, got {sorted(task_options)}")
        self._angles = {}
        self._angles_lock = threading.Lock()
        self._perms, self._perm_lock = {}, threading.Lock()
        self._cache_dir, self._cache_lock, self._cache_rebuilt = cache_dir, threading.Lock(), False
        self._cache = self._open_cache(cache_dir) if view_cache == "auto" else None
        if pairs is not None:  # an explicit list of (model id, input view): e.g. the validation set
            self.all_input_views = True
            self.samples = self._explicit_samples(pairs)
        elif self.all_input_views:
            self.samples = [(m, v) for m in range(len(self.models)) for v in range(len(self._views_deg(m)))]
        else:
            self.samples = [(m, None) for m in range(len(self.models))]
        if self._cache is None:
            self._check_first_model()

        self.num_workers, self.prefetch = max(0, int(num_workers)), max(1, int(prefetch))
        self._executor = ThreadPoolExecutor(self.num_workers, "batch") if self.num_workers else None
        self._pending = deque()
        self._next_step = self._next_submit = int(start_step)
        self._closed = False

    def _explicit_samples(self, pairs):
        """``pairs`` [(model id, input view)] -> samples [(model index, view)]; DataError when a model
        is not in the split or has no such view."""
        index = {mid: m for m, mid in enumerate(self.models)}
        samples = []
        for mid, view in pairs:
            if mid not in index:
                raise DataError(f"model {mid!r} is not in the {self.category} {self.split} split of {self.data_dir}")
            m = index[mid]
            if not 0 <= int(view) < len(self._views_deg(m)):
                raise DataError(f"model {mid!r} has no view {view} ({len(self._views_deg(m))} views)")
            samples.append((m, int(view)))
        if not samples:
            raise ValueError("pairs: expected at least one (model id, input view) pair")
        return samples

    def resampled_gt(self, model_id):
        """The second, independent sampling of a model's surface (``*_resample*.npy``, data/README.md).

        Returns:
            None when the data has none (the authors' ShapeNet clouds), else a dict with the batch
            keys of one sample's ground truth: 'pcl' float32 (N, 3) renderer frame, and the task's
            point targets of that sampling (:meth:`utils.task.Task.load_resampled_targets`).
        """
        m = self.models.index(model_id)
        path = os.path.join(self.model_dir("pcl", m), RESAMPLE_PCL_FILE)
        if not os.path.isfile(path):
            return None
        out = dict(pcl=read_cloud(path, self.n_pts))
        if self.task is not None:
            out.update(self.task.load_resampled_targets(self, m))
        return out

    def point_sides(self, model_id):
        """Which ground-truth points of a model lie on a part's hidden side (``PCL_SIDES_FILE``,
        written by the demo data in the colour tree): bool (N,) in the order of the batch's 'pcl',
        or None when the data holds no such record (ShapeNet, make_dataset.py output, other trees)."""
        path = os.path.join(self.model_dir("pcl", self.models.index(model_id)), PCL_SIDES_FILE)
        if not os.path.isfile(path):
            return None
        return read_point_sides(path, self.n_pts)

    def n_views_of(self, m):
        """Number of views of model ``m`` (index into ``models``), from its view.txt."""
        return len(self._views_deg(m))

    @classmethod
    def from_args(cls, args, task, split, **overrides):
        """The pipeline the training flags describe, for ``split``.

        Args:
            args: the training Namespace (``utils.train.config.parse_train_args`` or args.json): reads
                data_dir, category, batch_size, N_VIEWS, IMG_H, IMG_W, views, CORR, seed,
                num_workers, input_views and the task's (``task.data_options(args)``).
            task: a :class:`utils.task.Task` (or None: no targets).
            split: 'train', 'val' or 'test'.
            overrides: constructor arguments that replace the mapped ones (e.g. ``shuffle=False,
                repeat=False, view_mode='fixed', batch_size=1, start_step=k``).
        """
        kw = dict(
            task=task,
            batch_size=args.batch_size,
            n_views=args.N_VIEWS,
            img_h=args.IMG_H,
            img_w=args.IMG_W,
            view_mode=args.views,
            use_input_view=args.CORR,
            seed=args.seed,
            num_workers=args.num_workers,
            all_input_views=args.input_views == "all",
            view_cache=getattr(args, "view_cache", "off"),
            cache_dir=getattr(args, "cache_dir", None),
            **(task.data_options(args) if task is not None else {}),
        )
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
    def model_dir(self, key, m):
        """Folder of model ``m`` (index into ``models``) in the tree's ``key`` folder ('rendered',
        'pcl' or 'labels')."""
        return os.path.join(self.dirs[key], self.synset, self.models[m])

    def _open_cache(self, cache_dir, rebuild=False):
        """The split's valid view cache (built when needed); None, said in one line on stderr, when it
        cannot be written (no space, a read-only or foreign folder): the PNG files are read then."""
        if not view_cache_mod.supports(self.task):  # a task whose targets the cache does not hold
            return None
        spec = view_cache_mod.CacheSpec(
            self.data_dir,
            self.category,
            self.split,
            self.task,
            self.img_h,
            self.img_w,
            self.n_pts,
            getattr(self, "n_cls", None),
        )
        try:
            return view_cache_mod.open_cache(spec, self.models, cache_dir, rebuild=rebuild)
        except OSError as err:
            if isinstance(err, view_cache_mod.CacheNoSpace):
                why = err.strerror
            else:
                why = atomic_io.disk_problem(err) or f"{err.strerror or err}"
            print(
                f"view cache: not built in {spec.folder(cache_dir)}: {why}; reading the PNG files "
                "instead (the same batches; --cache_dir moves the cache)",
                file=sys.stderr,
                flush=True,
            )
            return None

    def _replace_damaged_cache(self, cache, err):
        """A chunk of ``cache`` failed its CRC-32 while a batch was read: rebuild the cache (once per
        pipeline; a second damage reads the PNG files), said in one line. Threads that meet the same
        damage wait here and then use what the first one made."""
        with self._cache_lock:
            if self._cache is not cache:  # another thread replaced it already
                return
            again = self._cache_rebuilt
            print(
                f"view cache: {cache.folder}: {err}; "
                + ("damaged again: reading the PNG files instead" if again else "rebuilding it"),
                file=sys.stderr,
                flush=True,
            )
            self._cache_rebuilt = True
            self._cache = None if again else self._open_cache(self._cache_dir, rebuild=True)

    def _views_deg(self, m):
        """The model's view angles, degrees (V, 2); read once, then cached."""
        if self._cache is not None:
            return self._cache.angles(m)
        with self._angles_lock:
            angles = self._angles.get(m)
        if angles is None:
            path = os.path.join(self.model_dir("rendered", m), VIEWS_FILE)
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

    def _plan(self, step, i, k):
        """(model index, input view, supervision views) of item ``i`` of batch ``step``, sample ``k``."""
        m, input_view = self.samples[k]
        angles = self._views_deg(m)
        n_avail = len(angles)
        if self.n_views > n_avail and self.view_mode == "random":  # distinct views ('fixed' wraps, as the original)
            raise DataError(
                f"--N_VIEWS {self.n_views}: {os.path.join(self.model_dir('rendered', m), VIEWS_FILE)} "
                f"lists {n_avail} views; expected --N_VIEWS <= {n_avail} (distinct supervision views)"
            )
        rng = np.random.default_rng([self.seed, step, i])
        if input_view is None:
            input_view = int(rng.integers(n_avail))
        return m, input_view, self._choose_views(rng, n_avail, input_view)

    def _load_sample(self, step, i, k):
        m, input_view, views = self._plan(step, i, k)
        angles = self._views_deg(m)
        rdir, pdir = self.model_dir("rendered", m), self.model_dir("pcl", m)
        H, W = self.img_h, self.img_w
        out = dict(
            image=read_rgb(os.path.join(rdir, render_file(input_view)), H, W),
            input_view=input_view,
            views=np.array(views, np.int32),
            input_az=np.radians(angles[input_view, 0]),
            input_el=np.radians(angles[input_view, 1]),
            az=np.radians(angles[views, 0]),
            el=np.radians(angles[views, 1]),
            model_id=self.models[m],
        )
        masks = np.stack([read_mask(os.path.join(rdir, depth_file(v)), H, W) for v in views])
        out["mask"] = masks
        out["dist"] = gt_distance_transform(masks)
        out["pcl"] = read_cloud(os.path.join(pdir, PCL_FILE), self.n_pts)
        if self.task is not None:
            out.update(self.task.load_targets(self, m, views, masks))
        return out

    def get_batch(self, step):
        """Batch number ``step`` (a pure function of seed, step and the data), computed now."""
        if self._cache is not None:
            return self._cached_batch(step)
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
            elif np.asarray(vals[0]).dtype.kind in "iub":  # views, input_view, a task's labels
                batch[key] = np.asarray(vals, np.int32)
            else:
                batch[key] = np.asarray(vals, np.float32)
        batch["valid"] = np.array(valid, bool)
        return batch

    def _cached_batch(self, step):
        """:meth:`get_batch` from the view cache: the same keys, dtypes and values. A damaged chunk
        (its CRC-32, verified when first read) rebuilds the cache and the batch is made again."""
        cache = self._cache
        if cache is None:  # the cache was given up (damaged twice): the PNG path
            return self.get_batch(step)
        plans, valid = [], []
        for i in range(self.batch_size):
            k, ok = self._sample_index(step, i)
            plans.append(self._plan(step, i, k))
            valid.append(ok)
        models = np.array([p[0] for p in plans], np.int64)
        try:
            batch = cache.batch(models, [p[1] for p in plans], [p[2] for p in plans])
        except view_cache_mod.CacheDamaged as err:
            self._replace_damaged_cache(cache, err)
            return self.get_batch(step)
        batch.update(
            input_view=np.array([p[1] for p in plans], np.int32),
            views=np.array([p[2] for p in plans], np.int32),
            model_id=np.array([self.models[m] for m in models], dtype=str),
            valid=np.array(valid, bool),
        )
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
