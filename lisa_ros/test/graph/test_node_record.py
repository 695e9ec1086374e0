"""Recording answered frames (parameter record_dir) on a real ROS 2 graph: goals and a standing
instruction leave samples that load_dataset reads back with the frame's exact pixels, the union
of the published masks, the instruction and the answer; followed frames and follow-up turns leave
none; ``ros2 param set`` turns recording on and off; an unwritable folder is an ERROR once and a
WARN on /diagnostics while the node keeps answering.

The recorder writes on a thread of its own, so every check waits for the sample it expects. A
sample that must *not* appear is checked after a later answer's sample did: the writer keeps the
order of the answers.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
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
    start_lisa,
    wait_active,
)
from sensor_msgs.msg import Image
from std_msgs.msg import String

from lisa_ros.data import Sample, load_dataset
from testbed.fixture_replies import NOTHING_REPLY

Result = Segment.Result
NODE = "/rec/lisa"
CAMERA = "/rec_cam/image"
NAME = re.compile(r"(\d{10})_(\d{9})_\d{6}")
TIMEOUT = 30.0


def samples(folder: Path) -> list[Sample]:
    """What load_dataset reads in ``folder`` now (nothing while the folder has no sample)."""
    if not any(folder.glob("*.json")):
        return []
    return load_dataset(folder)


def stamp_of(sample: Sample) -> tuple[int, int]:
    match = NAME.fullmatch(sample.name)
    assert match, f"sample name {sample.name!r} is not <sec>_<nanosec>_<n>"
    return int(match[1]), int(match[2])


def header_stamp(msg: Any) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def union(masks: list[Image]) -> np.ndarray:
    return np.logical_or.reduce([mono8_array(mask) == 255 for mask in masks])


class Observer:
    """The node's ~/segmentation and its /diagnostics, as received here."""

    def __init__(self, graph: Any) -> None:
        self.lock = threading.Lock()
        self.results: list[Segmentation] = []
        self.diagnostics: list[tuple[int, str, dict[str, str]]] = []
        self._subscriptions = [
            graph.node.create_subscription(
                Segmentation, f"{NODE}/segmentation", complete_answers(self._on_result), RELIABLE
            ),
            graph.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50),
        ]

    def _on_result(self, msg: Segmentation) -> None:
        with self.lock:
            self.results.append(msg)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                if status.name == NODE:
                    values = {kv.key: kv.value for kv in status.values}
                    self.diagnostics.append((status.level, status.message, values))

    def diagnostic(self, predicate: Any) -> tuple[int, str, dict[str, str]] | None:
        with self.lock:
            return next((d for d in reversed(self.diagnostics) if predicate(*d)), None)


@pytest.fixture(scope="module")
def recording(module_processes, graph, tmp_path_factory):
    folder = tmp_path_factory.mktemp("recorded")
    process = start_lisa(
        module_processes,
        f"record_dir:={folder}",
        "max_rate_hz:=0.5",
        "follow_rate_hz:=10.0",
        "follow_goal_seconds:=0.0",
        namespace="/rec",
        remap=[f"image:={CAMERA}"],
        replies={"nothing": NOTHING_REPLY},
    )
    wait_active(process)
    client = LisaClient(graph, NODE)
    client.wait_for_server()
    observer = Observer(graph)
    yield process, client, observer, folder
    client.set_parameters(record_dir=str(folder))


