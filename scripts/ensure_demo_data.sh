#!/usr/bin/env bash
# Make the demo data set in data/ unless data/ already holds a data set for the category and task.
#   bash scripts/ensure_demo_data.sh [category] [task]      (defaults: chair rgb)
# Called by run_demo.sh and run_ablation.sh after scripts/setup_env.sh (uses the active python).
set -euo pipefail
cd "$(dirname "$0")/.."
category="${1:-chair}"
task="${2:-rgb}"
if python -c "import sys; from utils.data import has_dataset; sys.exit(0 if has_dataset('data', sys.argv[1], sys.argv[2]) else 1)" "$category" "$task"; then
    echo "data: using the data set already in data/"
else
    echo "data: no $category data set in data/ -> generating the demo data set (about a minute)"
    python data/make_demo_data.py
fi
