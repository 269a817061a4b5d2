#!/usr/bin/env bash
# Evaluate a trained rgb experiment on the test split (architecture read from its args.json).
# Extra arguments are appended, e.g.  bash run_metrics_rgb.sh --exp experiments/my_run --visualize
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
python rgb/metrics_rgb.py \
    --exp experiments/chair_rgb \
    --snapshot best \
    --eval_set test \
    --save_screenshots \
    --tqdm \
    "$@"
