"""Following on a real ROS 2 graph: a 30 Hz camera and a slowly reasoning (scripted) model give
followed outputs between the reasoned ones, each saying what it rests on and how old that is;
nothing backs up; a goal's targets are followed for follow_goal_seconds; follow_rate_hz 0 gives
reasoned outputs only, as before following existed; memory stays flat over a minute.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lisa_ros_interfaces.action import Segment
from lisa_ros_interfaces.msg import Segmentation
from node_graph import (
    REFERENCE_INSTRUCTION,
    RELIABLE,
    SENSOR,
    LisaClient,
    bgr8_msg,
    complete_answers,
    fixture_rgb,
    mono8_array,
    stamp_seconds,
    start_lisa,
    wait_active,
)
from sensor_msgs.msg import Image
from std_msgs.msg import String

NODE = "/follow/lisa"
# The reference instruction, answered slowly: each of its 7 decoding steps takes 0.15 s.
SLOW_INSTRUCTION = REFERENCE_INSTRUCTION + " slowly"
MAX_REASONING_AGE = 5.0  # s: see test_frames_between_reasoning_steps_are_followed_and_say_so


class Camera:
    """The fixture image at 30 Hz; remembers when each stamp was published (monotonic)."""

    def __init__(self, graph: Any) -> None:
        self.publisher = graph.node.create_publisher(Image, "/follow_cam/image", SENSOR)
        self.rgb = fixture_rgb()
        self.lock = threading.Lock()
        self.published: dict[float, float] = {}
        self.count = 0
        self.timer = graph.node.create_timer(1 / 30, self.publish)

    def publish(self) -> None:
        with self.lock:
            when = round(40_000.0 + self.count / 30, 6)
            self.count += 1
            self.published[when] = time.monotonic()
        self.publisher.publish(bgr8_msg(self.rgb, when=when, frame_id="cam"))

    def published_at(self, header: Any) -> float:
        with self.lock:
            return self.published[round(stamp_seconds(header.stamp), 6)]


class Outputs:
    def __init__(self, graph: Any) -> None:
        self.lock = threading.Lock()
        self.results: list[tuple[float, Segmentation]] = []
        self.texts: list[tuple[float, str]] = []
        self.diagnostics: list[dict[str, str]] = []
        node = graph.node
        self._subscriptions = [
            node.create_subscription(
                Segmentation, f"{NODE}/segmentation", complete_answers(self._on_result), 50
            ),
            node.create_subscription(String, f"{NODE}/text", self._on_text, RELIABLE),
            node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50),
        ]

    def _on_result(self, msg: Segmentation) -> None:
        with self.lock:
            self.results.append((time.monotonic(), msg))

    def _on_text(self, msg: String) -> None:
        with self.lock:
            self.texts.append((time.monotonic(), msg.data))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                if status.name == NODE:
                    self.diagnostics.append({kv.key: kv.value for kv in status.values})

    def between(self, start: float, end: float) -> list[tuple[float, Segmentation]]:
        with self.lock:
            return [(when, msg) for when, msg in self.results if start <= when <= end]


@pytest.fixture(scope="module")
def following(module_processes, graph):
    process = start_lisa(
        module_processes,
        "max_rate_hz:=0.5",
        "follow_rate_hz:=10.0",
        "follow_goal_seconds:=2.0",
        namespace="/follow",
        remap=["image:=/follow_cam/image"],
        slow={"slowly": 0.15},
    )
    wait_active(process)
    outputs = Outputs(graph)
    camera = Camera(graph)
    instruction = graph.node.create_publisher(String, "/follow/instruction", RELIABLE)
    graph.wait_for_subscribers(camera.publisher)
    graph.wait_for_subscribers(instruction)
    yield process, outputs, camera, instruction, LisaClient(graph, NODE)
    instruction.publish(String(data=""))
    graph.node.destroy_timer(camera.timer)


def test_frames_between_reasoning_steps_are_followed_and_say_so(following, graph) -> None:
    process, outputs, camera, instruction, _ = following
    instruction.publish(String(data=SLOW_INSTRUCTION))
    graph.wait_until(lambda: any(not m.followed for _, m in outputs.results), 30, "a reasoning")
    start = time.monotonic()
    time.sleep(7.0)
    window = outputs.between(start, time.monotonic())
    instruction.publish(String(data=""))

    reasoned = [m for _, m in window if not m.followed]
    followed = [m for _, m in window if m.followed]
    assert len(reasoned) >= 2 and len(followed) >= 2 * len(reasoned), (len(reasoned), len(followed))
    with outputs.lock:
        every_reasoned = [m for _, m in outputs.results if not m.followed]
    reasoned_stamps = {stamp_seconds(m.header.stamp) for m in every_reasoned}
    for msg in reasoned:
        assert msg.reasoned_header == msg.header and msg.reasoning_age == 0.0
    reference = [mono8_array(mask) for mask in reasoned[0].masks]
    for msg in followed:
        # It rests on an earlier reasoned frame, and says how much older that frame is.
        rested_on = stamp_seconds(msg.reasoned_header.stamp)
        assert rested_on in reasoned_stamps
        age = stamp_seconds(msg.header.stamp) - rested_on
        # Reasoned every max(1/max_rate_hz, step / reasoning_share): ~3 s for the ~1.5 s steps here
        # (reasoning's share), and the frame is as old as that plus a step at most.
        assert msg.reasoning_age == pytest.approx(age, abs=1e-6) and 0 < age < MAX_REASONING_AGE
        # The same answer; the scene does not move, so neither do the masks.
        assert msg.text == reasoned[0].text and msg.instruction == SLOW_INSTRUCTION
        assert [info.phrase for info in msg.mask_info] == [i.phrase for i in reasoned[0].mask_info]
        for mask, expected in zip(msg.masks, reference, strict=True):
            np.testing.assert_array_equal(mono8_array(mask), expected)
        assert all(
            (info.area_ratio, info.centre_shift, info.box_iou) == (1.0, 0.0, 1.0)
            for info in msg.mask_info
        )
    # No backlog: a followed frame is the newest one when the step before it ends, so it waits
    # for at most that step (a follow) and its own: two SAM passes, however fast the machine is
    # (with a queue the wait would grow frame after frame). Frames are skipped rather than queued:
    # far fewer results than frames.
    latencies = [when - camera.published_at(m.header) for when, m in window if m.followed]
    follow_steps = [
        next(t.seconds for t in m.timings if t.stage == "total") for _, m in window if m.followed
    ]
    assert max(latencies) < 2 * max(follow_steps) + 0.5, (latencies, follow_steps)
    assert len(window) < 0.5 * 30 * 7.0
    # ~/text carries reasoned answers only.
    with outputs.lock:
        texts = [when for when, _ in outputs.texts if start <= when]
    assert len(texts) <= len(reasoned) + 1
    # /diagnostics comes once a second: wait for one that has counted the window's follows.
    diagnostic = graph.wait_until(
        lambda: next(
            (
                d
                for d in reversed(outputs.diagnostics)
                if d.get("last_answer") == "followed" and int(d["frames_followed"]) >= len(followed)
            ),
            None,
        ),
        10,
        "a diagnostic counting the followed answers",
    )
    assert 0.0 < float(diagnostic["reasoning_age_s"]) < MAX_REASONING_AGE


def test_a_goals_targets_are_followed_for_follow_goal_seconds(following, graph) -> None:
    process, outputs, camera, instruction, client = following
    instruction.publish(String(data=""))
    time.sleep(1.0)  # a reasoning or follow of the instruction that was running ends
    status, result, _ = client.run(REFERENCE_INSTRUCTION)
    assert result.error_code == Segment.Result.SUCCESS
    done = time.monotonic()
    time.sleep(4.0)
    after = [m for _, m in outputs.between(done, time.monotonic())]
    followed = [m for m in after if m.followed and m.reasoned_header == result.header]
    assert followed, "the goal's targets were not followed"
    last_follow = max(stamp_seconds(m.header.stamp) for m in followed)
    # 2 s of following, give or take one follow's time.
    assert last_follow - stamp_seconds(result.header.stamp) < 2.0 + 1.0
    assert all(m.instruction == REFERENCE_INSTRUCTION for m in followed)


def test_a_goal_that_brings_its_own_image_is_not_followed_on_the_camera(following, graph) -> None:
    process, outputs, camera, instruction, client = following
    instruction.publish(String(data=""))
    time.sleep(2.5)  # earlier targets (follow_goal_seconds 2) have expired
    picture = bgr8_msg(np.roll(fixture_rgb(), 40, axis=1), when=50_000.0, frame_id="elsewhere")
    status, result, _ = client.run(REFERENCE_INSTRUCTION, picture)
    assert result.error_code == Segment.Result.SUCCESS
    done = time.monotonic()
    time.sleep(2.0)
    assert not any(m.followed for _, m in outputs.between(done, time.monotonic()))


def test_targets_are_not_followed_across_a_deactivation(following, graph) -> None:
    process, outputs, camera, instruction, client = following
    instruction.publish(String(data=""))
    time.sleep(1.0)
    assert client.set_parameters(follow_goal_seconds=30.0)[0].successful
    try:
        status, result, _ = client.run(REFERENCE_INSTRUCTION)
        assert result.error_code == Segment.Result.SUCCESS
        graph.wait_until(
            lambda: any(m.followed for _, m in outputs.between(time.monotonic() - 1, 1e12)),
            10,
            "the goal's targets followed",
        )
        assert client.transition("deactivate") and client.transition("activate")
        reactivated = time.monotonic()
        time.sleep(3.0)
        assert not outputs.between(reactivated, time.monotonic())
    finally:
        assert client.set_parameters(follow_goal_seconds=2.0)[0].successful


def test_follow_rate_zero_gives_reasoned_outputs_only(following, graph) -> None:
    process, outputs, camera, instruction, client = following
    assert client.set_parameters(follow_rate_hz=0.0)[0].successful
    try:
        instruction.publish(String(data=REFERENCE_INSTRUCTION))
        time.sleep(1.5)
        start = time.monotonic()
        time.sleep(4.0)
        window = [m for _, m in outputs.between(start, time.monotonic())]
        assert window and not any(m.followed for m in window)
        assert len(window) <= 0.5 * 4.0 + 1  # max_rate_hz 0.5, nothing in between
    finally:
        instruction.publish(String(data=""))
        assert client.set_parameters(follow_rate_hz=10.0)[0].successful


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@pytest.mark.slow
def test_memory_stays_flat_over_a_minute_of_following(following, graph) -> None:
    process, outputs, camera, instruction, client = following
    # A reasoning step takes ~1.5 s here: at max_rate_hz 0.5 that leaves a loaded machine too
    # little room between steps for the follows this test counts on. 0.25 Hz leaves 2.5 s.
    assert client.set_parameters(max_rate_hz=0.25)[0].successful
    instruction.publish(String(data=SLOW_INSTRUCTION))
    try:
        time.sleep(10.0)  # warmed up: caches, DDS buffers, the first answers
        before = _rss_mb(process.pid)
        start = time.monotonic()
        time.sleep(60.0)
        after = _rss_mb(process.pid)
        served = outputs.between(start, time.monotonic())
    finally:
        instruction.publish(String(data=""))
        assert client.set_parameters(max_rate_hz=0.5)[0].successful
    assert sum(m.followed for _, m in served) > 30
    assert after - before < 40.0, (before, after)
