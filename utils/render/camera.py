"""Pinhole camera of the original DIFFER/CAPNet code, parameterised.

Conventions (identical to the original, so its ShapeNet renders line up):

* World frame: the canonical object frame of the ground-truth clouds (after
  ``utils.data.shapenet.preprocess_pcl_gt``), object roughly inside [-0.5, 0.5]^3.
* ``world2cam``: rotate by azimuth about the world x axis, then by elevation
  about the y axis (R = R_el @ R_az), then translate by -distance along z. The
  camera sits at the origin of the camera frame and looks down -z, so visible
  points have z_cam < 0 and depth = -z_cam (about ``distance`` for the object).
* ``perspective_transform``: intrinsics with focal 120 px and principal point
  32 px for a 64x64 image, both scaled with the image size. The output's first
  coordinate indexes image **rows** (axis 0 of an (H, W) image, called "x" in
  the original), the second indexes **columns** ("y"); pixel centres sit at
  integer coordinates 0..H-1 / 0..W-1.

Angles are radians everywhere in this module (``view.txt`` stores degrees; the
data loaders convert). Each graph function has a numpy twin (suffix ``_np``)
used by the demo-data renderer and by tests.

:class:`Camera` is the general form: a batch of B pinhole cameras, each with its own
intrinsics (``f_row, f_col, c_row, c_col``, px) and extrinsics (``R (3, 3)``, ``t (3,)``:
``x_cam = R @ x_world + t``), in the convention above (camera x -> image rows, y -> columns,
looking down -z). The original's azimuth/elevation camera is its constructor
:meth:`Camera.from_az_el`, bit-identical to :func:`project`; :meth:`Camera.from_opencv` takes
OpenCV's ``K, R, t`` (x -> columns, y -> rows, looking down +z). All of it builds ordinary
TensorFlow ops: it runs eagerly (``tf.function``, ``tf.GradientTape``) or in a graph.
"""

from __future__ import annotations

import numpy as np

from utils.common.tfv1 import tf

BASE_FOCAL = 120.0  # px, for a 64 px image
BASE_SIZE = 64.0
DEFAULT_DISTANCE = 2.0  # camera to object centre, world units
MIN_DEPTH = 1e-3  # depths are clamped here so nothing divides by zero
OFF_IMAGE = -1.0e4  # pixel coordinate given to points behind the camera


def intrinsics(img_h, img_w):
    """Focal lengths and principal point for an image of ``img_h`` x ``img_w`` px.

    Returns ``(f_row, f_col, c_row, c_col)`` in pixels: focal 120 and centre 32
    at 64x64, scaled linearly with each side (focal = 120*H/64, centre = H/2).
    """
    return (BASE_FOCAL * img_h / BASE_SIZE, BASE_FOCAL * img_w / BASE_SIZE, img_h / 2.0, img_w / 2.0)


def rotation_np(az, el):
    """Rotation world -> camera, float64 ``(..., 3, 3)``; ``az``, ``el`` radians ``(...)``."""
    az = np.asarray(az, np.float64)
    el = np.asarray(el, np.float64)
    ca, sa, ce, se = np.cos(az), np.sin(az), np.cos(el), np.sin(el)
    one, zero = np.ones_like(az), np.zeros_like(az)
    r_az = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, ca, -sa], -1), np.stack([zero, sa, ca], -1)], -2)
    r_el = np.stack([np.stack([ce, zero, se], -1), np.stack([zero, one, zero], -1), np.stack([-se, zero, ce], -1)], -2)
    return r_el @ r_az


def world2cam_np(xyz, az, el, distance=DEFAULT_DISTANCE):
    """Numpy twin of :func:`world2cam`: ``xyz (N, 3)``, scalar ``az``/``el`` (radians)."""
    rot = rotation_np(az, el)
    out = np.asarray(xyz, np.float64) @ rot.T
    out[:, 2] -= distance
    return out


def cam2world_np(xyz_cam, az, el, distance=DEFAULT_DISTANCE):
    """Inverse of :func:`world2cam_np` (points or, with ``distance=0``, directions)."""
    rot = rotation_np(az, el)
    p = np.array(xyz_cam, np.float64, copy=True)
    p[..., 2] += distance
    return p @ rot


