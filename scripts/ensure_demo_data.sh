#!/usr/bin/env bash
# Make the demo data set in data/ (or $DIFFER_DATA_DIR) unless it already holds a data set for the category and task.
#   bash scripts/ensure_demo_data.sh [category] [task]      (defaults: chair rgb)
# Called by run_demo.sh and run_ablation.sh after scripts/setup_env.sh (uses the active python).
set -euo pipefail
cd "$(dirname "$0")/.."
category="${1:-chair}"
task="${2:-rgb}"
data_dir="${DIFFER_DATA_DIR:-data}"
# has_dataset reads the task's tree of the layout (Task.data_tree: the root, or partseg/)
if python -c "import sys; from utils.data import has_dataset; from utils.task import task_from_ref
sys.exit(0 if has_dataset(sys.argv[1], sys.argv[2], task_from_ref(sys.argv[3]).data_tree) else 1)" "$data_dir" "$category" "$task"; then
    echo "data: using the data set already in $data_dir/"
else
    echo "data: no $category data set in $data_dir/ -> generating the demo data set (about a minute)"
    python data/make_demo_data.py --out "$data_dir"
fi
