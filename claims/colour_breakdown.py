"""Where a trained rgb model's colour error lives: by part, hidden or visible side, near part
boundaries, and on ground-truth points that no view shows (docs/results.md, claim 1).

    python claims/colour_breakdown.py --ablation experiments/ablation_rgb_flat --data_dir data \
        --out experiments/breakdown_rgb_flat

A thin door to :func:`utils.eval.breakdown.main` (``--help`` lists the flags).
"""

import sys

from utils.eval.breakdown import main

if __name__ == "__main__":
    sys.exit(main())
