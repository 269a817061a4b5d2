"""Differentiable projections of a point cloud onto the image plane.

Two renderers, both taking the output of :func:`utils.render.camera.perspective_transform`
(``pix``: float32 (B, N, 3) = row px, column px, depth in world units):

* :func:`mask_projection` (CAPNet): a soft silhouette
  ``M(p) = tanh( sum_i exp(-(p_r - r_i)^2 / (2 s)) * exp(-(p_c - c_i)^2 / (2 s)) )``
  over pixel centres ``p = (p_r, p_c)`` (integers, row = image axis 0), with ``s = sigma_sq``
  in px^2: an isotropic Gaussian written as a product of two 1D ones, as in the original.
* :func:`feature_projection` / :func:`part_projection` (DIFFER): point ``i`` lies in the *well*
  of pixel ``p`` when ``|p_r - r_i| <= well_radius`` and ``|p_c - c_i| <= well_radius``
  (inclusive, in px). Among the points in the well the weights are
  ``softmax_i(beta / (depth_i + 1))`` (the original shifts its depth by one before the
  softmax), so the nearest surface wins; the pixel's feature is the weighted mean of the
  points' features. The well is a hard indicator, so the rendered features have zero gradient
  with respect to row/column: gradients reach the depths (through the softmax) and the
  features, as in the original.

Each renderer has three implementations with the same signature, chosen by ``impl``
(``'auto'``, the default, and ``'fused'`` run the fused op when the compiled tf_ops library
is loaded and ``'local'`` otherwise; see :func:`resolve_impl`):

* ``'dense'``: the original formulation, every point against every pixel: (B, N, H, W, 2)
  point-minus-pixel differences, (B, N, H, W) kernels / well indicators / softmax weights
  and, for features, the (B, N, H, W, C) weighted features summed over N, as the original's
  ``cont_proj`` / ``rgb_cont_proj``. O(B*N*H*W) time and memory. It is the reference. (The
  original marks points outside the well by a clipped depth of 10 and renormalises a softmax
  over all points; here the softmax is restricted to in-well points directly, the same
  weights without the overflow that ``exp(beta / depth)`` has for points near the camera.)
* ``'local'``: each point only touches the pixels of its kernel window:
  a (2K+1)^2 square around the point for the Gaussian (see :func:`gaussian_half_width`:
  K = 3 px at sigma_sq = 0.4), and the (2*ceil(well_radius)+1)^2 square (3x3 at radius 1,
  :func:`well_half_width`) for the well; both rules are tf_ops's, shared with the fused ops.
  Window entries (B, N, k, k) carry a flat pixel id ``b*H*W + row*W + col``
  (clamped into the image; entries off the image or outside the well get weight 0). The
  per-pixel sums (Gaussians; softmax numerators and normaliser) are scatter-adds over those
  ids (``bincount`` with weights on CPU, ``unsorted_segment_sum`` with a GPU, see
  :func:`_scatter_sum`), and the per-pixel maximum of the softmax logits, subtracted before
  ``exp``, is an ``unsorted_segment_max``. Time and memory are O(B*N*k^2 + B*H*W); nothing of
  size B*N*H*W exists. The readable reference of ``'fused'``, and its fallback.
* ``'fused'``: the same windows and sums as ``'local'``, each renderer one compiled op
  (``tf_ops.mask_projection``, ``tf_ops.feature_projection``: C++ on the CPU, CUDA on a GPU)
  with a compiled gradient op, instead of a few dozen graph ops and their gradients. Without
  the compiled library it runs ``'local'``: tf_ops has no fallback for them (it imports
  nothing from here); it warns once that the library is missing, and this module chooses.

``local`` and ``fused`` agree with ``dense`` to ~1e-6 on masks (the Gaussian tail the windows
drop is below 1e-6 of the peak per axis) and to float rounding on features; the tests check
values and gradients (tests/test_projection.py, tests/test_tf_ops_projection.py).
All functions accept float64 as well as float32 inputs (the tests use float64 for finite
differences); outputs have the input's dtype. They build ordinary ops, so they run eagerly
(``tf.function``, ``tf.GradientTape``) as well as in a TF1-style graph.

Settings and gradients:

* ``sigma_sq`` and ``well_radius`` are Python numbers: they fix each point's window (its size
  is decided when the ops are built) and are attributes of the fused kernels. To anneal
  ``sigma_sq`` in eager code, pass a new float per step (a ``tf.function`` retraces per value).
* ``beta`` may be a Python number or a tensor (scalar, or any shape that broadcasts to (B, N),
  e.g. (B, 1) per view), so it can be annealed or learned. A number runs the fused kernel (it is
  one of its attributes; the training graphs pass numbers, so they run exactly as before); a
  tensor runs the ``'local'`` graph ops, where ``logits = beta / (depth + 1)`` is an ordinary
  op and the gradient reaches ``beta``. (The alternatives cost more: a kernel that takes beta as
  an input and returns its gradient means new CPU and CUDA code; feeding the fused kernel a
  re-scaled depth loses up to ~1e-4 of the logits to float32 rounding.)
* Gradients: the mask w.r.t. row and column of each point (not depth); the features and the
  coverage-weighted map w.r.t. ``feat``, depth and a tensor ``beta``. The rendered features
  have ZERO gradient w.r.t. row/column by design: the well is a hard indicator, as in the
  original; the silhouette (mask) is what moves points sideways. ``coverage`` has no gradient.
"""

