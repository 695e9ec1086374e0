"""Reasoning's share on a real ROS 2 graph: the real node, its model slowed so that a reasoning
step takes longer than 1/max_rate_hz (every decoding step of the tiny checkpoint 0.2 s longer, as
a CPU or a Jetson-class GPU would be), keeps following a 15 Hz camera between its answers, and
/diagnostics reports the achieved rates; with reasoning_share 1 (reasoning first) following
starves, and /diagnostics says so.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lisa_ros_interfaces.msg import Segmentation
from node_graph import (
    REFERENCE_INSTRUCTION,
    RELIABLE,
    SENSOR,
    LisaClient,
    bgr8_msg,
    complete_answers,
    fixture_rgb,
    start_lisa,
    wait_active,
)
from sensor_msgs.msg import Image
from std_msgs.msg import String

NODE = "/share/lisa"
CAMERA = "/share_cam/image"
# The reference reply's 7 decoding steps take 0.2 s longer each: a reasoning step of 1.4 s or
# more, longer than max_rate_hz 1's period.
SLOW_INSTRUCTION = REFERENCE_INSTRUCTION + " slowly"


class Observer:
    """The node's outputs and diagnostics, each with its monotonic arrival time."""

    def __init__(self, graph: Any) -> None:
        self.lock = threading.Lock()
        self.results: list[tuple[float, bool]] = []  # (when, followed)
        self.diagnostics: list[tuple[float, bytes, str, dict[str, str]]] = []
        node = graph.node
        self._subscriptions = [
            node.create_subscription(
                Segmentation, f"{NODE}/segmentation", complete_answers(self._on_result), 50
            ),
            node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50),
        ]

    def _on_result(self, msg: Segmentation) -> None:
        with self.lock:
            self.results.append((time.monotonic(), msg.followed))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        now = time.monotonic()
        with self.lock:
            for status in msg.status:
                if status.name == NODE:
                    values = {kv.key: kv.value for kv in status.values}
                    self.diagnostics.append((now, status.level, status.message, values))

    def answers_between(self, start: float, end: float) -> list[tuple[float, bool]]:
        with self.lock:
            return [(when, followed) for when, followed in self.results if start <= when <= end]

    def diagnostic_after(self, start: float) -> tuple[bytes, str, dict[str, str]] | None:
        with self.lock:
            for when, level, message, values in reversed(self.diagnostics):
                if when >= start and "reasoned_hz" in values:
                    return level, message, values
        return None


@pytest.fixture(scope="module")
def sharing(module_processes, graph):
    process = start_lisa(
        module_processes,
        "max_rate_hz:=1.0",
        "follow_rate_hz:=10.0",
        "reasoning_share:=0.5",
        namespace="/share",
        remap=[f"image:={CAMERA}"],
        slow={"slowly": 0.2},
    )
    wait_active(process)
    observer = Observer(graph)
    camera = graph.node.create_publisher(Image, CAMERA, SENSOR)
    rgb = fixture_rgb()
    count = iter(range(10**9))
    timer = graph.node.create_timer(
        1 / 15, lambda: camera.publish(bgr8_msg(rgb, when=60_000.0 + next(count) / 15))
    )
    instruction = graph.node.create_publisher(String, "/share/instruction", RELIABLE)
    graph.wait_for_subscribers(camera)
    graph.wait_for_subscribers(instruction)
    yield observer, instruction, LisaClient(graph, NODE)
    instruction.publish(String(data=""))
    graph.node.destroy_timer(timer)


def test_following_keeps_flowing_while_reasoning_is_slower_than_max_rate(sharing, graph) -> None:
    observer, instruction, client = sharing
    instruction.publish(String(data=SLOW_INSTRUCTION))
    graph.wait_until(
        lambda: any(not followed for _, followed in observer.results), 60, "a first answer"
    )
    start = time.monotonic()
    time.sleep(14.0)
    end = time.monotonic()
    window = observer.answers_between(start, end)
    reasoned = [when for when, followed in window if not followed]
    followed = [when for when, followed in window if followed]
    # Reasoning is slower than max_rate_hz 1 (each step >= 1.4 s, half the thread's time) ...
    assert 2 <= len(reasoned) < 14 * 0.5 + 1, len(reasoned)
    # ... and yet frames are followed between every two answers, all the time, not just at first.
    assert len(followed) >= 2 * len(reasoned), (len(reasoned), len(followed))
    for earlier, later in zip(reasoned, reasoned[1:], strict=False):
        assert any(earlier < when < later for when in followed), (earlier - start, later - start)
    assert any(when > end - 5.0 for when in followed)
    # /diagnostics: the achieved rates over its 10 s window, and no starvation.
    level, message, values = graph.wait_until(
        lambda: observer.diagnostic_after(end), 5, "a diagnostic with the achieved rates"
    )
    assert 0.1 <= float(values["reasoned_hz"]) < 1.0, values
    assert float(values["followed_hz"]) >= 2 * float(values["reasoned_hz"]), values
    assert "starved" not in message


def test_reasoning_share_one_starves_following_and_diagnostics_warn(sharing, graph) -> None:
    observer, instruction, client = sharing
    refused = client.set_parameters(reasoning_share=0.0)[0]
    assert not refused.successful and "reasoning_share out of range" in refused.reason
    assert client.set_parameters(reasoning_share=1.0)[0].successful
    try:
        instruction.publish(String(data=SLOW_INSTRUCTION))
        time.sleep(3.0)  # the follows of the 0.5 share's last reservation are over
        start = time.monotonic()
        time.sleep(11.0)  # the diagnostics' 10 s window holds only reasoning-first time
        end = time.monotonic()
        window = observer.answers_between(start, end)
        assert sum(not followed for _, followed in window) >= 4
        assert sum(followed for _, followed in window) <= 1  # one in flight at most
        level, message, values = graph.wait_until(
            lambda: observer.diagnostic_after(end), 5, "a diagnostic after the window"
        )
        assert level == DiagnosticStatus.WARN and "following starved" in message, message
        assert float(values["followed_hz"]) < 0.2 and float(values["reasoned_hz"]) > 0.3, values
    finally:
        assert client.set_parameters(reasoning_share=0.5)[0].successful
        instruction.publish(String(data=""))
