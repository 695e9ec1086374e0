"""3D targets on a real ROS 2 graph: a synthetic RGB-D camera (colour, aligned 16UC1 depth and
camera_info at 30 Hz, a box in front of a wall) feeds lisa_node (scripted tiny model); every
mask's 3D target must be what ``lisa_ros.geometry.locate`` computes on the same frames, in the
depth image's frame, on ~/segmentation, ~/markers and ~/points alike. Then what goes wrong with
real depth streams: half resolution, a stream that stops, and bad depth on topics and in goals,
each answered clearly and followed by a good answer.
"""

from __future__ import annotations

import gc
import re
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from action_msgs.msg import GoalStatus
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
    image_msg,
    mono8_array,
    stamp,
    stamp_seconds,
    start_lisa,
    wait_active,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, String
from visualization_msgs.msg import Marker, MarkerArray

from lisa_ros.conversion.depth import compressed_depth_fields
from lisa_ros.geometry import depth_to_meters, locate
from lisa_ros.node.depth import DepthPartner
from lisa_ros.node.diagnostics import LOG_REPEAT_SECONDS
from lisa_ros.node.inputs import InputError

NODE = "/rgbd/lisa"
FRAME = "cam_color_optical_frame"
WIDTH, HEIGHT = 420, 300  # the fixture image
K = np.array([[300.0, 0.0, 209.5], [0.0, 300.0, 149.5], [0.0, 0.0, 1.0]])
BOX = (slice(60, 240), slice(90, 330))  # rows, columns of the box face in the colour image
BOX_MM, WALL_MM = 800, 2000


