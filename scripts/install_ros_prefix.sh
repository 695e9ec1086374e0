#!/usr/bin/env bash
# Makes a venv behave like a ROS 2 install prefix for lisa_ros, the way `colcon build
# --symlink-install` lays a package out, so that with AMENT_PREFIX_PATH=VENV
# `ros2 launch lisa_ros lisa.launch.py`, `ros2 run lisa_ros lisa_node` and `ros2 pkg prefix lisa_ros`
# work. (pip's editable install puts the code and the console scripts in the venv but skips
# setup.py's data_files: no ament index entry, no share/lisa_ros, no lib/lisa_ros.)
#
# Also installs colcon (PyPI, at requirements/colcon.lock's versions) into VENV/colcon with a
# VENV/bin/colcon wrapper: colcon pins setuptools<80, which must not replace the venv's own.
#
# Usage: scripts/install_ros_prefix.sh [VENV]   (default .venv; lisa_ros already pip-installed)
# Safe to run again. Links point into this checkout: edits to launch/config/rviz are live.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(realpath -m "${1:-.venv}")
PACKAGE=lisa_ros
SOURCE=$(realpath "$PACKAGE")
# The executables `ros2 run lisa_ros ...` finds (console scripts of lisa_ros/setup.py).
SCRIPTS=(lisa_node lisa-ask lisa-segment lisa-eval rgbd_player)

for script in "${SCRIPTS[@]}"; do
    if [[ ! -x "$VENV/bin/$script" ]]; then
        echo "[ros-prefix] $VENV/bin/$script is missing: pip install -e ./lisa_ros first (make setup)" >&2
        exit 1
    fi
done

echo "[ros-prefix] $PACKAGE as a ROS package of $VENV"
mkdir -p "$VENV/share/ament_index/resource_index/packages" "$VENV/share/$PACKAGE" "$VENV/lib/$PACKAGE"
cp "$SOURCE/resource/$PACKAGE" "$VENV/share/ament_index/resource_index/packages/$PACKAGE"
ln -sfn "$SOURCE/package.xml" "$VENV/share/$PACKAGE/package.xml"
# Folders of links, not links to folders: `ros2 launch` looks for launch files with os.walk, which
# does not enter a linked folder. (A file added to launch/ later needs this script run again.)
for folder in launch config rviz; do
    rm -rf "$VENV/share/$PACKAGE/$folder"
    mkdir -p "$VENV/share/$PACKAGE/$folder"
    for file in "$SOURCE/$folder"/*; do
        ln -sfn "$file" "$VENV/share/$PACKAGE/$folder/"
    done
done
# The demo's data (scene, adapter, tiny model) is read, not searched: one link to the folder.
ln -sfn "$SOURCE/demo" "$VENV/share/$PACKAGE/demo"
for script in "${SCRIPTS[@]}"; do
    ln -sfn "../../bin/$script" "$VENV/lib/$PACKAGE/$script"
done

echo "[ros-prefix] colcon into $VENV/colcon"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade --target "$VENV/colcon" \
    --no-deps -r requirements/colcon.lock
"$VENV/bin/python" - "$VENV/colcon" <<'PY' || { echo "[ros-prefix] colcon did not install" >&2; exit 1; }
import sys
sys.path.insert(0, sys.argv[1])
import colcon_core, colcon_ros  # noqa: E401,F401
PY
cat >"$VENV/bin/colcon" <<'WRAPPER'
#!/usr/bin/env bash
# colcon from PyPI, kept in ../colcon with the setuptools it pins (scripts/install_ros_prefix.sh).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHONPATH="$here/../colcon${PYTHONPATH:+:$PYTHONPATH}" exec "$here/python" -c \
    'import sys; from colcon_core.command import main; sys.exit(main())' "$@"
WRAPPER
chmod +x "$VENV/bin/colcon"
echo "[ros-prefix] done: AMENT_PREFIX_PATH=$VENV finds $PACKAGE; colcon is $VENV/bin/colcon"
