"""ShapeNet part annotations (Yi et al. 2016) transferred from points to mesh faces.

The part-segmentation benchmark stores, per model, a few thousand labelled
surface points: ``<synset>/points/<model>.pts`` (one "x y z" line per point)
and ``<synset>/points_label/<model>.seg`` (one 1-based part label per line).
Those points were sampled from the ShapeNetCore models but are not stored in
the frame, position or scale of the mesh files, so they are aligned first
(:func:`align_points`):

1. both the points and dense samples of the (normalised) mesh are centred on
   their bounding boxes and scaled to a unit bounding-box diagonal;
2. of the 24 rotations that map coordinate axes onto coordinate axes, the one
   with the smallest Chamfer distance (mean nearest-neighbour distance, both
   ways) between the rotated points and the mesh samples is kept;
3. a few ICP steps refine a uniform scale and a translation (rotation fixed).

Every face then takes the label of the annotated points nearest to it
(:func:`face_labels`: a vote of its centroid and three inner points, the
centroid breaking ties). The agreement of the transfer (:func:`agreement`) is
the fraction of annotated points whose nearest mesh surface sample lies on a
face of their own label; with the distance of the aligned points to the mesh
it is reported per model.
"""

import itertools
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

N_SURFACE_SAMPLES = 20000
ICP_STEPS = 10


class AnnotationError(ValueError):
    """A part-annotation file is malformed."""


def annotation_files(root, synset, model_id):
    """``(pts path, seg path)`` of a model in a part-annotation folder, or None when absent."""
    root = Path(root)
    pts = root / synset / "points" / f"{model_id}.pts"
    seg = root / synset / "points_label" / f"{model_id}.seg"
    return (pts, seg) if pts.is_file() and seg.is_file() else None


def read_annotation(pts_path, seg_path):
    """Points float (N, 3) and labels int (N,) (1-based) of one annotated model."""
    try:
        pts = np.loadtxt(pts_path, dtype=np.float64, ndmin=2)
        seg = np.loadtxt(seg_path, dtype=np.float64, ndmin=1)
    except ValueError as err:
        raise AnnotationError(f"{pts_path} / {seg_path}: cannot read ({err})") from None
    if pts.ndim != 2 or pts.shape[1] < 3 or len(pts) == 0:
        raise AnnotationError(f"{pts_path}: expected one 'x y z' line per point")
    if seg.shape != (len(pts),) or np.any(seg != np.round(seg)) or seg.min() < 1:
        raise AnnotationError(
            f"{seg_path}: expected one integer label >= 1 per point of {pts_path} "
            f"({len(pts)} points), got {seg.size} values"
        )
    return pts[:, :3], seg.astype(np.int64)


def axis_rotations():
    """The 24 proper rotations that permute the coordinate axes (with signs), identity first."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            if np.linalg.det(m) > 0:
                out.append(m)
    return out


def _unit_box(x):
    lo, hi = x.min(0), x.max(0)
    diag = np.linalg.norm(hi - lo)
    return (x - (lo + hi) / 2) / (diag if diag > 0 else 1.0), (lo + hi) / 2, diag


def align_points(points, samples):
    """Similarity transform taking annotated points onto the mesh.

    Args:
        points: float (N, 3), the annotation's frame.
        samples: float (M, 3), dense samples of the mesh surface, mesh frame.
    Returns:
        ``(aligned (N, 3), info)``, info a dict: ``rotation`` (3x3 list),
        ``scale``, ``chamfer`` (of the chosen rotation, unit-diagonal units),
        ``rmse`` (aligned points to the nearest sample, mesh units).
    """
    p0, _, p_diag = _unit_box(np.asarray(points, np.float64))
    s0, s_centre, s_diag = _unit_box(np.asarray(samples, np.float64))
    tree_s = cKDTree(s0)
    best = None
    for rot in axis_rotations():
        q = p0 @ rot.T
        cd = tree_s.query(q)[0].mean() + cKDTree(q).query(s0)[0].mean()
        if best is None or cd < best[0] - 1e-9:
            best = (cd, rot)
    chamfer, rot = best
    a = p0 @ rot.T
    scale, shift = 1.0, np.zeros(3)
    for _ in range(ICP_STEPS):  # least squares scale + translation onto the nearest samples
        b = s0[tree_s.query(a * scale + shift)[1]]
        am, bm = a.mean(0), b.mean(0)
        den = np.sum((a - am) ** 2)
        scale = float(np.sum((a - am) * (b - bm)) / den) if den > 0 else 1.0
        shift = bm - scale * am
    aligned = (a * scale + shift) * s_diag + s_centre
    dist = cKDTree(samples).query(aligned)[0]
    info = dict(
        rotation=rot.astype(int).tolist(),
        scale=float(scale * s_diag / (p_diag if p_diag > 0 else 1.0)),
        chamfer=float(chamfer),
        rmse=float(np.sqrt(np.mean(dist**2))),
    )
    return aligned, info


def face_labels(triangles, points, labels):
    """Label of every face from the nearest annotated points.

    Args:
        triangles: float (F, 3, 3), the mesh's faces.
        points: float (N, 3) aligned annotated points; labels int (N,) >= 1.
    Returns:
        int (F,): majority label of the points nearest to the face's centroid
        and to three inner points (barycentric 2/3, 1/6, 1/6 and
        permutations); the centroid's label wins ties.
    """
    weights = np.array([[1 / 3, 1 / 3, 1 / 3], [2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]])
    query = np.einsum("kj,fjd->fkd", weights, triangles)  # (F, 4, 3)
    nearest = cKDTree(points).query(query.reshape(-1, 3))[1]
    votes = np.asarray(labels)[nearest].reshape(-1, 4)
    top = int(votes.max())
    counts = np.stack([(votes == k).sum(1) + 0.5 * (votes[:, 0] == k) for k in range(top + 1)], 1)
    return counts.argmax(1).astype(np.int64)


def agreement(points, labels, sample_xyz, sample_labels):
    """Fraction of annotated points whose nearest surface sample has their label."""
    nearest = cKDTree(sample_xyz).query(points)[1]
    return float(np.mean(np.asarray(sample_labels)[nearest] == np.asarray(labels)))


def transfer(surface, points, labels, rng, n_samples=N_SURFACE_SAMPLES):
    """Align annotated points with ``surface`` and label its faces.

    Returns ``(face labels int (F,), report dict)``; the report holds the
    alignment (:func:`align_points`) plus ``agreement`` and ``n_points``.
    """
    xyz, face, _ = surface.sample(n_samples, rng)
    aligned, info = align_points(points, xyz)
    labs = face_labels(surface.triangles, aligned, labels)
    info["agreement"] = agreement(aligned, labels, xyz, labs[face])
    info["n_points"] = int(len(points))
    return labs, info
