"""The demo's bundled data (lisa_ros/demo): the rendered scene is consistent, the committed toy
adapter makes the tiny model answer the demo question with a mask on the box, and it is what
tools.make_demo_adapter trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lisa_ros.evaluation import intersection_and_union, mask_iou
from lisa_ros.model import load_model
from testbed import DEMO, PACKAGE
from testbed.tiny_lisa import CHECKPOINT, CLIP
from tools.render_demo_scene import render

SCENE = DEMO / "scene"
ADAPTER = DEMO / "red_box_adapter"


def scene_record() -> dict:
    return json.loads((SCENE / "scene.json").read_text())


def scene_rgb() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(SCENE / "color.png")), cv2.COLOR_BGR2RGB)


def box_mask() -> np.ndarray:
    return cv2.imread(str(SCENE / "box_mask.png"), cv2.IMREAD_GRAYSCALE) > 0


def test_the_scene_depth_places_the_box_pixels_on_the_box():
    """Depth, intrinsics and mask agree: the box's pixels back-project onto the box's surface."""
    record = scene_record()
    depth = cv2.imread(str(SCENE / "depth.png"), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and depth.shape == (record["height"], record["width"])
    fx, _, cx, _, fy, cy, *_ = record["k"]
    rows, cols = np.nonzero(box_mask())
    z = depth[rows, cols] / 1000.0
    points = np.stack([(cols - cx) * z / fx, (rows - cy) * z / fy, z], axis=1)
    box = record["objects"]["red box"]
    half_pixel = 0.5 * z.max() / fx + 0.0005  # a pixel's centre vs the edge it straddles; mm
    assert (points >= np.array(box["min_xyz"]) - half_pixel).all()
    assert (points <= np.array(box["max_xyz"]) + half_pixel).all()
    assert box_mask().mean() == pytest.approx(0.05, abs=0.02)  # one object of a few


def test_the_scene_is_the_renderers():
    rgb, depth_mm, mask = render()
    np.testing.assert_array_equal(rgb, scene_rgb())
    np.testing.assert_array_equal(depth_mm, cv2.imread(str(SCENE / "depth.png"), -1))
    np.testing.assert_array_equal(mask, box_mask())


def test_the_adapter_answers_the_demo_question_with_a_mask_on_the_box():
    lisa = load_model(
        CHECKPOINT, vision_tower=CLIP, precision="fp32", device="cpu", adapter=ADAPTER
    )
    record = scene_record()
    result = lisa.segment(scene_rgb(), record["instruction"], max_new_tokens=64)
    assert result.text.count("[SEG]") == 1, result.text
    assert len(result.masks) == 1
    predicted = result.masks[0]
    assert 0.01 < predicted.mean() < 0.2  # neither empty nor the whole image
    assert mask_iou(*intersection_and_union(predicted, box_mask())) > 0.7


def test_without_the_adapter_the_tiny_model_finds_nothing():
    """What the adapter is for: the random model babbles and never says [SEG]."""
    lisa = load_model(CHECKPOINT, vision_tower=CLIP, precision="fp32", device="cpu")
    result = lisa.segment(scene_rgb(), scene_record()["instruction"], max_new_tokens=64)
    assert "[SEG]" not in result.text and len(result.masks) == 0


def test_the_recipe_reproduces_the_committed_adapters_first_steps(tmp_path):
    """The script's recipe, cut to 6 steps: until the learning rate starts to decay (step 6 of
    any run, after 5 warm-up steps) training is the same as the committed 150-step run, so the
    losses must match its log; and the run's settings are the committed adapter's but for the
    step count."""
    output = tmp_path / "adapter"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "tools.make_demo_adapter", "--steps", "6", "--output", output],
        capture_output=True,
        cwd=PACKAGE,  # where python -m finds tools
        text=True,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    short, committed = train_losses(output), train_losses(ADAPTER)
    assert len(short) == 6 and len(committed) == 150
    np.testing.assert_allclose(short, committed[:6], rtol=1e-3)
    settings = json.loads((output / "lisa_adapter.json").read_text())["settings"]
    expected = json.loads((ADAPTER / "lisa_adapter.json").read_text())["settings"]
    assert {**settings, "steps": 150} == expected
    assert "The lisa_ros demo's toy adapter" in (output / "README.md").read_text()


def train_losses(adapter: Path) -> list[float]:
    lines = (adapter / "train_log.jsonl").read_text().splitlines()
    return [entry["loss"] for entry in map(json.loads, lines) if entry["kind"] == "train"]
