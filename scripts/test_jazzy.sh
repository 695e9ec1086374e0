#!/usr/bin/env bash
# The ROS-free tests (lisa_ros/test/unit) on the stack a ROS 2 Jazzy user has:
# Ubuntu 24.04's Python 3.12 with its apt numpy 1.26.4, OpenCV 4.6.0 and Pillow 10.2.0, and the model
# stack from pip, as the README's ROS install does. requirements/jazzy.lock pins all of it: those three
# at the apt versions (OpenCV as the PyPI wheel of that release) and the rest at dev.lock's versions.
# CI runs it after `make test`; the venv (default .venv-jazzy) is reused when it is up to date.
#
# Usage: scripts/test_jazzy.sh [VENV] [pytest arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-jazzy}
LOCK=requirements/jazzy.lock

find_python312() {
    local candidate
    for candidate in "${PYTHON312:-}" python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 \
        /usr/bin/python3.12; do
        if [[ -n "$candidate" ]] &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if ! cmp -s "$LOCK" "$VENV/installed.lock" 2>/dev/null; then
    PYTHON=$(find_python312) || {
        echo "[jazzy] no Python 3.12 found: install it (Ubuntu 24.04's python3), or set PYTHON312" >&2
        exit 1
    }
    echo "[jazzy] creating $VENV with $PYTHON and the packages of $LOCK (torch: a CUDA build from PyPI)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)
    "${PIP[@]}" --no-deps -r "$LOCK"
    "${PIP[@]}" --no-deps --no-build-isolation --use-pep517 -e ./lisa_ros
    "$VENV/bin/pip" check >/dev/null || {
        "$VENV/bin/pip" check >&2
        echo "[jazzy] $LOCK misses or contradicts a requirement: run scripts/lock.sh" >&2
        exit 1
    }
    cp "$LOCK" "$VENV/installed.lock"
fi
"$VENV/bin/python" - <<'PY'
import sys
import cv2, numpy, PIL
stack = {"Python": sys.version.split()[0], "numpy": numpy.__version__, "OpenCV": cv2.__version__,
         "Pillow": PIL.__version__}
print("[jazzy] " + ", ".join(f"{name} {version}" for name, version in stack.items()))
PY
exec "$VENV/bin/python" -m pytest lisa_ros/test/unit -q -p no:cacheprovider "${@:2}"
