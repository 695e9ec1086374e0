"""lisa_node's ~/segment action on a real ROS 2 graph: answers, feedback, sessions, cancel, busy
policies, bad goals, and responsiveness during a long generation.

One node process serves the whole module (see node_graph.py); its answers are scripted by keyword:
"nothing" -> no [SEG]; "long" -> 400 tokens at +50 ms per decoding step (about 20 s); anything
else -> "Sure, [SEG] and [SEG] ." Every layer of the model still runs on the CPU.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from action_msgs.msg import GoalStatus, GoalStatusArray
from diagnostic_msgs.msg import DiagnosticArray
from lisa_ros_interfaces.action import Segment
from mask_parity import assert_area_follows_logits, assert_masks_follow_logits
from node_graph import (
    DEFAULT_TEXT,
    LONG_REPLY,
    REFERENCE_INSTRUCTION,
    SENSOR,
    LisaClient,
    bgr8_msg,
    fixture_rgb,
    image_msg,
    mono8_array,
    reference_logits,
    stamp,
    start_lisa,
    wait_active,
)
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from testbed.fixture_replies import NOTHING_REPLY

Result = Segment.Result
CAMERA = "/camera/image_raw"
CAMERA_INFO = "/camera/camera_info"
SLOW_SECONDS_PER_TOKEN = 0.05


@pytest.fixture(scope="module")
def lisa(module_processes, graph):
    process = start_lisa(
        module_processes,
        "max_image_side:=1024",
        replies={"nothing": NOTHING_REPLY, "long": LONG_REPLY},
        slow={"long": SLOW_SECONDS_PER_TOKEN},
        out_of_memory=["exhaust the gpu"],
        remap=[f"image:={CAMERA}", f"camera_info:={CAMERA_INFO}"],
    )
    wait_active(process)
    client = LisaClient(graph)
    client.wait_for_server()
    yield client, process
    client.set_parameters(busy_policy="queue")  # leave no surprises for a later module


@pytest.fixture
def client(lisa):
    client, process = lisa
    yield client
    # Whatever a test changed, the next one starts from the YAML's busy policy.
    assert all(
        result.successful
        for result in client.set_parameters(busy_policy="queue", max_queued_goals=4)
    )


def test_goal_with_an_embedded_bgr8_image_returns_the_reference_masks_with_its_header(lisa) -> None:
    client, process = lisa
    goal_image = bgr8_msg(fixture_rgb(), when=1234.5, frame_id="hand_camera")
    status, result, feedback = client.run(REFERENCE_INSTRUCTION, goal_image)

    assert status == GoalStatus.STATUS_SUCCEEDED, process.output
    assert (result.error_code, result.error_message) == (Result.SUCCESS, "")
    assert result.header == goal_image.header
    assert result.text == DEFAULT_TEXT
    expected = reference_logits()
    assert len(result.masks) == len(expected) == 2
    for mask_msg, reference in zip(result.masks, expected, strict=True):
        assert mask_msg.header == goal_image.header
        mask = mono8_array(mask_msg)
        assert set(np.unique(mask)) <= {0, 255}
        assert_masks_follow_logits(mask, reference)  # bgr8 -> RGB, masks at full size

    assert [info.seg_index for info in result.mask_info] == [0, 1]
    assert [info.phrase for info in result.mask_info] == ["Sure", "and"]
    assert [info.text_offset for info in result.mask_info] == [
        result.text.index("[SEG]"),
        result.text.rindex("[SEG]"),
    ]
    for info, mask_msg, reference in zip(result.mask_info, result.masks, expected, strict=True):
        assert_area_follows_logits(info.area, reference)
        mask = mono8_array(mask_msg) == 255
        assert info.area == int(mask.sum())
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert (info.bbox.x_offset, info.bbox.y_offset) == (cols[0], rows[0])
        assert (info.bbox.width, info.bbox.height) == (
            cols[-1] - cols[0] + 1,
            rows[-1] - rows[0] + 1,
        )
        assert np.isfinite(info.score)
    timings = {timing.stage: timing.seconds for timing in result.timings}
    assert {"image_conversion", "queued", "sam_encoder", "decode", "total"} <= set(timings)
    assert all(seconds >= 0 for seconds in timings.values())

    # Feedback and result travel on different channels: the last feedback may come after the result.
    client.graph.wait_until(
        lambda: any(f.stage == "decoding_masks" for f in feedback), 5, "the last feedback"
    )
    stages = [f.stage for f in feedback]
    assert (
        stages.index("encoding_image") < stages.index("generating") < stages.index("decoding_masks")
    )
    texts = [f.text for f in feedback if f.text]
    assert texts and texts[-1] == DEFAULT_TEXT
    assert all(DEFAULT_TEXT.startswith(text.rstrip(" .")) for text in texts)
    # A stage change keeps the answer: the last feedback (masks being decoded) shows all of it.
    last = next(f for f in feedback if f.stage == "decoding_masks")
    assert last.text == DEFAULT_TEXT
    assert last.tokens_generated == max(f.tokens_generated for f in feedback) > 0
    first_text = next(i for i, f in enumerate(feedback) if f.text)
    assert all(f.text for f in feedback[first_text:]), [(f.stage, f.text) for f in feedback]


def publish_camera(graph, when: float, k: list[float], frames: int) -> CameraInfo:
    """Publish ``frames`` fixture frames stamped ``when``, ``when + 0.1``, ... with their camera
    info, a few times over, best effort like a camera; returns the camera info."""
    camera = graph.node.create_publisher(Image, CAMERA, SENSOR)
    info = graph.node.create_publisher(CameraInfo, CAMERA_INFO, SENSOR)
    graph.wait_for_subscribers(camera)
    graph.wait_for_subscribers(info)
    camera_info = CameraInfo(
        header=Header(stamp=stamp(when), frame_id="camera_optical"), width=420, height=300
    )
    camera_info.k = k
    rgb = fixture_rgb()
    for index in range(frames):
        info.publish(camera_info)
        camera.publish(bgr8_msg(rgb, when=when + index * 0.1))
        time.sleep(0.1)
    time.sleep(0.3)
    graph.node.destroy_publisher(camera)
    graph.node.destroy_publisher(info)
    return camera_info


def test_goal_without_image_uses_the_latest_camera_frame_and_its_camera_info(lisa, graph) -> None:
    client, process = lisa
    # The newest of the frames (stamp 2000.3) must be used.
    camera_info = publish_camera(
        graph, 2000.0, [300.0, 0.0, 210.0, 0.0, 300.0, 150.0, 0.0, 0.0, 1.0], frames=4
    )
    status, result, _ = client.run("what is in front of the robot?")

    assert status == GoalStatus.STATUS_SUCCEEDED, process.output
    assert result.error_code == Result.SUCCESS
    assert (result.header.stamp.sec, result.header.stamp.nanosec) == (2000, 300_000_000)
    assert result.header.frame_id == "camera_optical"
    assert list(result.camera_info.k) == list(camera_info.k)
    assert [m.header for m in result.masks] == [result.header] * 2


def test_follow_up_turn_with_the_same_session_uses_the_first_frame_and_the_history(client) -> None:
    first_image = bgr8_msg(fixture_rgb(), when=3000.0, frame_id="first")
    status, first, _ = client.run(REFERENCE_INSTRUCTION, first_image, session_id="kitchen")
    assert status == GoalStatus.STATUS_SUCCEEDED and first.error_code == Result.SUCCESS

    other_image = bgr8_msg(np.zeros((64, 64, 3), np.uint8), when=3100.0, frame_id="other")
    status, second, _ = client.run("and which one is closer?", other_image, session_id="kitchen")
    assert status == GoalStatus.STATUS_SUCCEEDED and second.error_code == Result.SUCCESS
    assert second.header == first_image.header  # the session's frame, not the goal's image
    assert [(m.height, m.width) for m in second.masks] == [(300, 420)] * 2
    # The scripted model adds one "and" per earlier turn it was given: the history arrived.
    assert second.text.split().count("and") == first.text.split().count("and") + 1
    timings = {t.stage: t.seconds for t in second.timings}
    assert timings["sam_encoder"] == 0.0  # same frame: the core reused its image encodings

    status, single, _ = client.run("and which one is closer?", other_image)
    assert single.header == other_image.header and single.text == DEFAULT_TEXT


def test_an_answer_without_seg_is_nothing_found_not_a_failure(client) -> None:
    status, result, _ = client.run("there is nothing here", bgr8_msg(fixture_rgb()))
    assert status == GoalStatus.STATUS_SUCCEEDED
    assert result.error_code == Result.NOTHING_FOUND and "[SEG]" in result.error_message
    assert result.text.startswith("Sure") and "[SEG]" not in result.text
    assert list(result.masks) == [] and list(result.mask_info) == []


def test_cancel_stops_generation_within_a_decoding_step(client) -> None:
    goal = client.send("a long answer please", bgr8_msg(fixture_rgb()))
    assert goal.accepted
    goal.wait_for_feedback(lambda f: f.tokens_generated >= 5, 30, "5 generated tokens")
    tokens_at_cancel = max(f.tokens_generated for f in goal.feedback)
    response = goal.cancel()
    assert len(response.goals_canceling) == 1
    canceled_at = time.monotonic()
    status, result = goal.result(timeout=10)
    # 400 tokens would take 20 s; one decoding step is 50 ms (+ the tiny model's few ms).
    assert time.monotonic() - canceled_at < 3.0
    assert status == GoalStatus.STATUS_CANCELED
    assert result.error_code == Result.CANCELED
    generated = result.text.split().count("and")
    assert tokens_at_cancel <= generated < tokens_at_cancel + 1.0 / SLOW_SECONDS_PER_TOKEN
    assert generated < LONG_REPLY[1] // 2


def test_a_running_goals_status_is_published_again_for_clients_that_missed_it(client, graph):
    # rclpy's action client drops a status that comes before the goal's response, and rclpy's
    # server publishes one only on a state change: without a second chance, the client (and so
    # `ros2 action send_goal`'s Ctrl-C) would not know the goal runs until it ends.
    statuses: list[GoalStatusArray] = []
    subscription = graph.node.create_subscription(
        GoalStatusArray, "/lisa/segment/_action/status", statuses.append, 10
    )
    try:
        goal = client.send("a long answer please", bgr8_msg(fixture_rgb()))
        goal.wait_for_feedback(lambda f: f.tokens_generated >= 3, 30, "3 generated tokens")
        since = len(statuses)
        time.sleep(2.5)  # no state change meanwhile: the goal generates
        goal_id = goal.handle.goal_id
        executing = [
            message
            for message in statuses[since:]
            if any(
                s.goal_info.goal_id == goal_id and s.status == GoalStatus.STATUS_EXECUTING
                for s in message.status_list
            )
        ]
        assert len(executing) >= 2, f"{len(executing)} status messages in 2.5 s"
        goal.cancel()
        assert goal.result(timeout=10)[0] == GoalStatus.STATUS_CANCELED
    finally:
        graph.node.destroy_subscription(subscription)


def test_a_canceled_goal_on_a_camera_frame_keeps_its_camera_info_and_gets_no_later_feedback(
    lisa, graph
) -> None:
    client, process = lisa
    camera_info = publish_camera(
        graph, 2500.0, [310.0, 0.0, 205.0, 0.0, 310.0, 155.0, 0.0, 0.0, 1.0], frames=3
    )
    goal = client.send("a long answer please")  # on the latest camera frame
    goal.wait_for_feedback(lambda f: f.tokens_generated >= 3, 30, "3 generated tokens")
    goal.cancel()
    status, result = goal.result(timeout=10)
    assert status == GoalStatus.STATUS_CANCELED, process.output
    assert result.header.stamp.sec == 2500 and list(result.camera_info.k) == list(camera_info.k)
    time.sleep(0.5)  # feedback travels apart from the result: give a late one time to arrive
    assert [f.stage for f in goal.feedback if f.stage != "generating"] == ["encoding_image"]
    assert goal.feedback[-1].text == result.text or result.text.startswith(goal.feedback[-1].text)


def test_the_cores_log_lines_reach_rosout_with_the_node_name_and_severity(client, graph) -> None:
    """The core warns through Python logging when it must shorten an answer to fit the context."""
    from rcl_interfaces.msg import Log

    records: list[Log] = []
    subscription = graph.node.create_subscription(Log, "/rosout", records.append, 100)
    try:
        assert client.set_parameters(max_new_tokens=4096)[
            0
        ].successful  # more than the context holds
        status, result, _ = client.run("the cup", bgr8_msg(fixture_rgb()))
        assert status == GoalStatus.STATUS_SUCCEEDED
        graph.wait_until(
            lambda: any("max_new_tokens lowered" in r.msg for r in records),
            5,
            "the core's warning on /rosout",
        )
        (record,) = [r for r in records if "max_new_tokens lowered" in r.msg]
        assert record.name == "lisa" and record.level == Log.WARN
    finally:
        client.set_parameters(max_new_tokens=512)
        graph.node.destroy_subscription(subscription)


def test_the_node_stays_responsive_during_a_long_generation(client, graph) -> None:
    diagnostics: list[DiagnosticArray] = []
    subscription = graph.node.create_subscription(
        DiagnosticArray, "/diagnostics", diagnostics.append, 10
    )
    goal = client.send("a long answer please", bgr8_msg(fixture_rgb()))
    goal.wait_for_feedback(lambda f: f.stage == "generating", 30, "generation to start")
    started = time.monotonic()
    assert client.state() == "active"  # lifecycle service answers while the model generates
    assert client.set_parameters(max_rate_hz=2.0)[0].successful  # parameter service too
    assert time.monotonic() - started < 2.0
    graph.wait_until(
        lambda: any(
            kv.key == "running" and kv.value == "goal"
            for array in diagnostics
            for status in array.status
            for kv in status.values
        ),
        5,
        "a diagnostics message (1 Hz timer) saying a goal runs",
    )
    assert not goal.done()
    goal.cancel()
    assert goal.result(10)[0] == GoalStatus.STATUS_CANCELED
    graph.node.destroy_subscription(subscription)


def test_busy_policy_reject_refuses_a_second_goal(client) -> None:
    assert client.set_parameters(busy_policy="reject")[0].successful
    running = client.send("a long answer please", bgr8_msg(fixture_rgb()))
    running.wait_for_feedback(lambda f: f.stage == "generating", 30, "generation to start")
    second = client.send("the cup", bgr8_msg(fixture_rgb()))
    assert not second.accepted
    running.cancel()
    assert running.result(10)[0] == GoalStatus.STATUS_CANCELED
    status, result, _ = client.run("the cup", bgr8_msg(fixture_rgb()))  # idle again: accepted
    assert status == GoalStatus.STATUS_SUCCEEDED


def test_busy_policy_queue_runs_waiting_goals_in_order_up_to_the_limit(client) -> None:
    assert client.set_parameters(busy_policy="queue", max_queued_goals=1)[0].successful
    running = client.send("a long answer please", bgr8_msg(fixture_rgb()))
    running.wait_for_feedback(lambda f: f.stage == "generating", 30, "generation to start")
    waiting = client.send("the cup", bgr8_msg(fixture_rgb(), when=4000.0))
    assert waiting.accepted
    waiting.wait_for_feedback(lambda f: f.stage.startswith("queued"), 10, "'queued' feedback")
    assert not client.send("the plate", bgr8_msg(fixture_rgb())).accepted  # queue full
    running.cancel()
    assert running.result(10)[0] == GoalStatus.STATUS_CANCELED
    status, result = waiting.result()
    assert status == GoalStatus.STATUS_SUCCEEDED and result.header.stamp.sec == 4000


def test_canceling_a_waiting_goal_answers_at_once_while_the_running_one_goes_on(client) -> None:
    assert client.set_parameters(busy_policy="queue", max_queued_goals=2)[0].successful
    running = client.send("a long answer please", bgr8_msg(fixture_rgb()))
    running.wait_for_feedback(lambda f: f.stage == "generating", 30, "generation to start")
    waiting = client.send("the cup", bgr8_msg(fixture_rgb()))
    waiting.wait_for_feedback(lambda f: f.stage.startswith("queued"), 10, "'queued' feedback")
    assert len(waiting.cancel().goals_canceling) == 1
    status, result = waiting.result(timeout=5)  # the running answer needs ~20 s more
    assert status == GoalStatus.STATUS_CANCELED and result.error_code == Result.CANCELED
    assert not running.done()
    running.cancel()
    assert running.result(10)[0] == GoalStatus.STATUS_CANCELED


def test_busy_policy_preempt_aborts_the_running_goal_for_the_new_one(client) -> None:
    assert client.set_parameters(busy_policy="preempt")[0].successful
    running = client.send("a long answer please", bgr8_msg(fixture_rgb()))
    running.wait_for_feedback(lambda f: f.stage == "generating", 30, "generation to start")
    newer = client.send("the cup", bgr8_msg(fixture_rgb(), when=5000.0))
    assert newer.accepted
    status, result = running.result(timeout=10)
    assert status == GoalStatus.STATUS_ABORTED
    assert result.error_code == Result.PREEMPTED and "preempt" in result.error_message
    status, result = newer.result()
    assert status == GoalStatus.STATUS_SUCCEEDED and result.header.stamp.sec == 5000


def test_running_out_of_gpu_memory_fails_the_goal_with_the_reason_and_the_next_goal_is_answered(
    client, lisa
) -> None:
    status, result, _ = client.run(
        "exhaust the gpu: where is the cup?", bgr8_msg(fixture_rgb(), when=6000.0)
    )
    assert status == GoalStatus.STATUS_ABORTED
    assert result.error_code == Result.INFERENCE_FAILED
    assert (
        "memory during inference" in result.error_message and "quantization" in result.error_message
    )
    # The node's log says it too, in one line with the code (an ERROR: the node's own failure).
    lisa[1].wait_for_output(r"\[ERROR\].*Goal aborted \(INFERENCE_FAILED\): .*memory", 10)
    status, result, _ = client.run("the cup", bgr8_msg(fixture_rgb(), when=6001.0))
    assert status == GoalStatus.STATUS_SUCCEEDED and result.error_code == Result.SUCCESS
    assert result.text == DEFAULT_TEXT and result.header.stamp.sec == 6001


def test_invalid_parameter_values_are_refused_with_a_reason(client) -> None:
    (result,) = client.set_parameters(busy_policy="lifo")
    assert not result.successful and "not one of 'queue', 'reject', 'preempt'" in result.reason
    (result,) = client.set_parameters(max_new_tokens=0)
    assert not result.successful and "out of range" in result.reason  # the descriptor's range
    try:
        first, second = client.set_parameters(min_image_side=200, max_image_side=100)
        assert first.successful
        assert (
            not second.successful
            and "min_image_side=200 is larger than max_image_side=100" in second.reason
        )
    finally:
        client.set_parameters(min_image_side=16)


def _truncated() -> Image:
    msg = bgr8_msg(fixture_rgb())
    msg.data = bytes(msg.data)[: msg.step * msg.height - 100]
    return msg


def _padded_rgb8() -> Image:
    rgb = fixture_rgb()
    padded = np.zeros((rgb.shape[0], rgb.shape[1] * 3 + 16), np.uint8)
    padded[:, : rgb.shape[1] * 3] = rgb.reshape(rgb.shape[0], -1)
    msg = image_msg(rgb, "rgb8")
    msg.step, msg.data = padded.shape[1], padded.tobytes()
    return msg


BAD_GOALS = {
    "unsupported encoding": (
        # jpeg bytes sent as a raw Image instead of a CompressedImage
        lambda: Image(height=32, width=64, encoding="jpeg", step=64, data=bytes(32 * 64)),
        "the cup",
        "unsupported image encoding 'jpeg'",
    ),
    "data shorter than step x height": (_truncated, "the cup", "fewer than step x height"),
    "1x1 image": (
        lambda: image_msg(np.zeros((1, 1, 3), np.uint8), "rgb8"),
        "the cup",
        "at least 16",
    ),
    "image over max_image_side": (
        lambda: image_msg(np.zeros((32, 1100, 3), np.uint8), "rgb8"),
        "the cup",
        "at most 1024",
    ),
    "empty instruction": (lambda: bgr8_msg(fixture_rgb()), "", "the instruction is empty"),
    "blank instruction": (lambda: bgr8_msg(fixture_rgb()), " \n\t ", "the instruction is empty"),
    "100 kB instruction": (
        lambda: bgr8_msg(fixture_rgb()),
        "where? " * 15_000,
        "the limit is 2000",
    ),
    "prompt longer than the model context": (
        lambda: bgr8_msg(fixture_rgb()),
        "where is the red thing? " * 80,
        "too long",
    ),
}


@pytest.mark.parametrize("case", list(BAD_GOALS))
def test_bad_goals_get_a_clear_error_and_the_next_goal_is_answered(client, case: str) -> None:
    make_image, instruction, expected = BAD_GOALS[case]
    status, result, _ = client.run(instruction, make_image())
    assert status == GoalStatus.STATUS_ABORTED
    assert result.error_code == Result.INVALID_INPUT
    assert expected in result.error_message
    status, result, _ = client.run("the cup", _padded_rgb8())
    assert status == GoalStatus.STATUS_SUCCEEDED and result.error_code == Result.SUCCESS
