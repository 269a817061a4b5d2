"""ShapeNet bookkeeping: category names <-> synset ids, part counts, axis alignment.

Numpy only. The synset ids are ShapeNetCore's WordNet offsets; the 13 categories
of the usual single-view reconstruction benchmark are listed first, followed by
the extra categories of the part-annotated subset (Yi et al., 2016), which share
the id space.
"""

import numpy as np

# The 13 categories used by 3D-R2N2 / DRC / CAPNet / DIFFER, then the rest of the
# 16 part-annotated categories.
CATEGORY_TO_SYNSET = {
    "airplane": "02691156",
    "bench": "02828884",
    "cabinet": "02933112",
    "car": "02958343",
    "chair": "03001627",
    "display": "03211117",
    "lamp": "03636649",
    "speaker": "03691459",
    "rifle": "04090263",
    "sofa": "04256520",
    "table": "04379243",
    "telephone": "04401088",
    "vessel": "04530566",
    # part-annotation categories outside the 13
    "bag": "02773838",
    "cap": "02954340",
    "earphone": "03261776",
    "guitar": "03467517",
    "knife": "03624134",
    "laptop": "03642806",
    "motorbike": "03790512",
    "mug": "03797390",
    "pistol": "03948459",
    "rocket": "04099429",
    "skateboard": "04225987",
}
SYNSET_TO_CATEGORY = {v: k for k, v in CATEGORY_TO_SYNSET.items()}

# Other spellings met in ShapeNet tooling (the original code says 'aero').
ALIASES = {
    "aero": "airplane",
    "aeroplane": "airplane",
    "plane": "airplane",
    "monitor": "display",
    "loudspeaker": "speaker",
    "phone": "telephone",
    "cellphone": "telephone",
    "watercraft": "vessel",
    "boat": "vessel",
    "couch": "sofa",
    "automobile": "car",
}

# Number of part classes per category in the part annotations of Yi et al.
PART_COUNTS = {
    "airplane": 4,
    "bag": 2,
    "cap": 2,
    "car": 4,
    "chair": 4,
    "earphone": 3,
    "guitar": 3,
    "knife": 2,
    "lamp": 4,
    "laptop": 2,
    "motorbike": 6,
    "mug": 2,
    "pistol": 3,
    "rocket": 3,
    "skateboard": 3,
    "table": 3,
}

# Part names of the demo data set, in label order (label k+1 in the files, k in
# the batches). They follow the part vocabulary of the ShapeNet annotations.
DEMO_PART_NAMES = {
    "chair": ("back", "seat", "leg", "arm"),
    "airplane": ("body", "wing", "tail", "engine"),
    "car": ("body", "roof", "hood", "wheel"),
}


def synset_id(category):
    """Synset id (8-digit string) for a category name, alias or synset id.

    Any 8-digit string is accepted as a synset id (ShapeNetCore has 55 synsets,
    and users' own collections may pick an id of their own, see
    ``data/make_dataset.py``). Raises ValueError for anything else unknown,
    listing the known names.
    """
    key = str(category).strip().lower()
    if key in SYNSET_TO_CATEGORY or (len(key) == 8 and key.isascii() and key.isdigit()):
        return key
    key = ALIASES.get(key, key)
    if key in CATEGORY_TO_SYNSET:
        return CATEGORY_TO_SYNSET[key]
    known = ", ".join(sorted(CATEGORY_TO_SYNSET))
    raise ValueError(f"unknown ShapeNet category {category!r}; known: {known} (or their synset ids)")


def category_name(category):
    """Canonical category name for a name, alias or synset id (ValueError if unknown); a synset id
    outside the table is its own name."""
    syn = synset_id(category)
    return SYNSET_TO_CATEGORY.get(syn, syn)


def preprocess_pcl_gt(pcl):
    """Align a ShapeNet-frame cloud with the renderer's (camera module's) world frame.

    ShapeNet models are stored with y up. The renders of the original data set
    use a frame in which x points down (so the camera orbit of
    :mod:`utils.render.camera`, an azimuth about x, circles the object's vertical axis):
    ``(x, y, z) -> (-y, -z, x)``, a proper rotation (det +1). This is the same
    mapping as ``preprocess_pcl_gt`` of the original code, done without
    modifying the input.

    Args:
        pcl: float array (..., 3), ShapeNet frame.
    Returns:
        array of the same shape and dtype, renderer frame.
    """
    pcl = np.asarray(pcl)
    return np.stack([-pcl[..., 1], -pcl[..., 2], pcl[..., 0]], -1)


# The rotation matrix of preprocess_pcl_gt (renderer = shapenet @ ALIGN.T), read off the function.
ALIGN = preprocess_pcl_gt(np.eye(3)).T


def undo_preprocess_pcl_gt(pcl):
    """Inverse of :func:`preprocess_pcl_gt`: renderer frame -> ShapeNet frame (same dtype).

    ``ALIGN`` is a rotation, so its inverse is its transpose; its entries are 0 and +-1, so
    the product is exact in any float dtype.
    """
    pcl = np.asarray(pcl)
    return (pcl @ ALIGN).astype(pcl.dtype, copy=False)
