#!/usr/bin/env bash
# Set up the environment if needed, check style (ruff: lint and formatting, pyproject.toml), then
# run the whole test suite. Extra arguments go to pytest, e.g.  bash run_tests.sh -k projection -x
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
echo "run_tests: ruff check and ruff format --check (fix with: ruff check --fix . && ruff format .)"
ruff check --quiet .
ruff format --check --quiet .
python -m pytest "$@"
