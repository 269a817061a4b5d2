#!/usr/bin/env bash
# Set up the environment if needed, then run the whole test suite.
# Extra arguments go to pytest, e.g.  bash run_tests.sh -k projection -x
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh
python -m pytest "$@"