from __future__ import annotations

import functools
import numbers

from utils.common.tfv1 import tf  # before tf_ops: TensorFlow loads quietly (no change of mode)

import tf_ops
from tf_ops.params import gaussian_half_width, well_half_width

IMPLS = ("local", "dense", "fused")  # the implementations; 'auto' picks one (resolve_impl)
CHOICES = ("auto",) + IMPLS


def resolve_impl(impl: str) -> str:
    """The implementation ``impl`` stands for: 'auto' and 'fused' -> 'fused' when the compiled
    tf_ops library is loaded, else 'local' (the fused ops' pure-TF form; tf_ops has warned once
    that its library is missing, unless DIFFER_TF_OPS_BACKEND=fallback asked for that); 'local'
    and 'dense' are returned as they are.

    Raises ValueError for a name not in :data:`CHOICES`.
    """
    if impl not in CHOICES:
        raise ValueError(f"impl must be one of {CHOICES}, got impl={impl!r}")
    if impl in ("auto", "fused"):
        return "fused" if tf_ops.backend() == "compiled" else "local"
    return impl


def _dim(x, i):
    """Static size of axis ``i`` of ``x`` when known, else the dynamic one (int32 scalar)."""
    static = x.shape[i]
    static = static.value if hasattr(static, "value") else static
    return static if static is not None else tf.shape(x)[i]


def _split(pix):
    pix = tf.convert_to_tensor(pix)
    if pix.dtype not in (tf.float32, tf.float64):
        pix = tf.cast(pix, tf.float32)
    return pix, pix[..., 0], pix[..., 1], pix[..., 2]


# ----------------------------------------------------------------------------- windows
def _axis_window(coord, centre, half, size):
    """One axis of each point's window of k = 2*half+1 pixels around ``centre``.

    Args:
        coord: (B, N) point coordinate along the axis, px.
        centre: (B, N) integral window centre (round or floor of ``coord``), px. Centres of
            points far off the image are clamped to just outside it first, so window
            coordinates stay small and all of those windows' pixels lie outside the image.
        half: int, window half-width; size: int, image size along the axis, px.
    Returns:
        diff: (B, N, k) pixel coordinate minus ``coord`` (px, input dtype);
        inside: (B, N, k) bool, the pixel lies in 0 .. size-1;
        idx: (B, N, k) int32 pixel coordinate clamped into the image.
    """
    centre = tf.clip_by_value(centre, -half - 1.0, size + half + 0.0)
    pos = centre[..., None] + tf.cast(tf.range(-half, half + 1), coord.dtype)  # (B,N,k)
    inside = tf.logical_and(pos >= 0.0, pos <= size - 1.0)
    idx = tf.cast(tf.clip_by_value(pos, 0.0, size - 1.0), tf.int32)
    return pos - coord[..., None], inside, idx


def _flat_ids(r_idx, c_idx, img_h, img_w):
    """(B, N, k) row and column indices -> (B, N, k, k) int32 flat ids ``b*H*W + row*W + col``."""
    batch = tf.range(_dim(r_idx, 0), dtype=tf.int32)[:, None, None] * img_h
    return ((batch + r_idx) * img_w)[..., :, None] + c_idx[..., None, :]


@functools.cache
def _gpu_visible():
    return bool(tf.config.list_physical_devices("GPU"))


