"""The README's demo, run as a user runs it: ``ros2 launch lisa_ros demo.launch.py`` with the real
ros2 tool from this venv (what ``make demo`` does), to its end.

It must end by itself with status 0 after printing the answer with ``[SEG]``, a 3D centroid that
lies on the rendered box (the scene's depth is synthetic, so where the box is is known to the
millimetre), and the path of an overlay of the scene's size.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from testbed import DEMO

BIN = Path(sys.executable).parent
ROS2 = BIN / "ros2"
SCENE = DEMO / "scene"
CENTROID = re.compile(
    r'mask (\d+) "the red box": centroid x=(-?[\d.]+) y=(-?[\d.]+) z=(-?[\d.]+) m in (\S+),'
)
# Generous: on a loaded 2-core machine the load alone can take a minute.
DEMO_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def demo(ros_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The demo's whole output and the folder it wrote, from one run."""
    if not ROS2.exists():
        pytest.skip(f"ros2 is not installed in {BIN.parent}: run `make setup` (see README)")
    output = tmp_path_factory.mktemp("demo") / "answer"
    done = subprocess.run(
        [str(ROS2), "launch", "lisa_ros", "demo.launch.py", f"output:={output}"],
        env={**ros_env, "HF_HUB_OFFLINE": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout
    return done.stdout, output


def test_the_demo_ends_cleanly_by_itself(demo) -> None:
    log, _ = demo
    assert "process has died" not in log, log
    assert "[ERROR]" not in log and "Traceback" not in log, log
    # a newcomer's first run: nothing to worry about (e.g. bitsandbytes' CPU kernel notice)
    assert "[WARN]" not in log and "WARNING" not in log, log
    assert "Demo done" in log


def test_the_demo_prints_an_answer_with_seg(demo) -> None:
    log, output = demo
    answers = re.findall(r"^\[lisa-ask-\d+\] (.*\[SEG\].*)$", log, re.MULTILINE)
    assert any("red box [SEG]" in answer for answer in answers), log
    assert "SUCCESS: 1 mask(s)" in log
    result = json.loads((output / "result.json").read_text())
    assert "[SEG]" in result["text"] and len(result["masks"]) == 1


def test_the_centroid_lies_on_the_box_the_scene_shows(demo) -> None:
    log, _ = demo
    scene = json.loads((SCENE / "scene.json").read_text())
    centroids = CENTROID.findall(log)
    assert len(centroids) == 1, log
    index, x, y, z, frame = centroids[0]
    assert frame == scene["frame_id"]
    centroid = np.array([float(x), float(y), float(z)])
    box = scene["objects"]["red box"]
    # On (or within a centimetre of) the box: its visible faces are its surface.
    assert (centroid >= np.array(box["min_xyz"]) - 0.01).all(), centroid
    assert (centroid <= np.array(box["max_xyz"]) + 0.01).all(), centroid
    # And near the mean of the box's visible surface, from the scene's own depth and mask.
    assert np.linalg.norm(centroid - visible_surface_centroid(scene)) < 0.03


def visible_surface_centroid(scene: dict) -> np.ndarray:
    depth = cv2.imread(str(SCENE / scene["depth"]), cv2.IMREAD_UNCHANGED) / 1000.0
    rows, cols = np.nonzero(cv2.imread(str(SCENE / scene["target_mask"]), 0))
    fx, _, cx, _, fy, cy, *_ = scene["k"]
    z = depth[rows, cols]
    return np.array([((cols - cx) * z / fx).mean(), ((rows - cy) * z / fy).mean(), z.mean()])


def test_the_overlay_is_written_where_the_demo_says(demo) -> None:
    log, output = demo
    said = re.search(r"Demo done: the overlay is (\S+)", log).group(1)
    assert Path(said) == output / "overlay.png"
    overlay = cv2.imread(said)
    scene = cv2.imread(str(SCENE / "color.png"))
    assert overlay is not None and overlay.shape == scene.shape
    mask = cv2.imread(str(output / "mask_0.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert 0.01 < mask.mean() < 0.2
    # The overlay is drawn on the scene: away from the mask and the answer box it is the scene,
    # dimmed (the overlay darkens what is not a mask), never another picture.
    far = ~cv2.dilate(mask.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
    far[:60] = False  # the answer's text box
    ratio = overlay[far].astype(float).sum() / scene[far].astype(float).sum()
    assert 0.3 < ratio < 1.0