def perspective_transform_np(xyz_cam, img_h, img_w):
    """Numpy twin of :func:`perspective_transform`: ``(N, 3)`` -> ``(N, 3)`` (row, col, depth)."""
    f_r, f_c, c_r, c_c = intrinsics(img_h, img_w)
    xyz_cam = np.asarray(xyz_cam, np.float64)
    z = xyz_cam[:, 2]
    in_front = z < -MIN_DEPTH
    depth = np.maximum(-z, MIN_DEPTH)
    row = np.where(in_front, c_r + f_r * xyz_cam[:, 0] / depth, OFF_IMAGE)
    col = np.where(in_front, c_c + f_c * xyz_cam[:, 1] / depth, OFF_IMAGE)
    return np.stack([row, col, depth], -1)


def project_np(xyz, az, el, img_h, img_w, distance=DEFAULT_DISTANCE):
    """World points ``(N, 3)`` -> pixel ``(N, 3)``: row, col (px) and depth (world units)."""
    return perspective_transform_np(world2cam_np(xyz, az, el, distance), img_h, img_w)


def pixel_rays_np(az, el, img_h, img_w, distance=DEFAULT_DISTANCE):
    """Rays through every pixel centre, in world coordinates.

    Returns ``origins (H*W, 3)`` (all the camera centre) and unit
    ``directions (H*W, 3)``, ordered row-major like an ``(H, W)`` image. Used by
    the independent mesh renderer of the demo data.
    """
    f_r, f_c, c_r, c_c = intrinsics(img_h, img_w)
    rows, cols = np.meshgrid(np.arange(img_h), np.arange(img_w), indexing="ij")
    d_cam = np.stack([(rows.ravel() - c_r) / f_r, (cols.ravel() - c_c) / f_c, -np.ones(img_h * img_w)], -1)
    d_world = cam2world_np(d_cam, az, el, distance=0.0)
    d_world /= np.linalg.norm(d_world, axis=-1, keepdims=True)
    origin = cam2world_np(np.zeros((1, 3)), az, el, distance)
    return np.repeat(origin, img_h * img_w, axis=0), d_world


def _rotation(az, el):
    """Graph version of :func:`rotation_np`: ``az``, ``el`` (B,) radians -> (B, 3, 3)."""
    ca, sa, ce, se = tf.cos(az), tf.sin(az), tf.cos(el), tf.sin(el)
    one, zero = tf.ones_like(az), tf.zeros_like(az)
    r_az = tf.stack([tf.stack([one, zero, zero], -1), tf.stack([zero, ca, -sa], -1), tf.stack([zero, sa, ca], -1)], -2)
    r_el = tf.stack([tf.stack([ce, zero, se], -1), tf.stack([zero, one, zero], -1), tf.stack([-se, zero, ce], -1)], -2)
    return tf.matmul(r_el, r_az)


def world2cam(xyz: tf.Tensor, az: tf.Tensor, el: tf.Tensor, distance: float = DEFAULT_DISTANCE) -> tf.Tensor:
    """World -> camera coordinates.

    Args:
        xyz: float32 (B, N, 3), points in the world (object) frame.
        az: float32 (B,), azimuth in radians (rotation about world x).
        el: float32 (B,), elevation in radians (rotation about y, after az).
        distance: float, camera-to-origin distance in world units.
    Returns:
        float32 (B, N, 3), camera coordinates; visible points have z < 0.
    """
    rot = _rotation(tf.cast(az, tf.float32), tf.cast(el, tf.float32))  # (B,3,3)
    out = tf.matmul(xyz, rot, transpose_b=True)  # (B,N,3) = xyz @ R^T
    return out - tf.constant([0.0, 0.0, distance], tf.float32)


def perspective_transform(xyz_cam: tf.Tensor, img_h: int, img_w: int) -> tf.Tensor:
    """Camera coordinates -> pixel coordinates and depth.

    Args:
        xyz_cam: float32 (B, N, 3) from :func:`world2cam`.
        img_h, img_w: int, image size in pixels (intrinsics scale with it).
    Returns:
        float32 (B, N, 3): row (px, image axis 0), column (px, axis 1), depth
        (world units, > 0). Points behind or too close to the camera
        (z_cam >= -1e-3) get row = col = -1e4, far outside any image, and depth
        1e-3, so they never light a pixel, never wrap around and give no NaN;
        their gradient is zero.
    """
    return _pinhole(xyz_cam, *intrinsics(img_h, img_w))