def test_goals_are_recorded_with_exact_pixels_union_mask_instruction_and_answer(
    recording, graph
) -> None:
    process, client, observer, folder = recording
    rgb = fixture_rgb()
    goal_image = bgr8_msg(rgb, when=1234.5, frame_id="hand_camera")
    status, result, _ = client.run(REFERENCE_INSTRUCTION, goal_image, session_id="kitchen")
    assert result.error_code == Result.SUCCESS and len(result.masks) == 2
    # A follow-up turn is answered but not recorded (its instruction needs the conversation).
    _, follow_up, _ = client.run("and which one is closer?", session_id="kitchen")
    assert follow_up.error_code == Result.SUCCESS
    # An answer without a mask is recorded with an empty mask: someone has to label it.
    _, nothing, _ = client.run("there is nothing here", bgr8_msg(rgb, when=1235.0))
    assert nothing.error_code == Result.NOTHING_FOUND

    graph.wait_until(
        lambda: any(s.instructions == ["there is nothing here"] for s in samples(folder)),
        TIMEOUT,
        "the sample of the last goal",
    )
    recorded = samples(folder)  # sorted by name, so by the frame stamp: 1234.5 before 1235.0
    assert [s.instructions[0] for s in recorded] == [REFERENCE_INSTRUCTION, "there is nothing here"]
    first, second = recorded
    assert stamp_of(first) == (1234, 500_000_000) and stamp_of(second) == (1235, 0)
    np.testing.assert_array_equal(first.image(), rgb)
    np.testing.assert_array_equal(first.mask == 1, union(result.masks))
    assert first.mask.any() and set(np.unique(first.mask)) == {0, 1}
    assert first.instructions == [REFERENCE_INSTRUCTION] and first.answer == result.text
    assert first.is_sentence is True
    with np.load(folder / f"{first.name}_masks.npz") as extra:
        for kept, published in zip(extra["masks"], result.masks, strict=True):
            np.testing.assert_array_equal(kept, mono8_array(published) == 255)
    np.testing.assert_array_equal(second.image(), rgb)
    assert not second.mask.any() and second.answer == nothing.text
    assert second.instructions == ["there is nothing here"]

    graph.wait_until(
        lambda: observer.diagnostic(
            lambda level, message, values: (
                values.get("record_dir") == str(folder) and values.get("frames_recorded") == "2"
            )
        ),
        10,
        "/diagnostics counting the two recorded frames",
    )


def test_a_standing_instruction_is_recorded_and_followed_frames_are_not(recording, graph) -> None:
    process, client, observer, folder = recording
    rgb = fixture_rgb()
    camera = graph.node.create_publisher(Image, CAMERA, SENSOR)
    instruction = graph.node.create_publisher(String, "/rec/instruction", RELIABLE)
    graph.wait_for_subscribers(instruction)
    count = [0]

    def publish() -> None:
        count[0] += 1
        camera.publish(bgr8_msg(rgb, when=20_000.0 + count[0] / 10, frame_id="cam"))

    timer = graph.node.create_timer(0.1, publish)
    graph.wait_for_subscribers(camera)
    started = len(observer.results)
    instruction.publish(String(data=REFERENCE_INSTRUCTION))

    def ours() -> list[Segmentation]:
        with observer.lock:
            return [m for m in observer.results[started:] if m.instruction == REFERENCE_INSTRUCTION]

    try:
        graph.wait_until(
            lambda: sum(not m.followed for m in ours()) >= 2 and any(m.followed for m in ours()),
            TIMEOUT,
            "two reasoned and a followed answer",
        )
    finally:
        instruction.publish(String(data=""))
        process.wait_for_output(r"Standing instruction cleared", 10)
        graph.node.destroy_timer(timer)

    def recorded_from_camera() -> dict[tuple[int, int], Sample]:
        return {stamp_of(s): s for s in samples(folder) if stamp_of(s)[0] >= 20_000}

    # Every reasoned answer ends up in the folder, and nothing else (the writer keeps the
    # answers' order: a followed frame between two reasoned ones would be written by now).
    reasoned = {header_stamp(m) for m in ours() if not m.followed}
    graph.wait_until(
        lambda: set(recorded_from_camera()) >= reasoned, TIMEOUT, "a sample per reasoned answer"
    )
    recorded = recorded_from_camera()
    followed = {header_stamp(m) for m in ours() if m.followed}
    assert followed and not followed & set(recorded), "followed frames were recorded"
    graph.wait_until(
        lambda: set(recorded_from_camera()) == {header_stamp(m) for m in ours() if not m.followed},
        10,
        "exactly the reasoned answers recorded",
    )
    recorded = recorded_from_camera()
    for msg in ours():
        if msg.followed:
            continue
        sample = recorded[header_stamp(msg)]
        np.testing.assert_array_equal(sample.image(), rgb)
        np.testing.assert_array_equal(sample.mask == 1, union(msg.masks))
        assert (sample.instructions, sample.answer) == ([REFERENCE_INSTRUCTION], msg.text)