def _scatter_sum(values, ids, num_segments):
    """Sum of ``values`` (M,) or (M, C) into ``num_segments`` bins by int32 ``ids`` (M,).

    Returns (num_segments,) or (num_segments, C); the gradient is a gather of the incoming one.
    On CPU, ``unsorted_segment_sum`` costs ~30 ns per entry, ``bincount`` with weights ~2 ns,
    so CPU graphs use ``bincount`` with that gather as custom gradient. With a GPU visible the
    segment op is used (``bincount`` with weights has no GPU kernel without XLA).
    """
    if _gpu_visible():
        return tf.math.unsorted_segment_sum(values, ids, num_segments)
    if values.shape.rank == 2:
        n_ch = _dim(values, 1)
        flat_ids = tf.reshape(ids[:, None] * n_ch + tf.range(n_ch), [-1])
        flat = _scatter_sum(tf.reshape(values, [-1]), flat_ids, num_segments * n_ch)
        return tf.reshape(flat, [num_segments, n_ch])

    @tf.custom_gradient
    def _bincount(vals):
        out = tf.math.bincount(ids, weights=vals, minlength=num_segments, maxlength=num_segments, dtype=vals.dtype)

        def grad(d_out):
            return tf.gather(d_out, ids)

        return out, grad

    return _bincount(values)


def _grid(size, dtype):
    """Pixel-centre coordinates 0..size-1, shape (size,)."""
    return tf.cast(tf.range(size), dtype)


# ----------------------------------------------------------------------------- mask
def mask_projection(pix: tf.Tensor, img_h: int, img_w: int, sigma_sq: float = 0.4, impl: str = "auto") -> tf.Tensor:
    """CAPNet soft silhouette of a projected point cloud.

    Args:
        pix: float32 (B, N, 3) from :func:`utils.render.camera.perspective_transform`: row (px, image
            axis 0), column (px, axis 1), depth (unused here). Points far off-image (e.g. behind
            the camera at -1e4) contribute nothing.
        img_h, img_w: int, output size in px; pixel centres at integer coordinates.
        sigma_sq: float (a Python number), variance of the Gaussian splat in px^2 (0.4 in the
            original's script).
        impl: 'auto' (default) or 'fused' (one compiled op; 'local' without the compiled
            library), 'local' (windowed graph ops, O(B*N*k^2 + B*H*W)) or 'dense' (reference,
            O(B*N*H*W)).
    Returns:
        float32 (B, H, W) in [0, 1): ``tanh`` of the summed Gaussians; differentiable w.r.t.
        row and column (depth gets zero).
    """
    if not isinstance(sigma_sq, numbers.Real) or not sigma_sq > 0:
        raise ValueError(
            f"mask_projection: sigma_sq must be a Python number > 0 (px^2), got {sigma_sq!r}; it sets "
            f"each point's window when the ops are built (to anneal it, pass a new float per step)"
        )
    impl = resolve_impl(impl)
    pix, row, col, _ = _split(pix)
    if impl == "fused":
        return tf_ops.mask_projection(pix, img_h, img_w, sigma_sq, gaussian_half_width(sigma_sq))
    if impl == "dense":
        return _mask_dense(row, col, img_h, img_w, sigma_sq)
    return _mask_local(row, col, img_h, img_w, sigma_sq)


def _grid_diff(row, col, img_h, img_w):
    """Point minus pixel-centre coordinates, (B, N, H, W, 2) px, as in the original."""
    dtype = row.dtype
    rows, cols = tf.meshgrid(_grid(img_h, dtype), _grid(img_w, dtype), indexing="ij")
    grid = tf.stack([rows, cols], -1)  # (H,W,2)
    points = tf.stack([row, col], -1)  # (B,N,2)
    return points[:, :, None, None, :] - grid


def _mask_dense(row, col, img_h, img_w, sigma_sq):
    kernel = tf.exp(-tf.square(_grid_diff(row, col, img_h, img_w)) / (2.0 * sigma_sq))
    per_point = kernel[..., 0] * kernel[..., 1]  # (B,N,H,W)
    return tf.tanh(tf.reduce_sum(per_point, axis=1))  # (B,H,W)


