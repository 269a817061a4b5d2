#!/usr/bin/env bash
# The main job, end to end:  bash run_demo.sh [rgb|partseg]
#
#   1. sets up .venv and builds tf_ops (scripts/setup_env.sh; quick when already done),
#   2. generates the demo data set into data/ unless data/ already holds one,
#   3. trains the model on the demo chairs with a short schedule (experiments/demo_<task>;
#      re-running resumes, and a finished run is not trained again),
#   4. evaluates the best snapshot (lowest validation Chamfer) and the last one on the test split,
#      against image-free baselines and the floor (ground truth vs a second sampling of its surface),
#   5. saves screenshots and prints both tables, then best and final side by side.
#
# Knobs (environment): DEMO_ITERS (training iterations), DEMO_EXP (experiment folder),
# DEMO_CATEGORY (default chair), DEMO_PRESET (recommended, or original: the original code's
# effective training settings on the same data and schedule; default experiment folder then
# experiments/demo_<task>_original), DEMO_VIEW_CACHE (off, or auto: read the views from the packed
# cache of utils/data/cache.py, built on first use; the same batches bit for bit; default auto).
set -euo pipefail
cd "$(dirname "$0")"
task="${1:-rgb}"
case "$task" in rgb|partseg) ;; *) echo "usage: bash run_demo.sh [rgb|partseg]" >&2; exit 2;; esac
start=$(date +%s)
source scripts/setup_env.sh

category="${DEMO_CATEGORY:-chair}"
preset="${DEMO_PRESET:-recommended}"
case "$preset" in recommended) suffix="";; original) suffix="_original";;
    *) echo "DEMO_PRESET must be recommended or original, got '$preset'" >&2; exit 2;; esac
exp="${DEMO_EXP:-experiments/demo_$task$suffix}"
iters="${DEMO_ITERS:-8000}"
view_cache="${DEMO_VIEW_CACHE:-auto}"

bash scripts/ensure_demo_data.sh "$category" "$task"

echo "run_demo: training $task on $category for $iters iterations ($preset preset) -> $exp"
# The same schedule and validation cadence for either preset; the method's settings come from it.
python "$task/train_$task.py" --exp "$exp" --category "$category" --preset "$preset" \
    --N_ITERS "$iters" --print_n 250 --save_n 500 --save_model_n 500 --view_cache "$view_cache"

echo "run_demo: evaluating the best snapshot on the test split (every input view of every model)"
python "$task/metrics_$task.py" --exp "$exp" --snapshot best --eval_set test --input_views all \
    --out "$exp/metrics_test" --save_screenshots --n_pictures 8 --tqdm

echo "run_demo: evaluating the last snapshot the same way"
python "$task/metrics_$task.py" --exp "$exp" --snapshot latest --eval_set test --input_views all \
    --out "$exp/metrics_test_final" --tqdm

echo
echo "run_demo: best and final snapshot side by side"
python -m utils.eval.compare "$exp/metrics_test/summary.json" "$exp/metrics_test_final/summary.json" \
    --labels best final

elapsed=$(( $(date +%s) - start ))
echo
echo "run_demo: done in $((elapsed / 60)) min $((elapsed % 60)) s. What it did:"
echo "  data:        data/ (demo data set, see data/README.md)"
echo "  experiment:  $exp (args.json, log.txt, TensorBoard logs in logs/, snapshots/, best/)"
echo "  projections: $exp/log_proj_images/<iteration>/ (input | GT mask | predicted mask | GT | predicted)"
echo "  metrics:     $exp/metrics_test/summary.json and per_sample.csv (best snapshot; the last one:"
echo "               $exp/metrics_test_final/); validation set: $exp/val_set.json"
echo "  pictures:    $exp/metrics_test/screenshots/ (input, ground truth and prediction from 4 angles)"
echo "  viewer:      $exp/metrics_test/viewer.html (open it in a browser, no network needed: the clouds to turn)"
tb="$(command -v tensorboard || echo tensorboard)"; tb="${tb#"$PWD/"}"
echo "  TensorBoard: $tb --logdir $exp/logs    then open http://localhost:6006 (MESH: the clouds;"
echo "               docs/training.md says what each dashboard shows). On a remote machine, either add"
echo "               --bind_all and open http://<machine>:6006, or keep it local there and tunnel from your"
echo "               computer: ssh -N -L 6006:localhost:6006 <you>@<machine>, then http://localhost:6006"