def test_record_dir_set_at_run_time_turns_recording_on_and_off(
    recording, graph, tmp_path: Path
) -> None:
    process, client, observer, folder = recording
    rgb = fixture_rgb()
    refused = client.set_parameters(record_dir="relative/folder")[0]
    assert not refused.successful and "absolute path" in refused.reason

    first, second = tmp_path / "first", tmp_path / "second"
    try:
        assert client.set_parameters(record_dir=str(first))[0].successful
        assert client.run("while on", bgr8_msg(rgb, when=3000.0))[1].error_code == Result.SUCCESS
        assert client.set_parameters(record_dir="")[0].successful
        assert client.run("while off", bgr8_msg(rgb, when=3001.0))[1].error_code == Result.SUCCESS
        assert client.set_parameters(record_dir=str(second))[0].successful
        assert client.run("on again", bgr8_msg(rgb, when=3002.0))[1].error_code == Result.SUCCESS
        graph.wait_until(lambda: samples(second), TIMEOUT, "the sample of 'on again'")
    finally:
        assert client.set_parameters(record_dir=str(folder))[0].successful
    # The writer keeps the answers' order: had 'while off' been recorded, it would be there now.
    assert [s.instructions for s in samples(first)] == [["while on"]]
    assert [s.instructions for s in samples(second)] == [["on again"]]
    assert not any(
        s.instructions[0] in ("while on", "while off", "on again") for s in samples(folder)
    )
    process.wait_for_output(f"Recording answered frames into {second}", 5)
    process.wait_for_output("Recording of answered frames stopped", 5)


def test_an_unwritable_folder_is_reported_once_and_the_node_keeps_answering(
    recording, graph, tmp_path: Path
) -> None:
    process, client, observer, folder = recording
    rgb = fixture_rgb()
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the folder should be")
    unwritable = blocker / "recorded"  # works as root too, unlike a chmod
    try:
        assert client.set_parameters(record_dir=str(unwritable))[0].successful
        for when in (4000.0, 4001.0):
            status, result, _ = client.run("record this", bgr8_msg(rgb, when=when))
            assert result.error_code == Result.SUCCESS and len(result.masks) == 2

        level, message, values = graph.wait_until(
            lambda: observer.diagnostic(
                lambda level, message, values: (
                    int(values.get("frames_record_failed", 0)) >= 2
                    and values.get("record_dir") == str(unwritable)
                )
            ),
            10,
            "/diagnostics counting two failed recordings",
        )
        assert level == DiagnosticStatus.WARN and str(unwritable) in message
        assert "ENOTDIR" in values["last_record_error"]
        assert "set record_dir to a folder" in values["last_record_error"]
        errors = re.findall(r"\[ERROR\].*Cannot record answered frames to", process.output)
        assert len(errors) == 1, process.output[-3000:]  # one cause, one ERROR
    finally:
        assert client.set_parameters(record_dir=str(folder))[0].successful
    # Back to a good folder: recorded again, and the WARN is gone.
    assert client.run("after the error", bgr8_msg(rgb, when=4002.0))[1].error_code == Result.SUCCESS
    graph.wait_until(
        lambda: any(s.instructions == ["after the error"] for s in samples(folder)),
        TIMEOUT,
        "the sample after the error",
    )
    graph.wait_until(
        lambda: observer.diagnostic(
            lambda level, message, values: (
                values.get("record_dir") == str(folder) and level == DiagnosticStatus.OK
            )
        ),
        10,
        "an OK diagnostic after recording works again",
    )
