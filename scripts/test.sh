#!/usr/bin/env bash
# Runs the checks CI enforces, in the venv made by setup.sh: the format and lint of every Python file
# (ruff, configured in ruff.toml), then the whole test suite: lisa_ros/test/unit (no ROS needed) and
# lisa_ros/test/graph (processes on a local ROS 2 graph).
# Extra arguments go to pytest, e.g. `scripts/test.sh .venv -m 'not slow'` or `-k lifecycle`.
# To fix the format: .venv/bin/ruff format . && .venv/bin/ruff check --fix .
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
echo "[test] ruff format --check, ruff check"
"$VENV/bin/ruff" format --check --quiet . || {
    echo "[test] files are not formatted: run $VENV/bin/ruff format ." >&2
    exit 1
}
"$VENV/bin/ruff" check --quiet .
exec "$VENV/bin/python" -m pytest lisa_ros/test -q "${@:2}"
