#!/usr/bin/env bash
# Evaluate a trained partseg experiment on the test split (architecture read from its args.json).
# Extra arguments are appended, e.g.  bash run_metrics_partseg.sh --exp experiments/my_run --visualize
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
python partseg/metrics_partseg.py \
    --exp experiments/chair_partseg \
    --snapshot best \
    --eval_set test \
    --save_screenshots \
    --tqdm \
    "$@"
