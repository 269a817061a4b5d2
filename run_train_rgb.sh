#!/usr/bin/env bash
# Train the rgb model with the recommended flags (the original's, on the chair category).
# Extra arguments are appended and override these, e.g.
#   bash run_train_rgb.sh --exp experiments/my_run --N_ITERS 20000
# Re-running the same command resumes from the latest snapshot.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
python rgb/train_rgb.py \
    --exp experiments/chair_rgb \
    --category chair \
    --N_VIEWS 4 \
    --SIGMA_SQ_MASK 0.4 \
    --WELL_RADIUS 1.0 \
    --BETA 100 \
    --wt_bce 1.0 \
    --wt_aff_fwd 1.0 \
    --wt_aff_bwd 1.0 \
    --wt_aff_pts 1.0 \
    --wt_decay 0.1 \
    --wt_rgb 1.0 \
    --skipconn \
    --batch_size 8 \
    --lr 5e-5 \
    --print_n 100 \
    --save_n 1000 \
    --save_model_n 5000 \
    --N_ITERS 200000 \
    "$@"
