#!/usr/bin/env bash
# Reproduce the paper's claims:  bash run_ablation.sh [rgb|partseg] [claims/ablation.py flags]
#
# Sets up .venv (scripts/setup_env.sh), makes the demo data set in data/ unless it holds one,
# then trains and evaluates every ablation variant (2d, 3d, 2d+3d, depth-unaware, no-affinity,
# original) with the demo's schedule and 3 seeds each (--seeds), one process per run, and writes
# experiments/ablation_<task>/ table.md (mean and spread over the seeds, paired differences from
# 2d), table.json and ablation_<task>.png. Re-running resumes (finished (variant, seed) runs are
# not trained again). About 6 x 6 minutes per seed on 2 CPU cores (1.8 h for 3 seeds, rgb).
# Extra flags go to the script, e.g.
#   bash run_ablation.sh rgb --variants 2d,depth-unaware --iters 2000 --seeds 1
#   bash run_ablation.sh rgb --data_dir data/two_sided --out experiments/ablation_rgb_two-sided
#   bash run_ablation.sh rgb --copy_figure docs/ablation_rgb.png
# ('python claims/ablation.py --help' lists them.)
set -euo pipefail
cd "$(dirname "$0")"
task="rgb"
case "${1:-}" in rgb|partseg) task="$1"; shift;; -*|"") ;;
    *) echo "usage: bash run_ablation.sh [rgb|partseg] [ablation.py flags]" >&2; exit 2;; esac
source scripts/setup_env.sh
case " $* " in
    *" --data_dir"*) ;;  # the caller's own data set
    *) bash scripts/ensure_demo_data.sh chair "$task";;
esac
python claims/ablation.py --task "$task" "$@"