def _mask_local(row, col, img_h, img_w, sigma_sq):
    half = gaussian_half_width(sigma_sq)
    d_r, in_r, r_idx = _axis_window(row, tf.round(row), half, img_h)  # (B,N,k)
    d_c, in_c, c_idx = _axis_window(col, tf.round(col), half, img_w)
    # Off-image window pixels get weight 0 (their ids are clamped to a valid pixel).
    g_r = tf.exp(-tf.square(d_r) / (2.0 * sigma_sq)) * tf.cast(in_r, row.dtype)  # (B,N,k)
    g_c = tf.exp(-tf.square(d_c) / (2.0 * sigma_sq)) * tf.cast(in_c, col.dtype)
    vals = tf.reshape(g_r[..., :, None] * g_c[..., None, :], [-1])  # (B*N*k*k,)
    ids = tf.reshape(_flat_ids(r_idx, c_idx, img_h, img_w), [-1])
    batch = _dim(row, 0)
    total = _scatter_sum(vals, ids, batch * img_h * img_w)  # (B*H*W,)
    return tf.tanh(tf.reshape(total, [batch, img_h, img_w]))


# ----------------------------------------------------------------------------- features
def feature_projection(
    pix: tf.Tensor,
    feat: tf.Tensor,
    img_h: int,
    img_w: int,
    well_radius: float = 1.0,
    beta: float | tf.Tensor = 100.0,
    impl: str = "auto",
) -> tuple[tf.Tensor, tf.Tensor]:
    """DIFFER depth-aware feature projection.

    Args:
        pix: float32 (B, N, 3) from :func:`utils.render.camera.perspective_transform`: row px,
            column px, depth (world units, > 0).
        feat: float32 (B, N, C), per-point features (e.g. rgb in [0, 1]).
        img_h, img_w: int, output size in px.
        well_radius: float, px; point i is in the well of pixel p when |p_r - r_i| <= radius
            and |p_c - c_i| <= radius (inclusive).
        beta: float or tensor (scalar, or broadcastable to (B, N)), softmax sharpness (1/world
            unit); weights are softmax_i(beta / (depth_i + 1)) over the points in the well
            (beta = 100 in the original; 0: depth-unaware, the plain mean). A tensor beta runs
            the 'local' graph ops (the fused kernel takes beta as a constant attribute) and
            receives a gradient.
        impl: 'auto' (default) or 'fused' (one compiled op; 'local' without the compiled
            library or with a tensor beta), 'local' (3x3 windows and segment ops) or 'dense'
            (reference).
    Returns:
        feat_map: float32 (B, H, W, C), the weighted mean of the features in each pixel's well;
            0 on pixels whose well is empty. Differentiable w.r.t. feat, depth and a tensor
            beta; ZERO gradient w.r.t. row and column (the well is a hard indicator).
        coverage: float32 (B, H, W), 1 where the well holds at least one point, else 0
            (no gradient).
    """
    if not isinstance(well_radius, numbers.Real) or not well_radius >= 0:
        raise ValueError(f"feature_projection: well_radius must be a Python number >= 0 (px), got {well_radius!r}")
    impl = resolve_impl(impl)
    pix, row, col, depth = _split(pix)
    feat = tf.cast(feat, pix.dtype)
    if not isinstance(beta, numbers.Real):  # a tensor (or array): graph ops, so beta gets a gradient
        beta = tf.cast(beta, pix.dtype)
        if impl == "fused":
            impl = "local"
    if impl == "fused":
        return tf_ops.feature_projection(pix, feat, img_h, img_w, well_radius, beta)
    logits = beta / (depth + 1.0)  # (B,N)
    if impl == "dense":
        return _feature_dense(row, col, logits, feat, img_h, img_w, well_radius)
    return _feature_local(row, col, logits, feat, img_h, img_w, well_radius)


def part_projection(
    pix: tf.Tensor,
    probs: tf.Tensor,
    img_h: int,
    img_w: int,
    well_radius: float = 1.0,
    beta: float | tf.Tensor = 100.0,
    impl: str = "auto",
) -> tuple[tf.Tensor, tf.Tensor]:
    """Part-label projection: :func:`feature_projection` plus a background channel.

    Args:
        pix: float32 (B, N, 3), row px, column px, depth.
        probs: float32 (B, N, K), per-point part probabilities (K parts, no background).
        img_h, img_w, well_radius, beta, impl: as in :func:`feature_projection` (beta may be a
            tensor).
    Returns:
        float32 (B, H, W, K+1): channel 0 is the background (1 on uncovered pixels, 0
        elsewhere), channels 1..K the projected part probabilities (0 on uncovered pixels), so
        every pixel's channels sum to 1 when each point's probabilities do;
        coverage: float32 (B, H, W) in {0, 1}.
    """
    feat_map, coverage = feature_projection(pix, probs, img_h, img_w, well_radius, beta, impl)
    background = (1.0 - coverage)[..., None]
    return tf.concat([background, feat_map], axis=-1), coverage


