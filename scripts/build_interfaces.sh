#!/usr/bin/env bash
# Builds lisa_ros_interfaces (msg + action) with plain CMake against the ROS 2 wheels in a venv and
# installs it into that venv's prefix, so `from lisa_ros_interfaces.action import Segment` works
# with the venv's python and no extra environment.
#
# Usage: scripts/build_interfaces.sh [VENV]   (default .venv; the ROS wheels of
#        scripts/requirements-ros.txt and numpy must already be installed in it)
#
# Why not colcon: there is no colcon (nor a ROS 2 install) on a machine that has only the PyPI wheels.
# On a real ROS 2 install use `colcon build --packages-select lisa_ros_interfaces` instead.
#
# The message wheels were built on a manylinux image whose interpreter lived in /opt/python/cp311-cp311;
# their exported CMake files still name its Python and numpy include folders, and CMake refuses
# imported targets whose include folders do not exist. We point those at this venv's interpreter first.
# Running the script again is safe: the rewrite is a no-op once done and the build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=$(realpath -m "${1:-.venv}")
PY="$VENV/bin/python"
PKG_DIR=lisa_ros_interfaces
BUILD_DIR=build/venv/lisa_ros_interfaces  # not build/lisa_ros_interfaces: colcon's, on a real install

if [[ ! -x "$PY" ]]; then
    echo "[interfaces] no python in $VENV: create the venv first (make setup)" >&2
    exit 1
fi
for tool in cmake g++; do
    if ! command -v "$tool" >/dev/null; then
        echo "[interfaces] '$tool' not found: install it (Debian: apt-get install cmake g++)" >&2
        exit 1
    fi
done

echo "[interfaces] pointing the ROS wheels' CMake exports at $PY's include folders"
"$PY" - "$VENV" <<'EOF'
import pathlib
import re
import sys
import sysconfig

try:
    import numpy
except ImportError:
    sys.exit("[interfaces] numpy is not installed in the venv: pip install numpy (rosidl_generator_py needs it)")

python_include = sysconfig.get_paths()["include"]
if not pathlib.Path(python_include, "Python.h").is_file():
    sys.exit(f"[interfaces] no Python.h in {python_include}: install this interpreter's development headers")

# Longest first: the numpy folder lives under the builder's prefix too.
builder_paths = [
    (re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include"), numpy.get_include()),
    (re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+"), python_include),
]
rewritten = 0
for cmake_file in pathlib.Path(sys.argv[1], "share").glob("*/cmake/*.cmake"):
    text = cmake_file.read_text()
    if "/opt/python/" not in text:
        continue
    new_text = text
    for pattern, local_path in builder_paths:
        new_text = pattern.sub(local_path, new_text)
    if new_text != text:
        cmake_file.write_text(new_text)
        rewritten += 1
print(f"[interfaces] rewrote {rewritten} CMake export file(s)")
EOF

# A build folder configured for another venv would install there: start it afresh.
if [[ -f "$BUILD_DIR/CMakeCache.txt" ]] &&
    ! grep -qxF "CMAKE_INSTALL_PREFIX:PATH=$VENV" "$BUILD_DIR/CMakeCache.txt"; then
    echo "[interfaces] $BUILD_DIR was configured for another prefix: removing it"
    rm -rf "$BUILD_DIR"
fi

GENERATOR=()
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]] && command -v ninja >/dev/null; then
    GENERATOR=(-G Ninja)
fi

mkdir -p "$BUILD_DIR"
export AMENT_PREFIX_PATH="$VENV"
echo "[interfaces] configuring $PKG_DIR in $BUILD_DIR"
cmake -S "$PKG_DIR" -B "$BUILD_DIR" "${GENERATOR[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$VENV" \
    -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$PY" \
    -DBUILD_TESTING=OFF \
    --log-level=WARNING >"$BUILD_DIR.configure.log" 2>&1 || {
    tail -n 40 "$BUILD_DIR.configure.log" >&2
    echo "[interfaces] CMake configure failed (last lines above; full log in $BUILD_DIR.configure.log)" >&2
    exit 1
}
echo "[interfaces] building and installing (about 15 s on 2 cores the first time)"
{ cmake --build "$BUILD_DIR" --parallel "$(nproc)" && cmake --install "$BUILD_DIR"; } >"$BUILD_DIR.build.log" 2>&1 || {
    tail -n 40 "$BUILD_DIR.build.log" >&2
    echo "[interfaces] build failed (last lines above; full log in $BUILD_DIR.build.log)" >&2
    exit 1
}

"$PY" -c "from lisa_ros_interfaces.action import Segment; from lisa_ros_interfaces.msg import Segmentation, MaskInfo" || {
    echo "[interfaces] installed, but the venv's python cannot import lisa_ros_interfaces" >&2
    exit 1
}
echo "[interfaces] lisa_ros_interfaces installed into $VENV"
