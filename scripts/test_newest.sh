#!/usr/bin/env bash
# The whole suite on the newest releases that lisa_ros/setup.py and requirements/ros.in admit, no lock:
# what someone installing lisa_ros into their own environment gets today. Run it before each lock
# refresh (scripts/lock.sh --upgrade): what fails here is what a refreshed lock would bring in.
# Usage: scripts/test_newest.sh [VENV] [pytest arguments...]   (default VENV: .venv-newest, made anew)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-newest}
rm -rf "$VENV"
./scripts/setup.sh "$VENV" newest
"$VENV/bin/python" -m pip list --format=freeze 2>/dev/null |
    grep -i -E '^(numpy|opencv-python-headless|pillow|torch|torchvision|transformers|peft|huggingface.hub)==' |
    sed 's/^/[newest] /'
exec ./scripts/test.sh "$VENV" "${@:2}"
