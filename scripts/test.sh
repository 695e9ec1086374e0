#!/usr/bin/env bash
# Runs the whole test suite (ROS-free core and ROS 2 graph tests) in the venv made by setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
exec "$VENV/bin/python" -m pytest lisa_ros/test -q "${@:2}"
