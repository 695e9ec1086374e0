"""lisa_node hands each mask over as soon as it is decoded, on a real ROS 2 graph: in the
Segment action's feedback (before the result, kept when the client cancels after it) and, in
continuous mode, as a partial ~/segmentation before the complete one (parameter publish_partial).

The node answers "explain" instructions like an explanatory checkpoint: "Sure, [SEG] ." and then
40 tokens of explanation before a second [SEG], at +50 ms per decoding step, so the first mask is
ready about 2 s before the answer ends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from action_msgs.msg import GoalStatus
from lisa_ros_interfaces.action import Segment
from lisa_ros_interfaces.msg import Segmentation
from node_graph import (
    RELIABLE,
    SENSOR,
    LisaClient,
    bgr8_msg,
    fixture_rgb,
    mono8_array,
    stamp_seconds,
    start_lisa,
    wait_active,
)
from sensor_msgs.msg import Image

from testbed.fixture_replies import EXPLAINED_REPLY, SEG

Result = Segment.Result
NODE = "/early/lisa"
CAMERA = "/early_camera/image_raw"
INSTRUCTION = "explain where the thing is"
SECONDS_PER_TOKEN = 0.05
LISA_ASK = Path(sys.executable).with_name("lisa-ask")
# the steps between the two [SEG]s, at SECONDS_PER_TOKEN each
SECOND_MASK_AFTER = (EXPLAINED_REPLY.index(SEG, 3) - EXPLAINED_REPLY.index(SEG)) * SECONDS_PER_TOKEN


@pytest.fixture(scope="module")
def lisa(module_processes, graph):
    process = start_lisa(
        module_processes,
        "max_rate_hz:=1.0",
        "follow_rate_hz:=0.0",
        replies={"explain": EXPLAINED_REPLY},
        slow={"explain": SECONDS_PER_TOKEN},
        namespace="/early",
        remap=[f"image:={CAMERA}"],
    )
    wait_active(process)
    client = LisaClient(graph, NODE)
    client.wait_for_server()
    yield client
    client.set_parameters(instruction_text="", publish_partial=True)


def mask_ready(feedback: list[Any]) -> list[Any]:
    return [f for f in list(feedback) if f.stage == "mask_ready"]


def test_each_mask_comes_in_feedback_before_the_result_and_is_the_results_mask(lisa) -> None:
    goal = lisa.send(INSTRUCTION, bgr8_msg(fixture_rgb(), when=77.5, frame_id="wrist_optical"))
    first = goal.wait_for_feedback(lambda f: f.stage == "mask_ready", 30, "the first mask")
    assert not goal.done(), "the first mask came after the whole answer"
    status, result = goal.result()

    assert status == GoalStatus.STATUS_SUCCEEDED and result.error_code == Result.SUCCESS
    assert len(result.masks) == 2
    assert len(first.masks) == len(first.mask_info) == 1
    assert first.text.endswith("[SEG]") and result.text.startswith(first.text)
    assert first.tokens_generated == EXPLAINED_REPLY.index(SEG) + 1
    assert first.masks[0].header.frame_id == "wrist_optical"
    assert stamp_seconds(first.masks[0].header.stamp) == 77.5
    np.testing.assert_array_equal(mono8_array(first.masks[0]), mono8_array(result.masks[0]))
    assert first.mask_info[0].score == result.mask_info[0].score
    assert first.mask_info[0].area == result.mask_info[0].area > 0
    lisa.graph.wait_until(lambda: len(mask_ready(goal.feedback)) == 2, 5, "the second mask")
    second = mask_ready(goal.feedback)[1]
    assert len(second.masks) == 2
    for index in range(2):
        np.testing.assert_array_equal(
            mono8_array(second.masks[index]), mono8_array(result.masks[index])
        )
    # feedback without a new mask carries none
    assert all(not f.masks for f in goal.feedback if f.stage != "mask_ready")


def test_canceling_after_the_first_mask_keeps_it_in_the_result(lisa) -> None:
    goal = lisa.send(INSTRUCTION, bgr8_msg(fixture_rgb()))
    first = goal.wait_for_feedback(lambda f: f.stage == "mask_ready", 30, "the first mask")
    goal.cancel()
    status, result = goal.result(timeout=10)

    assert status == GoalStatus.STATUS_CANCELED and result.error_code == Result.CANCELED
    assert len(result.masks) == len(result.mask_info) == 1
    assert result.text.count("[SEG]") == 1
    np.testing.assert_array_equal(mono8_array(result.masks[0]), mono8_array(first.masks[0]))


class Frames:
    """A camera at 5 Hz, and every ~/segmentation the node publishes."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.lock = threading.Lock()
        self.segmentation: list[Segmentation] = []
        self.publisher = graph.node.create_publisher(Image, CAMERA, SENSOR)
        self.subscription = graph.node.create_subscription(
            Segmentation, f"{NODE}/segmentation", self._on_segmentation, RELIABLE
        )
        self.sent = 0
        self.rgb = fixture_rgb()
        graph.wait_for_subscribers(self.publisher)
        self.timer = graph.node.create_timer(0.2, self._publish)

    def _publish(self) -> None:
        self.sent += 1
        self.publisher.publish(bgr8_msg(self.rgb, when=5000.0 + self.sent, frame_id="cam"))

    def _on_segmentation(self, msg: Segmentation) -> None:
        with self.lock:
            self.segmentation.append(msg)

    def on_frame(self, stamp: float) -> list[Segmentation]:
        with self.lock:
            return [m for m in self.segmentation if stamp_seconds(m.header.stamp) == stamp]

    def complete_after(self, count: int) -> Segmentation | None:
        with self.lock:
            return next((m for m in self.segmentation[count:] if not m.partial), None)

    def close(self) -> None:
        self.graph.node.destroy_timer(self.timer)
        self.graph.node.destroy_subscription(self.subscription)
        self.graph.node.destroy_publisher(self.publisher)


