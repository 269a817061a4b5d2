#!/usr/bin/env bash
# Evaluate a trained partseg experiment with the paper's protocol: every input view of every model
# of the val split (the authors' ShapeNet release has only train and val lists) is one sample,
# at the final snapshot, with both clouds scaled to the unit cube without clipping. The
# architecture is read from the experiment's args.json. Extra arguments are appended, e.g.
#   bash run_metrics_partseg.sh --exp experiments/my_run --eval_set test --visualize
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
python partseg/metrics_partseg.py \
    --exp experiments/chair_partseg \
    --snapshot latest \
    --eval_set val \
    --input_views all \
    --save_screenshots \
    --tqdm \
    "$@"
