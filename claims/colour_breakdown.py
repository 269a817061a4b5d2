"""Where a trained rgb model's colour error lives: by part, hidden or visible side, near part
boundaries, and on ground-truth points that no view shows (docs/results.md, claim 1).

    python claims/colour_breakdown.py --ablation experiments/ablation_rgb_flat --data_dir data \
        --out experiments/breakdown_rgb_flat

The breakdown is :func:`utils.eval.breakdown.main` (``--help`` lists the flags); which points a
view sees comes from the demo generator (:func:`utils.datagen.demo_data.point_visibility`).
"""

import sys

from utils.datagen.demo_data import point_visibility
from utils.eval.breakdown import main

if __name__ == "__main__":
    sys.exit(main(visibility_of=point_visibility))