@pytest.fixture
def frames(lisa) -> Any:
    frames = Frames(lisa.graph)
    yield frames
    lisa.set_parameters(instruction_text="")
    frames.close()


def test_continuous_mode_publishes_each_mask_early_then_the_complete_answer(lisa, frames) -> None:
    since = len(frames.segmentation)
    assert lisa.set_parameters(instruction_text=INSTRUCTION)[0].successful
    complete = lisa.graph.wait_until(lambda: frames.complete_after(since), 30, "an answer")

    on_frame = frames.on_frame(stamp_seconds(complete.header.stamp))
    assert [m.partial for m in on_frame] == [True, True, False]
    first, second = on_frame[0], on_frame[1]
    assert len(first.masks) == 1 and len(second.masks) == 2 and len(complete.masks) == 2
    assert first.text.endswith("[SEG]") and complete.text.startswith(first.text)
    assert first.header == complete.header and first.instruction == INSTRUCTION
    np.testing.assert_array_equal(mono8_array(first.masks[0]), mono8_array(complete.masks[0]))


def test_publish_partial_false_publishes_complete_answers_only(lisa, frames) -> None:
    assert lisa.set_parameters(publish_partial=False)[0].successful
    try:
        since = len(frames.segmentation)
        started = time.monotonic()
        assert lisa.set_parameters(instruction_text=INSTRUCTION)[0].successful
        complete = lisa.graph.wait_until(lambda: frames.complete_after(since), 30, "an answer")
        # the answer took longer than its explanation: a partial would have come well before
        assert time.monotonic() - started > SECOND_MASK_AFTER
        assert frames.on_frame(stamp_seconds(complete.header.stamp)) == [complete]
        assert not any(m.partial for m in frames.segmentation[since:])
    finally:
        assert lisa.set_parameters(publish_partial=True)[0].successful


def ask(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    image_file = tmp_path / "scene.png"
    cv2.imwrite(str(image_file), cv2.cvtColor(fixture_rgb(), cv2.COLOR_RGB2BGR))
    command = [
        str(LISA_ASK),
        INSTRUCTION,
        "--image",
        str(image_file),
        "--action",
        f"{NODE}/segment",
    ]
    done = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_lisa_ask_says_when_the_first_mask_came(lisa, ros_env, tmp_path) -> None:
    done = ask(ros_env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "first mask after" in done.stderr
    assert "first mask at" in done.stderr and "SUCCESS: 2 mask(s)" in done.stderr


def test_lisa_ask_first_mask_cancels_the_rest_and_saves_that_mask(lisa, ros_env, tmp_path) -> None:
    output = tmp_path / "out"
    done = ask(ros_env, tmp_path, "--first-mask", "--output", str(output))

    assert done.returncode == 0, done.stderr
    assert "FIRST MASK (rest of the answer canceled): 1 mask(s)" in done.stderr
    assert done.stdout.count("[SEG]") == 1
    record = json.loads((output / "result.json").read_text())
    assert record["error_code_name"] == "CANCELED" and record["stopped_at_first_mask"] is True
    assert len(record["masks"]) == 1 and (output / "mask_0.png").is_file()
    assert not (output / "mask_1.png").exists()