def _feature_dense(row, col, logits, feat, img_h, img_w, well_radius):
    dtype = row.dtype
    in_axis = tf.abs(_grid_diff(row, col, img_h, img_w)) <= well_radius  # (B,N,H,W,2)
    in_well = tf.logical_and(in_axis[..., 0], in_axis[..., 1])  # (B,N,H,W)
    z = tf.broadcast_to(logits[:, :, None, None], tf.shape(in_well))  # (B,N,H,W)
    lowest = tf.fill(tf.shape(z), tf.constant(dtype.min, dtype))
    z_max = tf.reduce_max(tf.where(in_well, z, lowest), axis=1, keepdims=True)  # (B,1,H,W)
    z_max = tf.stop_gradient(tf.where(z_max > dtype.min, z_max, tf.zeros_like(z_max)))
    # exp only of (z - max) <= 0 on in-well entries; 0 elsewhere (never inf, so no NaN gradient).
    shifted = tf.where(in_well, z - z_max, tf.zeros_like(z))
    e = tf.exp(shifted) * tf.cast(in_well, dtype)  # (B,N,H,W)
    denom = tf.reduce_sum(e, axis=1)  # (B,H,W); >= 1 where covered
    covered = denom > 0.5
    prob = e / tf.where(covered, denom, tf.ones_like(denom))[:, None]  # (B,N,H,W)
    # expectation of the features, through a (B,N,H,W,C) product as in the original
    feat_map = tf.reduce_sum(prob[..., None] * feat[:, :, None, None, :], axis=1)  # (B,H,W,C)
    return feat_map, tf.cast(covered, dtype)


def _feature_local(row, col, logits, feat, img_h, img_w, well_radius):
    dtype = row.dtype
    half = well_half_width(well_radius)
    # Window rows floor(r)-K .. floor(r)+K hold every pixel with |p - r| <= radius; the exact
    # test below is the same float expression as in the dense path, so ties agree.
    d_r, inside_r, r_idx = _axis_window(row, tf.floor(row), half, img_h)  # (B,N,k)
    d_c, inside_c, c_idx = _axis_window(col, tf.floor(col), half, img_w)
    ok_r = tf.logical_and(inside_r, tf.abs(d_r) <= well_radius)
    ok_c = tf.logical_and(inside_c, tf.abs(d_c) <= well_radius)
    valid = tf.logical_and(ok_r[..., :, None], ok_c[..., None, :])  # (B,N,k,k)
    batch, n_pts, n_ch = _dim(row, 0), _dim(row, 1), _dim(feat, 2)
    n_pix = batch * img_h * img_w
    # Window entries outside the well or the image keep a clamped, valid pixel id but weigh
    # nothing, and their logit is replaced by the lowest value before the per-pixel maximum.
    valid_flat = tf.reshape(valid, [-1])  # (M,), M = B*N*k*k
    ids = tf.reshape(_flat_ids(r_idx, c_idx, img_h, img_w), [-1])  # (M,)
    kk = (2 * half + 1) ** 2
    z = tf.reshape(tf.broadcast_to(logits[:, :, None], [batch, n_pts, kk]), [-1])  # (M,)
    z_in = tf.where(valid_flat, z, tf.fill(tf.shape(z), tf.constant(dtype.min, dtype)))
    z_max = tf.stop_gradient(tf.math.unsorted_segment_max(z_in, ids, n_pix))  # (B*H*W,)
    # softmax numerators exp(z - max) <= 1 (the minimum only guards entries outside the well)
    e = tf.exp(tf.minimum(z - tf.gather(z_max, ids), 0.0)) * tf.cast(valid_flat, dtype)
    f = tf.reshape(tf.broadcast_to(feat[:, :, None, :], [batch, n_pts, kk, n_ch]), [-1, n_ch])
    denom = _scatter_sum(e, ids, n_pix)  # (B*H*W,); >= 1 where covered
    num = _scatter_sum(e[:, None] * f, ids, n_pix)  # (B*H*W, C)
    covered = denom > 0.5
    feat_map = num / tf.where(covered, denom, tf.ones_like(denom))[:, None]
    feat_map = tf.reshape(feat_map, [batch, img_h, img_w, n_ch])
    coverage = tf.reshape(tf.cast(covered, dtype), [batch, img_h, img_w])
    return feat_map, coverage
