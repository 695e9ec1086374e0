"""No work on frames nobody uses: the real node, in this process, counts what it decodes.

A camera sends 30 frames a second; the node reasons at ``max_rate_hz`` and follows between
reasoning steps at up to ``follow_rate_hz``, so most frames are replaced by the next one before
the inference thread looks at them. Such a frame must cost nothing beyond taking it off the wire:
no colour conversion, no depth decoding. The real LisaNode (tiny checkpoint, the test answers
scripted as in testbed.scripted_lisa_node) runs in this process on a real graph, fed by a camera
with depth and camera_info; its colour conversion (``Frame.to_rgb``) and depth decoding
(``DepthPartner._decode``) are wrapped to count their calls, and the counts are compared with the
scheduler's own tally of frames received, reasoned and followed.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from lisa_ros_interfaces.msg import Segmentation
from node_graph import (
    REFERENCE_INSTRUCTION,
    RELIABLE,
    SENSOR,
    bgr8_msg,
    complete_answers,
    fixture_rgb,
    stamp,
)
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from lisa_ros.conversion.images import fill_image_msg
from lisa_ros.node.depth import DepthPartner
from lisa_ros.node.frames import Frame
from lisa_ros.node.lisa_node import LisaNode, ModelSettings
from testbed.scripted_lisa_node import ScriptedModel
from testbed.tiny_lisa import CHECKPOINT, CLIP

NAMESPACE = "/frame_work"
CAMERA_HZ = 30.0


class ScriptedLisaNode(LisaNode):
    """The product's node; only the answers' tokens are scripted ("Sure, [SEG] and [SEG] .")."""

    def load_model(self, settings: ModelSettings) -> Any:
        return ScriptedModel(super().load_model(settings), {}, {}, [])


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counts: Counter[str] = Counter()

    def counting(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(Frame, "to_rgb", counting("converted", Frame.to_rgb))
    monkeypatch.setattr(DepthPartner, "_decode", counting("depth decoded", DepthPartner._decode))
    return counts


@pytest.fixture
def node(graph: Any) -> Iterator[LisaNode]:
    lisa = ScriptedLisaNode(
        "lisa",
        namespace=NAMESPACE,
        context=graph.context,
        parameter_overrides=[
            Parameter("autostart", value=False),
            Parameter("model", value=str(CHECKPOINT)),
            Parameter("vision_tower", value=str(CLIP)),
            Parameter("precision", value="fp32"),
            Parameter("device", value="cpu"),
            Parameter("max_rate_hz", value=2.0),
            Parameter("follow_rate_hz", value=10.0),
        ],
    )
    try:
        assert lisa.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert lisa.trigger_activate() == TransitionCallbackReturn.SUCCESS
        yield lisa
    finally:
        lisa.trigger_deactivate()
        lisa.destroy_node()


class RgbdCamera:
    """The fixture image with a flat depth image 1 m away and camera_info, one stamp a frame."""

    def __init__(self, graph: Any) -> None:
        self._node = graph.node
        rgb = fixture_rgb()
        height, width = rgb.shape[:2]
        self._image = bgr8_msg(rgb, frame_id="cam")
        self._depth = fill_image_msg(
            Image(), np.full((height, width), 1000, np.uint16), "16UC1", header=self._image.header
        )
        f = 0.9 * width
        self._info = CameraInfo(
            header=self._image.header,
            width=width,
            height=height,
            k=[f, 0.0, (width - 1) / 2, 0.0, f, (height - 1) / 2, 0.0, 0.0, 1.0],
        )
        self._publishers = [
            self._node.create_publisher(kind, f"{NAMESPACE}/{topic}", SENSOR)
            for kind, topic in ((CameraInfo, "camera_info"), (Image, "depth"), (Image, "image"))
        ]
        self._count = 0
        self._timer: Any = None

    def start(self) -> None:
        self._timer = self._node.create_timer(1 / CAMERA_HZ, self._publish)

    def stop(self) -> None:
        self._node.destroy_timer(self._timer)

    def _publish(self) -> None:
        self._count += 1
        when = stamp(50_000.0 + self._count / CAMERA_HZ)
        for publisher, message in zip(
            self._publishers, (self._info, self._depth, self._image), strict=True
        ):
            message.header.stamp = when
            publisher.publish(message)


def test_frames_nobody_uses_are_neither_converted_nor_decoded(
    graph: Any, node: LisaNode, counted: Counter[str]
) -> None:
    assert node.scheduler is not None
    scheduler = node.scheduler
    answers: list[Segmentation] = []
    lock = threading.Lock()

    def on_answer(msg: Segmentation) -> None:
        with lock:
            answers.append(msg)

    # ~/segmentation read: each answered frame needs its depth (mask_info's 3D targets).
    graph.node.create_subscription(
        Segmentation, f"{NAMESPACE}/lisa/segmentation", complete_answers(on_answer), 50
    )
    instruction = graph.node.create_publisher(String, f"{NAMESPACE}/instruction", RELIABLE)
    camera = RgbdCamera(graph)
    camera.start()
    try:
        # Idle: no standing instruction, nothing to follow.
        graph.wait_until(lambda: scheduler.stats().frames_received >= 30, 30, "30 frames")
        assert counted == Counter()
        # Continuous mode: reasoning at 2 Hz, following up to 10 Hz in between.
        graph.wait_for_subscribers(instruction)
        instruction.publish(String(data=REFERENCE_INSTRUCTION))
        graph.wait_until(
            lambda: (
                scheduler.stats().frames_followed >= 5 and scheduler.stats().frames_reasoned >= 2
            ),
            120,
            "reasoned and followed frames",
        )
        instruction.publish(String(data=""))
        graph.wait_until(lambda: scheduler.instruction is None, 30, "the instruction cleared")
        graph.wait_until(lambda: scheduler.stats().running == "idle", 60, "the last job's end")
    finally:
        camera.stop()
    stats = scheduler.stats()
    worked_on = stats.frames_reasoned + stats.frames_followed
    # Each frame worked on was converted once; the others (most of them) not at all.
    assert counted["converted"] == worked_on, (counted, stats)
    assert worked_on < stats.frames_received / 2, stats
    # Depth was decoded for answered frames only, at most once each.
    with lock:
        answered = len(answers)
    assert 1 <= counted["depth decoded"] <= min(answered, worked_on), (counted, answered, stats)