def _pinhole(xyz_cam, f_r, f_c, c_r, c_c):
    """The pinhole projection and the rule for points behind the camera, shared by
    :func:`perspective_transform` (Python-float intrinsics) and :class:`Camera` ((B, 1) tensors).

    Args:
        xyz_cam: float32 (B, N, 3), camera coordinates (visible points have z < 0).
        f_r, f_c, c_r, c_c: focal lengths and principal point in px, floats or float32 (B, 1).
    Returns:
        float32 (B, N, 3): row px, column px, depth (world units); points with
        z_cam >= -1e-3 get row = col = -1e4 and depth 1e-3 (see :func:`perspective_transform`).
    """
    x, y, z = tf.unstack(xyz_cam, axis=-1)
    in_front = z < -MIN_DEPTH
    depth = tf.maximum(-z, MIN_DEPTH)
    off = tf.fill(tf.shape(x), OFF_IMAGE)
    row = tf.where(in_front, c_r + f_r * x / depth, off)
    col = tf.where(in_front, c_c + f_c * y / depth, off)
    return tf.stack([row, col, depth], -1)


def project(
    xyz: tf.Tensor, az: tf.Tensor, el: tf.Tensor, img_h: int, img_w: int, distance: float = DEFAULT_DISTANCE
) -> tf.Tensor:
    """``perspective_transform(world2cam(...))``: (B, N, 3) world -> (B, N, 3) row, col, depth."""
    return perspective_transform(world2cam(xyz, az, el, distance), img_h, img_w)


# ----------------------------------------------------------------------------- batched camera
# OpenCV's camera frame (x -> columns, y -> rows, z forward) to this module's (x -> rows,
# y -> columns, looking down -z): swap x and y, negate z. A proper rotation (det +1).
_FROM_OPENCV = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def _per_view(value, batch, name):
    """A float32 (B,) tensor from a scalar or (B,) value (px)."""
    value = tf.cast(tf.convert_to_tensor(value), tf.float32)
    if value.shape.rank == 0:
        return tf.fill([batch], value)
    if value.shape.rank is not None and value.shape.rank != 1:
        raise ValueError(f"Camera: {name} must be a scalar or have shape (B,) (one per view), got {value.shape}")
    return value