def scene_depth_mm(scale: int = 1) -> np.ndarray:
    """The scene's depth at 1/``scale`` of the colour size: the box face in front of the wall."""
    rows = (np.arange(HEIGHT // scale) + 0.5) * scale - 0.5  # depth pixel centres, colour pixels
    cols = (np.arange(WIDTH // scale) + 0.5) * scale - 0.5
    in_box = ((rows >= BOX[0].start) & (rows < BOX[0].stop))[:, None] & (
        (cols >= BOX[1].start) & (cols < BOX[1].stop)
    )[None, :]
    return np.where(in_box, BOX_MM, WALL_MM).astype(np.uint16)


def camera_info(when: float, k: np.ndarray = K) -> CameraInfo:
    return CameraInfo(
        header=Header(stamp=stamp(when), frame_id=FRAME),
        width=WIDTH,
        height=HEIGHT,
        k=[float(v) for v in k.ravel()],
    )


class RgbdCamera:
    """Colour, aligned depth and camera_info with one stamp per frame, like an RGB-D driver.

    ``depth`` makes the depth message of a frame (None: none is published): tests swap it to
    stop the stream, halve its resolution or break it.
    """

    def __init__(self, graph: Any) -> None:
        node = graph.node
        self.graph = graph
        self.color = node.create_publisher(Image, "/cam/color", SENSOR)
        self.depth_raw = node.create_publisher(Image, "/cam/depth", SENSOR)
        self.depth_compressed = node.create_publisher(
            CompressedImage, "/cam/depth/compressedDepth", SENSOR
        )
        self.info = node.create_publisher(CameraInfo, "/cam/info", SENSOR)
        self.rgb = fixture_rgb()
        self.lock = threading.Lock()
        self.depth: Callable[[float], Any] | None = full_depth
        self.info_k = K
        self.sent_depth: dict[float, Any] = {}  # stamp -> depth message, for the checks
        self.count = 0
        self.timer = node.create_timer(1 / 30, self.publish)

    def publish(self) -> None:
        with self.lock:
            when = 20_000.0 + self.count / 30
            self.count += 1
            make_depth, info_k = self.depth, self.info_k
        self.info.publish(camera_info(when, info_k))
        if make_depth is not None:
            depth = make_depth(when)
            with self.lock:
                self.sent_depth[round(when, 6)] = depth
                if len(self.sent_depth) > 300:
                    self.sent_depth.pop(next(iter(self.sent_depth)))
            publisher = (
                self.depth_compressed if isinstance(depth, CompressedImage) else self.depth_raw
            )
            publisher.publish(depth)
        self.color.publish(bgr8_msg(self.rgb, when=when, frame_id=FRAME))

    def set_depth(self, make_depth: Callable[[float], Any] | None, info_k: np.ndarray = K) -> float:
        """Use ``make_depth`` from the next frame on; returns that frame's stamp (seconds)."""
        with self.lock:
            self.depth, self.info_k = make_depth, info_k
            return 20_000.0 + self.count / 30

    def depth_sent_at(self, header: Header) -> Any:
        with self.lock:
            return self.sent_depth[round(header.stamp.sec + header.stamp.nanosec * 1e-9, 6)]


def full_depth(when: float) -> Image:
    return image_msg(scene_depth_mm(), "16UC1", when, FRAME)


def half_depth(when: float) -> Image:
    return image_msg(scene_depth_mm(2), "16UC1", when, FRAME)


def compressed_depth(when: float) -> CompressedImage:
    fmt, data = compressed_depth_fields(scene_depth_mm())
    return CompressedImage(header=Header(stamp=stamp(when), frame_id=FRAME), format=fmt, data=data)


class Outputs:
    """~/segmentation, ~/markers, ~/points and /diagnostics of the node, as received."""

    def __init__(self, graph: Any) -> None:
        self.lock = threading.Lock()
        self.segmentation: list[tuple[float, Segmentation]] = []
        self.markers: list[MarkerArray] = []
        self.points: list[PointCloud2] = []
        self.diagnostics: list[tuple[float, DiagnosticStatus]] = []
        node = graph.node
        self._subscriptions = [
            node.create_subscription(
                Segmentation,
                f"{NODE}/segmentation",
                complete_answers(self._on_segmentation),
                RELIABLE,
            ),
            node.create_subscription(MarkerArray, f"{NODE}/markers", self._keep(self.markers), 10),
            node.create_subscription(PointCloud2, f"{NODE}/points", self._keep(self.points), 10),
            node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50),
        ]

    def _keep(self, into: list) -> Callable[[Any], None]:
        def keep(msg: Any) -> None:
            with self.lock:
                into.append(msg)
                del into[:-50]

        return keep

    def _on_segmentation(self, msg: Segmentation) -> None:
        with self.lock:
            self.segmentation.append((time.monotonic(), msg))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diagnostics += [(time.monotonic(), s) for s in msg.status if s.name == NODE]

    def result_after(
        self, graph: Any, when: float, predicate: Callable[[Segmentation], bool], what: str
    ) -> Segmentation:
        """The first result received after ``when`` (monotonic) that satisfies ``predicate``."""

        def find() -> Segmentation | None:
            with self.lock:
                return next((m for t, m in self.segmentation if t > when and predicate(m)), None)

        return graph.wait_until(find, 30, what)

    def result_of_frames_from(
        self, graph: Any, first_stamp: float, predicate: Callable[[Segmentation], bool], what: str
    ) -> Segmentation:
        """The first result of a frame stamped ``first_stamp`` or later (a frame taken before a
        change of the camera may still be answered after it) that satisfies ``predicate``."""

        def from_then_on(msg: Segmentation) -> bool:
            return stamp_seconds(msg.header.stamp) >= first_stamp - 1e-6 and predicate(msg)

        return self.result_after(graph, 0.0, from_then_on, what)

    def warn_after(self, graph: Any, when: float, text: str) -> DiagnosticStatus:
        """The first WARN status received after ``when`` (monotonic) whose message has ``text``."""

        def find() -> DiagnosticStatus | None:
            with self.lock:
                return next(
                    (
                        s
                        for t, s in self.diagnostics
                        if t > when and s.level == DiagnosticStatus.WARN and text in s.message
                    ),
                    None,
                )

        return graph.wait_until(find, 15, f"a WARN diagnostic saying {text!r}")

    def values_after(self, graph: Any, when: float) -> dict[str, str]:
        """The values of the first status received after ``when`` (monotonic)."""

        def find() -> dict[str, str] | None:
            with self.lock:
                return next(
                    (
                        {kv.key: kv.value for kv in s.values}
                        for t, s in self.diagnostics
                        if t > when
                    ),
                    None,
                )

        return graph.wait_until(find, 5, "a /diagnostics status")

    def for_header(self, graph: Any, topic: str, header: Header, masks: int | None = None) -> Any:
        """The ~/markers or ~/points message with ``header``; with ``masks``, the one of an answer
        with that many masks (the node publishes each mask early, then the complete answer)."""

        def find() -> Any:
            with self.lock:
                return next(
                    (
                        m
                        for m in getattr(self, topic)
                        if _header_of(m) == header and (masks is None or _masks_in(m) == masks)
                    ),
                    None,
                )

        return graph.wait_until(find, 10, f"~/{topic} with the depth frame's header")


def _header_of(msg: Any) -> Header:
    return msg.markers[-1].header if isinstance(msg, MarkerArray) else msg.header


def _masks_in(msg: Any) -> int:
    """How many masks a ~/markers (one sphere each) or ~/points (labels 1..N) message shows."""
    if isinstance(msg, MarkerArray):
        return sum(marker.type == Marker.SPHERE for marker in msg.markers)
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(-1, msg.point_step)
    return len(np.unique(rows[:, 16:20].copy().view("<u4")))


@pytest.fixture(scope="module")
def rgbd(module_processes, graph):
    process = start_lisa(
        module_processes,
        "max_rate_hz:=5.0",
        namespace="/rgbd",
        remap=["image:=/cam/color", "depth:=/cam/depth", "camera_info:=/cam/info"],
    )
    wait_active(process)
    outputs = Outputs(graph)
    camera = RgbdCamera(graph)
    instruction = graph.node.create_publisher(String, "/rgbd/instruction", RELIABLE)
    graph.wait_for_subscribers(camera.color)
    graph.wait_for_subscribers(camera.depth_raw)
    graph.wait_for_subscribers(instruction)
    instruction.publish(String(data=REFERENCE_INSTRUCTION))
    yield process, outputs, camera, instruction
    graph.node.destroy_timer(camera.timer)


def has_targets(msg: Segmentation) -> bool:
    return bool(msg.mask_info) and all(info.has_target for info in msg.mask_info)


def expected_targets(msg: Segmentation, depth_msg: Image) -> list[Any]:
    """``locate`` on the result's own masks and the depth image sent with its frame."""
    depth = np.frombuffer(bytes(depth_msg.data), np.uint16).reshape(
        depth_msg.height, depth_msg.width
    )
    meters = depth_to_meters(depth)
    return [locate(mono8_array(mask) > 0, meters, K) for mask in msg.masks]


def assert_targets_equal(msg: Segmentation, expected: list[Any]) -> None:
    assert len(msg.mask_info) == len(expected) == 2
    for info, target in zip(msg.mask_info, expected, strict=True):
        assert info.has_target and target.ok and info.target_status == "", info.target_status
        for field, values in (
            ("centroid", target.centroid),
            ("extent_min", target.extent_min),
            ("extent_max", target.extent_max),
        ):
            point = getattr(info, field)
            np.testing.assert_allclose([point.x, point.y, point.z], values, rtol=0, atol=1e-9)
        assert info.num_points == target.num_points > 0
        assert info.valid_ratio == pytest.approx(target.valid_ratio, abs=1e-6)


def test_every_mask_gets_the_3d_target_locate_computes_in_the_depth_frame(rgbd, graph) -> None:
    process, outputs, camera, _ = rgbd
    started = time.monotonic()
    msg = outputs.result_after(graph, started, has_targets, "a result with 3D targets")
    depth_msg = camera.depth_sent_at(msg.header)
    assert msg.depth_status == ""
    assert msg.depth_header == depth_msg.header and msg.depth_header.frame_id == FRAME
    assert_targets_equal(msg, expected_targets(msg, depth_msg))
    # The scene is a box at 0.8 m before a wall at 2 m: every centroid lies between them.
    assert all(0.8 <= info.centroid.z <= 2.0 for info in msg.mask_info)

    masks = len(msg.mask_info)
    markers = outputs.for_header(graph, "markers", msg.depth_header, masks)
    assert markers.markers[0].action == Marker.DELETEALL
    spheres = [m for m in markers.markers if m.type == Marker.SPHERE]
    assert [(s.pose.position.x, s.pose.position.y, s.pose.position.z) for s in spheres] == [
        (info.centroid.x, info.centroid.y, info.centroid.z) for info in msg.mask_info
    ]
    assert all(m.header == msg.depth_header for m in markers.markers[1:])
    assert {m.type for m in markers.markers[1:]} == {
        Marker.SPHERE,
        Marker.CUBE,
        Marker.TEXT_VIEW_FACING,
    }

    cloud = outputs.for_header(graph, "points", msg.depth_header, masks)
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb", "label"]
    assert (cloud.height, cloud.width) == (1, sum(info.num_points for info in msg.mask_info))
    labels = np.frombuffer(bytes(cloud.data), np.uint8).reshape(-1, cloud.point_step)
    labels = labels[:, 16:20].copy().view("<u4").ravel()
    assert [int((labels == k + 1).sum()) for k in range(2)] == [
        info.num_points for info in msg.mask_info
    ]


def test_depth_at_half_resolution_is_scaled_to_the_colour_camera(rgbd, graph) -> None:
    process, outputs, camera, _ = rgbd
    camera.set_depth(half_depth)
    try:
        started = time.monotonic()
        msg = outputs.result_after(
            graph,
            started,
            lambda m: has_targets(m) and camera.depth_sent_at(m.header).width == WIDTH // 2,
            "a result paired with half-resolution depth",
        )
        assert_targets_equal(msg, expected_targets(msg, camera.depth_sent_at(msg.header)))
    finally:
        camera.set_depth(full_depth)


def test_a_depth_stream_that_stops_leaves_2d_answers_and_a_diagnostic(rgbd, graph) -> None:
    process, outputs, camera, _ = rgbd
    outputs.result_after(graph, 0.0, has_targets, "3D targets while the depth stream runs")
    stopped = time.monotonic()
    first_without = camera.set_depth(None)
    try:
        # A frame within depth_max_skew_s of the last depth image still pairs with it.
        msg = outputs.result_of_frames_from(
            graph, first_without + 0.1, lambda m: bool(m.mask_info), "a result after depth stopped"
        )
        assert len(msg.masks) == 2 and not any(info.has_target for info in msg.mask_info)
        assert "no depth image within depth_max_skew_s" in msg.depth_status
        assert all(info.target_status == msg.depth_status for info in msg.mask_info)

        def depth_missing() -> bool:
            with outputs.lock:
                return any(
                    when > stopped
                    and status.level == DiagnosticStatus.WARN
                    and "depth missing" in status.message
                    for when, status in outputs.diagnostics
                )

        graph.wait_until(depth_missing, 10, "a 'depth missing' diagnostic")
    finally:
        camera.set_depth(full_depth)
    outputs.result_after(graph, time.monotonic(), has_targets, "3D targets once depth is back")


def _colour_depth(when: float) -> Image:
    return image_msg(np.zeros((HEIGHT, WIDTH, 3), np.uint8), "rgb8", when, FRAME)


def _odd_size_depth(when: float) -> Image:
    return image_msg(np.full((HEIGHT, WIDTH - 20), 900, np.uint16), "16UC1", when, FRAME)


def _other_frame_depth(when: float) -> Image:
    return image_msg(scene_depth_mm(), "16UC1", when, "cam_depth_optical_frame")


def _zero_depth(when: float) -> Image:
    return image_msg(np.zeros((HEIGHT, WIDTH), np.uint16), "16UC1", when, FRAME)


def _truncated_compressed_depth(when: float) -> CompressedImage:
    msg = compressed_depth(when)
    msg.data = bytes(msg.data)[: len(msg.data) // 2]
    return msg


# name -> (depth message of a frame, camera matrix, what the result must say)
TOPIC_FAULTS = {
    "colour encoding": (_colour_depth, K, "encoding 'rgb8'"),
    "size not a fraction": (_odd_size_depth, K, "400x300"),
    "another frame_id": (_other_frame_depth, K, "'cam_depth_optical_frame'"),
    "K all zero": (full_depth, np.zeros((3, 3)), "K is all zero"),
}


@pytest.mark.parametrize("fault", list(TOPIC_FAULTS))
def test_bad_depth_on_the_topics_is_explained_and_good_depth_works_again(
    rgbd, graph, fault
) -> None:
    process, outputs, camera, _ = rgbd
    make_depth, k, says = TOPIC_FAULTS[fault]
    started = time.monotonic()
    first_bad = camera.set_depth(make_depth, k)
    try:
        msg = outputs.result_of_frames_from(
            graph, first_bad, lambda m: says in m.depth_status, f"depth_status {says!r}"
        )
        assert len(msg.masks) == 2 and not any(info.has_target for info in msg.mask_info)
        # Loud, not only in the result: /diagnostics turns WARN with the reason, and the log
        # says it in one WARN line, not one per frame (at most once per LOG_REPEAT_SECONDS).
        status = outputs.warn_after(graph, started, says)
        assert "no 3D targets" in status.message
        line = rf"\[WARN\].*no 3D targets: [^\n]*{re.escape(says)}"
        process.wait_for_output(line, 10)
        repeats = 1 + (time.monotonic() - started) // LOG_REPEAT_SECONDS
        assert 1 <= len(re.findall(line, process.output)) <= repeats
    finally:
        camera.set_depth(full_depth)
    outputs.result_after(graph, time.monotonic(), has_targets, "3D targets after the fault")


def test_all_zero_depth_gives_masks_without_targets_and_says_why(rgbd, graph) -> None:
    process, outputs, camera, _ = rgbd
    first_zero = camera.set_depth(_zero_depth)
    try:
        msg = outputs.result_of_frames_from(
            graph, first_zero, lambda m: bool(m.mask_info), "a result on all-zero depth"
        )
        assert msg.depth_status == ""  # the depth image itself is fine...
        assert not any(info.has_target for info in msg.mask_info)  # ...but has no readings
        assert all(info.valid_ratio == 0.0 and info.num_points == 0 for info in msg.mask_info)
    finally:
        camera.set_depth(full_depth)
    outputs.result_after(graph, time.monotonic(), has_targets, "3D targets after zero depth")


def test_compressed_depth_transport_and_a_truncated_message(rgbd, graph) -> None:
    process, outputs, camera, _ = rgbd
    client = LisaClient(graph, NODE)
    assert client.set_parameters(depth_transport="compressedDepth")[0].successful
    assert client.transition("deactivate") and client.transition("activate")
    try:
        graph.wait_for_subscribers(camera.depth_compressed)
        camera.set_depth(compressed_depth)
        good = outputs.result_after(
            graph, time.monotonic(), has_targets, "3D targets from compressedDepth"
        )
        assert good.depth_header.frame_id == FRAME
        first_bad = camera.set_depth(_truncated_compressed_depth)
        bad = outputs.result_of_frames_from(
            graph,
            first_bad,
            lambda m: "compressedDepth" in m.depth_status,
            "a result on a truncated compressedDepth message",
        )
        assert not any(info.has_target for info in bad.mask_info)
        camera.set_depth(compressed_depth)
        outputs.result_after(graph, time.monotonic(), has_targets, "3D targets again")
    finally:
        camera.set_depth(full_depth)
        assert client.set_parameters(depth_transport="raw")[0].successful
        assert client.transition("deactivate") and client.transition("activate")


# --- goals that bring their own depth -------------------------------------------------------


def _goal_image() -> Image:
    return bgr8_msg(fixture_rgb(), when=30_000.0, frame_id=FRAME)


GOAL_FAULTS = {
    "colour encoding": (lambda: _colour_depth(30_000.0), K, "encoding 'rgb8'"),
    "size not a fraction": (lambda: _odd_size_depth(30_000.0), K, "400x300"),
    "another frame_id": (lambda: _other_frame_depth(30_000.0), K, "'cam_depth_optical_frame'"),
    "K all zero": (lambda: full_depth(30_000.0), np.zeros((3, 3)), "K is all zero"),
}


@pytest.fixture
def goals_only(rgbd, graph):
    """The rgbd node with continuous mode off, so goals run at once."""
    process, outputs, camera, instruction = rgbd
    outputs.result_after(graph, 0.0, lambda m: True, "a first result: the camera is seen")
    instruction.publish(String(data=""))
    yield LisaClient(graph, NODE), camera
    instruction.publish(String(data=REFERENCE_INSTRUCTION))


def run_goal(client: LisaClient, depth: Image, k: np.ndarray) -> tuple[int, Any]:
    status, result, _ = client.run(
        REFERENCE_INSTRUCTION, _goal_image(), depth=depth, camera_info=camera_info(30_000.0, k)
    )
    return status, result


@pytest.mark.parametrize("fault", list(GOAL_FAULTS))
def test_a_goal_with_unusable_depth_is_refused_and_the_next_goal_succeeds(
    goals_only, fault
) -> None:
    client, camera = goals_only
    make_depth, k, says = GOAL_FAULTS[fault]
    status, result = run_goal(client, make_depth(), k)
    assert status == GoalStatus.STATUS_ABORTED
    assert result.error_code == Segment.Result.INVALID_INPUT
    assert "goal field 'depth'" in result.error_message and says in result.error_message

    depth = full_depth(30_000.0)
    status, result = run_goal(client, depth, K)
    assert (status, result.error_code) == (GoalStatus.STATUS_SUCCEEDED, Segment.Result.SUCCESS)
    assert result.depth_header == depth.header and result.depth_status == ""
    assert_targets_equal(result, expected_targets(result, depth))


def test_a_goal_without_depth_is_answered_in_2d_and_says_so(goals_only) -> None:
    client, camera = goals_only
    status, result, _ = client.run(REFERENCE_INSTRUCTION, _goal_image())
    assert result.error_code == Segment.Result.SUCCESS and len(result.masks) == 2
    assert not any(info.has_target for info in result.mask_info)
    assert "without a depth image" in result.depth_status


def test_a_goal_on_the_camera_frame_gets_that_frames_depth(goals_only) -> None:
    client, camera = goals_only
    status, result, _ = client.run(REFERENCE_INSTRUCTION)
    assert result.error_code == Segment.Result.SUCCESS
    depth = camera.depth_sent_at(result.header)
    assert result.depth_header == depth.header
    assert_targets_equal(result, expected_targets(result, depth))


# --- loud, not silent: a camera that stops, and what /diagnostics counts -------------------------


@pytest.fixture
def idle_camera(rgbd, graph):
    """The rgbd node with the camera running and nothing to do: no standing instruction, no
    following (frames are wanted by nobody)."""
    process, outputs, camera, instruction = rgbd
    outputs.result_after(graph, 0.0, lambda m: True, "a first result: the camera is seen")
    client = LisaClient(graph, NODE)
    instruction.publish(String(data=""))
    assert client.set_parameters(follow_rate_hz=0.0)[0].successful
    time.sleep(1.5)  # a frame inference running when the instruction was cleared ends
    yield process, outputs, camera, client
    assert client.set_parameters(follow_rate_hz=10.0, max_frame_age_s=1.0)[0].successful
    instruction.publish(String(data=REFERENCE_INSTRUCTION))


def result_counts(values: dict[str, str]) -> dict[str, int]:
    pairs = [item.split(": ") for item in values["goal_results"].split(", ") if item]
    return {code: int(count) for code, count in pairs}


def test_idle_frames_are_not_dropped_and_goals_are_counted_by_outcome(idle_camera, graph) -> None:
    process, outputs, camera, client = idle_camera
    before = outputs.values_after(graph, time.monotonic())
    time.sleep(3.0)
    idle = outputs.values_after(graph, time.monotonic())
    received = int(idle["frames_received"]) - int(before["frames_received"])
    assert received >= 15, (before, idle)  # a 30 Hz camera for 3 s (fewer on a busy machine)
    # Nobody wanted those frames: none was dropped for want of time, none reasoned.
    for key in ("frames_dropped_busy", "frames_reasoned", "frames_followed"):
        assert idle[key] == before[key], key
    assert int(idle["frames_unused"]) - int(before["frames_unused"]) >= received - 1

    status, result, _ = client.run(REFERENCE_INSTRUCTION)  # on the camera's latest frame
    assert (status, result.error_code) == (GoalStatus.STATUS_SUCCEEDED, Segment.Result.SUCCESS)
    after = outputs.values_after(graph, time.monotonic())
    assert int(after["goals_succeeded"]) == int(idle["goals_succeeded"]) + 1
    assert result_counts(after).get("SUCCESS", 0) == result_counts(idle).get("SUCCESS", 0) + 1
    assert after["goals_aborted"] == idle["goals_aborted"]
    assert after["frames_dropped_busy"] == idle["frames_dropped_busy"]


def test_a_stopped_camera_is_diagnosed_and_its_last_frame_refused_to_goals(
    idle_camera, graph
) -> None:
    process, outputs, camera, client = idle_camera
    before = outputs.values_after(graph, time.monotonic())
    camera.timer.cancel()
    stopped = time.monotonic()
    try:
        status = outputs.warn_after(graph, stopped, "no image for")
        seconds = float(re.match(r"no image for ([\d.]+) s", status.message).group(1))
        assert seconds >= 2.0 and "depth missing" not in status.message  # colour comes first

        sent = time.monotonic()
        status, result, _ = client.run(REFERENCE_INSTRUCTION)
        answered = time.monotonic()
        assert (status, result.error_code) == (GoalStatus.STATUS_ABORTED, Segment.Result.NO_IMAGE)
        age = float(re.search(r"latest frame is ([\d.]+) s old", result.error_message).group(1))
        assert sent - stopped - 0.5 <= age <= answered - stopped + 0.5, (age, result.error_message)
        assert "max_frame_age_s=1" in result.error_message
        process.wait_for_output(
            r"\[WARN\].*Goal aborted \(NO_IMAGE\): the camera's latest frame is [\d.]+ s old", 10
        )
        after = outputs.values_after(graph, time.monotonic())
        assert int(after["goals_aborted"]) == int(before["goals_aborted"]) + 1
        assert result_counts(after)["NO_IMAGE"] == result_counts(before).get("NO_IMAGE", 0) + 1

        # A goal that brings its image does not need the camera; max_frame_age_s 0 turns it off.
        status, result, _ = client.run(REFERENCE_INSTRUCTION, _goal_image())
        assert result.error_code == Segment.Result.SUCCESS
        assert client.set_parameters(max_frame_age_s=0.0)[0].successful
        status, result, _ = client.run(REFERENCE_INSTRUCTION)
        assert result.error_code == Segment.Result.SUCCESS, result.error_message
    finally:
        camera.timer.reset()
    assert client.set_parameters(max_frame_age_s=1.0)[0].successful
    time.sleep(0.5)
    status, result, _ = client.run(REFERENCE_INSTRUCTION)
    assert result.error_code == Segment.Result.SUCCESS, result.error_message


@pytest.mark.parametrize("broken", ["missing", "undecodable"])
def test_a_refused_depth_keeps_nothing_of_the_caller_alive(broken: str) -> None:
    """A frame's depth is asked for by several outputs and each gets the same refusal, but it must
    not be a raised exception kept in the DepthPartner: its traceback would hold the caller's frame
    (the image, the masks) in a cycle that only a rare full collection frees. Every followed frame
    of a camera without depth left one behind: +45 MB a minute in test_node_follow's memory test."""

    class Image_:  # stands for the camera image in the job's locals
        pass

    if broken == "missing":
        depth = DepthPartner.none("no depth image has arrived")
    else:  # a colour image where depth should be
        rgb = Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(48))
        depth = DepthPartner(rgb, camera_info(0.0), image_header=rgb.header)

    def answer(image: Image_) -> None:
        for _ in range(3):  # ~/segmentation, ~/markers, ~/points
            with pytest.raises(InputError):
                depth.load((4, 4))

    image = Image_()
    kept = weakref.ref(image)
    gc.disable()  # what matters is that no cycle is left for the collector
    try:
        answer(image)
        del image
        assert kept() is None
    finally:
        gc.enable()
