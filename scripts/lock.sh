#!/usr/bin/env bash
# Refreshes the locks that `make setup` and CI install from, with uv's resolver:
#   requirements/dev.lock     .venv (Python 3.11): torch, the ROS 2 wheels, lisa_ros[test,quantization]
#                             and what the ros2 tools' installer asks for (requirements/dev.in)
#   requirements/colcon.lock  colcon and its setuptools < 80, installed into .venv/colcon
#   requirements/jazzy.lock   the ROS Jazzy user stack (Python 3.12, Ubuntu 24.04's numpy/OpenCV/Pillow)
#                             with the model stack held at dev.lock's versions wherever they resolve
# Each lock pins every package, transitive ones included, for x86-64 manylinux_2_28.
#
# Before refreshing, run scripts/test_newest.sh: it tests the newest releases that a refresh would take.
# After refreshing: make setup && make test && scripts/test_jazzy.sh, then commit the locks.
#
# Usage: scripts/lock.sh [--upgrade]   (without --upgrade, versions already locked are kept where they
#        still satisfy the inputs: use that after editing an input; with it, everything moves to the newest)
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.10
PLATFORM=x86_64-manylinux_2_28

UV=${UV:-}
if [[ -z "$UV" ]]; then
    if command -v uv >/dev/null && [[ "$(uv --version)" == "uv $UV_VERSION"* ]]; then
        UV=uv
    else
        echo "[lock] installing uv $UV_VERSION into build/uv"
        python3 -m venv build/uv
        build/uv/bin/pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
        UV=build/uv/bin/uv
    fi
fi

compile() {  # compile INPUT OUTPUT PYTHON_VERSION [uv options...]
    local input=$1 output=$2 python=$3
    echo "[lock] $input -> $output (Python $python)"
    "$UV" pip compile "$input" -o "$output" --quiet --python-version "$python" \
        --python-platform "$PLATFORM" --no-emit-package lisa-ros --custom-compile-command scripts/lock.sh \
        "${@:4}" "${UPGRADE[@]}"
}

UPGRADE=()
[[ "${1:-}" == "--upgrade" ]] && UPGRADE=(--upgrade)

compile requirements/dev.in requirements/dev.lock 3.11
compile requirements/colcon.in requirements/colcon.lock 3.11

# Jazzy's apt versions replace the dev lock's numpy, OpenCV and Pillow; the rest of the dev lock
# constrains the compile, so both stacks test the same model stack.
constraints=build/lock/dev-lock-less-apt-packages.txt
mkdir -p build/lock
grep -v -i -E '^(numpy|opencv-python-headless|pillow)==' requirements/dev.lock | grep -E '^[a-z0-9]' >"$constraints"
compile requirements/jazzy.in requirements/jazzy.lock 3.12 --constraint "$constraints"

echo "[lock] done: git diff requirements/ shows what moved"