class Camera:
    """A batch of B pinhole cameras (one per view), usable eagerly or in a graph.

    ``x_cam = R @ x_world + t``; the camera looks down its -z axis; a point projects to
    ``row = c_row + f_row * x_cam / depth``, ``col = c_col + f_col * y_cam / depth`` with
    ``depth = -z_cam`` (world units). Pixel centres sit at integer coordinates, row = image
    axis 0. Points behind the camera (``z_cam >= -1e-3``) go to row = col = -1e4 (off every
    image) with depth 1e-3, as in :func:`perspective_transform`.

    Attributes:
        rotation: float32 (B, 3, 3), world -> camera rotation R.
        translation: float32 (B, 3), t, world units.
        f_row, f_col: float32 (B,), focal lengths in px along image rows (axis 0) and columns.
        c_row, c_col: float32 (B,), principal point in px (row, column).
        img_h, img_w: int, image size in px (the renderers' output size).
    In OpenCV's terms fx = f_col, fy = f_row, cx = c_col, cy = c_row, with the frame change of
    :meth:`from_opencv`. The constructor converts its arguments to tensors: to learn camera
    parameters held in ``tf.Variable``s, build the Camera inside the ``tf.GradientTape``.
    """

    def __init__(self, rotation: tf.Tensor, translation: tf.Tensor, f_row, f_col, c_row, c_col, img_h: int, img_w: int):
        """Args: as the attributes; each intrinsic may be a scalar (shared) or (B,)."""
        self.rotation = tf.cast(tf.convert_to_tensor(rotation), tf.float32)
        if self.rotation.shape.rank != 3 or tuple(self.rotation.shape[1:]) != (3, 3):
            raise ValueError(f"Camera: rotation must have shape (B, 3, 3), got {self.rotation.shape}")
        self.translation = tf.cast(tf.convert_to_tensor(translation), tf.float32)
        if self.translation.shape.rank != 2 or self.translation.shape[-1] != 3:
            raise ValueError(f"Camera: translation must have shape (B, 3), got {self.translation.shape}")
        if int(img_h) != img_h or int(img_w) != img_w or img_h < 1 or img_w < 1:
            raise ValueError(f"Camera: img_h and img_w must be positive integers (px), got {img_h!r}, {img_w!r}")
        self.img_h, self.img_w = int(img_h), int(img_w)
        batch = tf.shape(self.rotation)[0]
        self.f_row, self.f_col = _per_view(f_row, batch, "f_row"), _per_view(f_col, batch, "f_col")
        self.c_row, self.c_col = _per_view(c_row, batch, "c_row"), _per_view(c_col, batch, "c_col")

    @classmethod
    def from_az_el(
        cls, az: tf.Tensor, el: tf.Tensor, img_h: int, img_w: int, distance: float = DEFAULT_DISTANCE
    ) -> Camera:
        """The original's camera: rotation R = R_el @ R_az (:func:`world2cam`), t = (0, 0, -distance),
        focal 120 px and principal point 32 px at 64x64, scaled with the image (:func:`intrinsics`).

        Args:
            az, el: float32 (B,), azimuth and elevation in radians (one per view).
            img_h, img_w: int, image size in px; distance: float, world units.
        ``Camera.from_az_el(az, el, H, W).project(xyz)`` equals ``project(xyz, az, el, H, W)``
        bit for bit (tests/test_renderer_api.py).
        """
        rot = _rotation(tf.cast(az, tf.float32), tf.cast(el, tf.float32))  # (B,3,3)
        trans = tf.broadcast_to(tf.constant([0.0, 0.0, -distance], tf.float32), [tf.shape(rot)[0], 3])
        return cls(rot, trans, *intrinsics(img_h, img_w), img_h, img_w)

    @classmethod
    def from_opencv(cls, K: tf.Tensor, R: tf.Tensor, t: tf.Tensor, img_h: int, img_w: int) -> Camera:
        """Cameras given in OpenCV's convention: ``[u, v, 1]^T ~ K (R x + t)``, u = column px,
        v = row px, the camera looking down +z.

        Args:
            K: (B, 3, 3) or (3, 3) intrinsic matrices [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (px;
                skew is not supported and ignored).
            R: (B, 3, 3) world -> camera rotations; t: (B, 3) translations (world units).
            img_h, img_w: int, image size in px.
        """
        K = tf.cast(tf.convert_to_tensor(K), tf.float32)
        flip = tf.constant(_FROM_OPENCV, tf.float32)
        rot = tf.matmul(tf.broadcast_to(flip, tf.shape(R)), tf.cast(R, tf.float32))
        trans = tf.linalg.matvec(flip, tf.cast(t, tf.float32))
        return cls(rot, trans, K[..., 1, 1], K[..., 0, 0], K[..., 1, 2], K[..., 0, 2], img_h, img_w)

    @property
    def batch_size(self):
        """B, the number of views (int when static, else an int32 scalar tensor)."""
        static = self.rotation.shape[0]
        static = static.value if hasattr(static, "value") else static
        return static if static is not None else tf.shape(self.rotation)[0]

    def world_to_camera(self, xyz: tf.Tensor) -> tf.Tensor:
        """World -> camera coordinates.

        Args:
            xyz: float32 (B, N, 3) world points, one cloud per view, or (N, 3) / (1, N, 3), one
                cloud seen by every view.
        Returns:
            float32 (B, N, 3): ``R @ x + t``; visible points have z < 0.
        """
        xyz = tf.cast(tf.convert_to_tensor(xyz), tf.float32)
        if xyz.shape.rank == 2:
            xyz = xyz[None]
        if xyz.shape.rank != 3 or xyz.shape[-1] != 3:
            raise ValueError(f"Camera: xyz must have shape (B, N, 3) or (N, 3), got {xyz.shape}")
        if xyz.shape[0] == 1:  # one cloud for every view (a no-op when B = 1)
            xyz = tf.broadcast_to(xyz, tf.stack([tf.shape(self.rotation)[0], tf.shape(xyz)[1], 3]))
        out = tf.matmul(xyz, self.rotation, transpose_b=True)  # (B,N,3) = xyz @ R^T
        return out + self.translation[:, None, :]

    def project(self, xyz: tf.Tensor) -> tf.Tensor:
        """World points -> ``pix`` for the renderers.

        Args:
            xyz: float32 (B, N, 3) or (N, 3), world points (see :meth:`world_to_camera`).
        Returns:
            float32 (B, N, 3): row px (image axis 0), column px, depth (world units, > 0);
            points behind the camera at row = col = -1e4, depth 1e-3, zero gradient.
            Differentiable w.r.t. xyz and every camera tensor.
        """
        return _pinhole(
            self.world_to_camera(xyz),
            self.f_row[:, None],
            self.f_col[:, None],
            self.c_row[:, None],
            self.c_col[:, None],
        )
