"""Reading data: the layout of the files, readers of single files, the batch pipeline.

Rooms inside (``layout`` → ``readers`` → ``pipeline``; ``distance_map`` and ``shapenet``
are used by all three). The names most callers need are re-exported here, so
``from utils.data import BatchPipeline, DataError, list_models`` works; see each module
for the rest.
"""

from utils.data.layout import (
    N_GT_PTS,
    PART_NAMES_FILE,
    PART_TREE_DIR,
    PCL_COLOURS_FILE,
    PCL_DIR,
    PCL_FILE,
    PCL_LABELS_FILE,
    RENDERED_DIR,
    SPLITS,
    SPLITS_DIR,
    VIEWS_FILE,
    check_data_dir,
    depth_file,
    has_dataset,
    label_map_file,
    list_models,
    missing_dataset,
    n_parts,
    part_names,
    read_split,
    render_file,
    split_file,
    split_list_file,
    tree_dirs,
    tree_root,
)
from utils.data.pipeline import BatchPipeline
from utils.data.readers import (
    DataError,
    read_cloud,
    read_cloud_colours,
    read_cloud_labels,
    read_label_map,
    read_mask,
    read_rgb,
    read_views,
)

__all__ = [
    "N_GT_PTS",
    "PART_NAMES_FILE",
    "PART_TREE_DIR",
    "PCL_COLOURS_FILE",
    "PCL_DIR",
    "PCL_FILE",
    "PCL_LABELS_FILE",
    "RENDERED_DIR",
    "SPLITS",
    "SPLITS_DIR",
    "VIEWS_FILE",
    "check_data_dir",
    "depth_file",
    "has_dataset",
    "missing_dataset",
    "label_map_file",
    "list_models",
    "n_parts",
    "part_names",
    "read_split",
    "render_file",
    "split_file",
    "split_list_file",
    "tree_dirs",
    "tree_root",
    "BatchPipeline",
    "DataError",
    "read_cloud",
    "read_cloud_colours",
    "read_cloud_labels",
    "read_label_map",
    "read_mask",
    "read_rgb",
    "read_views",
]
