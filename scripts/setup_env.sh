# shellcheck shell=bash
# Prepare (if needed) and activate the project's Python environment.
#
# Sourced by every entry script (run_demo.sh, run_tests.sh, run_train_*.sh, ...):
#   source "$(dirname "$0")/scripts/setup_env.sh"
# Idempotent: a stamp in .venv records the hash of the requirements and of
# pyproject.toml; when they have not changed, nothing is installed again and
# this takes a few seconds (the tf_ops build is incremental too).
#
# Environment variables:
#   DIFFER_USE_CURRENT_ENV=1  use the python already on PATH (your own conda or
#                             venv); install nothing, only build tf_ops.
#   DIFFER_GPU=1 / 0          force the CUDA / CPU requirements (default: CUDA
#                             when `nvidia-smi -L` lists a GPU).
#   DIFFER_PYTHON=python3.12  interpreter used to create .venv (>= 3.11).
#   DIFFER_VENV=path          where the environment lives (default: .venv).

DIFFER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DIFFER_ROOT

_differ_die() { echo "setup_env: $*" >&2; return 1; }
# Run a command, showing its output only when it fails: pip's build back-end prints pages of
# deprecation notices even with -q, which would bury the start of every log.
_differ_quiet() { local out; out="$("$@" 2>&1)" || { printf '%s\n' "$out" >&2; return 1; }; }

_differ_setup() {
    local py req venv stamp want have
    if [ "${DIFFER_USE_CURRENT_ENV:-0}" = "1" ]; then
        py="$(command -v python3 || command -v python)" || { _differ_die "DIFFER_USE_CURRENT_ENV=1 but no python on PATH"; return 1; }
        "$py" -c "import utils, tensorflow" 2>/dev/null || {
            _differ_die "DIFFER_USE_CURRENT_ENV=1: '$py' cannot import 'utils' and 'tensorflow'. Inside your environment run: pip install -r requirements.txt && pip install -e . --no-deps"
            return 1
        }
        echo "setup_env: using the current environment ($py)"
    else
        py="${DIFFER_PYTHON:-python3}"
        command -v "$py" >/dev/null || { _differ_die "'$py' not found; set DIFFER_PYTHON to a Python >= 3.11"; return 1; }
        "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
            _differ_die "$("$py" --version 2>&1) is too old: DIFFER needs Python >= 3.11 (set DIFFER_PYTHON)"; return 1; }
        venv="${DIFFER_VENV:-$DIFFER_ROOT/.venv}"
        if [ "${DIFFER_GPU:-}" = "1" ] || { [ -z "${DIFFER_GPU:-}" ] && nvidia-smi -L >/dev/null 2>&1; }; then
            req="$DIFFER_ROOT/requirements-gpu.txt"
        else
            req="$DIFFER_ROOT/requirements.txt"
        fi
        if [ ! -x "$venv/bin/python" ]; then
            echo "setup_env: creating $venv"
            "$py" -m venv "$venv" || { _differ_die "could not create $venv"; return 1; }
        fi
        stamp="$venv/.differ-installed"
        want="$(cat "$req" "$DIFFER_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1) $(basename "$req")"
        have="$(cat "$stamp" 2>/dev/null)"
        if [ "$want" != "$have" ]; then
            echo "setup_env: installing $(basename "$req") into $venv (about a minute the first time)"
            _differ_quiet "$venv/bin/python" -m pip install -q --upgrade pip || { _differ_die "pip upgrade failed"; return 1; }
            _differ_quiet "$venv/bin/python" -m pip install -q -r "$req" || { _differ_die "installing $req failed"; return 1; }
            _differ_quiet "$venv/bin/python" -m pip install -q --no-deps -e "$DIFFER_ROOT" || { _differ_die "editable install of the project failed"; return 1; }
            echo "$want" > "$stamp"
        else
            echo "setup_env: $venv is up to date"
        fi
        # shellcheck disable=SC1091
        source "$venv/bin/activate"
        py="$venv/bin/python"
    fi
    export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
    export PYTHONUNBUFFERED=1
    # Compile the custom ops (incremental: only when a source changed).
    "$py" "$DIFFER_ROOT/tf_ops/build.py" || { _differ_die "building tf_ops failed (see above)"; return 1; }
}

_differ_setup || { return 1 2>/dev/null || exit 1; }
