"""Shared pieces of the lisa_node graph tests (test_node_*.py): starting the node, talking to it.

The node runs in a process of its own through ``testbed.scripted_lisa_node`` (the real LisaNode on
the tiny fixture checkpoint, on the CPU, answers scripted by instruction keyword); the tests'
clients, camera and subscribers live in the pytest process on a :class:`ros_harness.RclpyNode`.

Starting the node costs a few seconds (torch, the checkpoint), so each test module starts the
nodes it needs once (module-scoped fixtures below) and its tests share them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from lifecycle_msgs.srv import ChangeState, GetState
from lisa_ros_interfaces.action import Segment
from lisa_ros_interfaces.msg import Segmentation
from PIL import Image as PILImage
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient  # noqa: E402  (ros_harness checks rclpy is importable)
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import RclpyNode, RosProcess, RosProcesses, started_processes
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from lisa_ros.conversion.images import fill_image_msg
from testbed import CONFIG, PACKAGE
from testbed.fixture_replies import AND, REPLY_TEXT
from testbed.tiny_lisa import CHECKPOINT, FIXTURE, IMAGE

LAUNCHER = "testbed.scripted_lisa_node"  # run with python -m from the package folder

# The prompt of the fixture's reference run: with it and the fixture image, the node's masks must
# be the reference masks (reference.npz "mask_logits" > 0, as mask_parity compares them).
REFERENCE_INSTRUCTION = "Where is the thing? Please output segmentation mask."
DEFAULT_TEXT = REPLY_TEXT  # scripted_lisa_node's answer when no keyword matches
LONG_REPLY = (AND, 400)  # " and" 400 times (id, count): with a per-token delay, a long generation

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
SENSOR = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)

NODE_START_TIMEOUT = 120.0
RESULT_TIMEOUT = 60.0


def start_lisa(
    processes: RosProcesses,
    *parameters: str,
    replies: dict[str, Sequence[int] | tuple[int, int]] | None = None,
    slow: dict[str, float] | None = None,
    out_of_memory: Sequence[str] = (),
    load_delay: float = 0.0,
    remap: Sequence[str] = (),
    name: str = "lisa",
    namespace: str = "",
    model: str | Path = CHECKPOINT,
) -> RosProcess:
    """Start lisa_node (scripted) with config/lisa.yaml, the fixture model and ``parameters``."""
    args: list[str] = ["-m", LAUNCHER]
    for keyword, ids in (replies or {}).items():
        text = f"{ids[0]}*{ids[1]}" if ids is LONG_REPLY else ",".join(str(i) for i in ids)
        args += ["--reply", f"{keyword}={text}"]
    for keyword, seconds in (slow or {}).items():
        args += ["--slow", f"{keyword}={seconds}"]
    for keyword in out_of_memory:
        args += ["--oom", keyword]
    if load_delay:
        args += ["--load-delay", str(load_delay)]
    args += ["--ros-args", "--params-file", str(CONFIG), "-r", f"__node:={name}"]
    if namespace:
        args += ["-r", f"__ns:={namespace}"]
    for rule in remap:
        args += ["-r", rule]
    for parameter in (f"model:={model}", "precision:=fp32", "device:=cpu", *parameters):
        args += ["-p", parameter]
    return processes.start_python(
        *args, name=f"{namespace.strip('/')}_{name}".strip("_"), cwd=PACKAGE
    )


def complete_answers(callback: Callable[[Segmentation], None]) -> Callable[[Segmentation], None]:
    """``callback`` for the complete answers on ~/segmentation: what a consumer that acts on whole
    answers does with the early ones (``partial``: each mask as soon as it is decoded)."""

    def on_segmentation(msg: Segmentation) -> None:
        if not msg.partial:
            callback(msg)

    return on_segmentation


def wait_active(process: RosProcess) -> None:
    process.wait_for_output(r"Active: serving", NODE_START_TIMEOUT)


def fixture_rgb() -> np.ndarray:
    return np.asarray(PILImage.open(IMAGE).convert("RGB"))


def stamp(seconds: float) -> Time:
    return Time(sec=int(seconds), nanosec=int(round((seconds % 1) * 1e9)))


def stamp_seconds(time_msg: Time) -> float:
    return time_msg.sec + time_msg.nanosec * 1e-9


def image_msg(
    array: np.ndarray, encoding: str, when: float = 1234.5, frame_id: str = "camera_optical"
) -> Image:
    header = Header(stamp=stamp(when), frame_id=frame_id)
    return fill_image_msg(Image(), np.ascontiguousarray(array), encoding, header=header)


def bgr8_msg(rgb: np.ndarray, when: float = 1234.5, frame_id: str = "camera_optical") -> Image:
    return image_msg(rgb[..., ::-1], "bgr8", when, frame_id)


def reference_logits() -> np.ndarray:
    with np.load(FIXTURE / "reference.npz") as arrays:
        return arrays["mask_logits"]


def mono8_array(msg: Image) -> np.ndarray:
    assert msg.encoding == "mono8" and msg.step == msg.width
    return np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.width)


class Goal:
    """A Segment goal in flight: its handle, the feedback received, and its result."""

    def __init__(self, graph: RclpyNode, handle: Any, feedback: list[Any]) -> None:
        self._graph = graph
        self.handle = handle
        self.feedback = feedback
        self._result_future = handle.get_result_async() if handle.accepted else None

    @property
    def accepted(self) -> bool:
        return bool(self.handle.accepted)

    def result(self, timeout: float = RESULT_TIMEOUT) -> tuple[int, Any]:
        """(GoalStatus code, Segment.Result)."""
        assert self._result_future is not None, "the goal was rejected"
        response = self._graph.wait_for_future(self._result_future, timeout, "the Segment result")
        return response.status, response.result

    def done(self) -> bool:
        return self._result_future is not None and self._result_future.done()

    def cancel(self, timeout: float = 10.0) -> Any:
        return self._graph.wait_for_future(
            self.handle.cancel_goal_async(), timeout, "the cancel response"
        )

    def wait_for_feedback(self, predicate: Any, timeout: float, what: str) -> Any:
        return self._graph.wait_until(
            lambda: next((f for f in list(self.feedback) if predicate(f)), None), timeout, what
        )


class _ActionClient(ActionClient):
    """rclpy's ActionClient, safe to create while the node spins: rclpy adds it to the node
    before it creates its lock, so an executor thread can reach it without one
    (AttributeError: 'ActionClient' object has no attribute '_lock')."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock = threading.Lock()
        super().__init__(*args, **kwargs)


class LisaClient:
    """Clients of one lisa node: the Segment action, lifecycle and parameter services."""

    def __init__(self, graph: RclpyNode, node_path: str = "/lisa") -> None:
        self.graph = graph
        self.node_path = node_path
        self.action = _ActionClient(graph.node, Segment, f"{node_path}/segment")
        self._get_state = graph.node.create_client(GetState, f"{node_path}/get_state")
        self._change_state = graph.node.create_client(ChangeState, f"{node_path}/change_state")
        self._set_parameters = graph.node.create_client(
            SetParameters, f"{node_path}/set_parameters"
        )

    def wait_for_server(self, timeout: float = 30.0) -> None:
        assert self.action.wait_for_server(timeout_sec=timeout), (
            f"no action server {self.node_path}/segment"
        )

    def send(
        self,
        instruction: str,
        image: Image | None = None,
        session_id: str = "",
        timeout: float = 10.0,
        depth: Image | None = None,
        camera_info: CameraInfo | None = None,
    ) -> Goal:
        feedback: list[Any] = []
        goal = Segment.Goal(instruction=instruction, session_id=session_id)
        if image is not None:
            goal.image = image
        if depth is not None:
            goal.depth = depth
        if camera_info is not None:
            goal.camera_info = camera_info
        future = self.action.send_goal_async(
            goal, feedback_callback=lambda msg: feedback.append(msg.feedback)
        )
        handle = self.graph.wait_for_future(future, timeout, "goal acceptance")
        return Goal(self.graph, handle, feedback)

    def run(
        self,
        instruction: str,
        image: Image | None = None,
        session_id: str = "",
        timeout: float = RESULT_TIMEOUT,
        depth: Image | None = None,
        camera_info: CameraInfo | None = None,
    ) -> tuple[int, Any, list[Any]]:
        goal = self.send(instruction, image, session_id, depth=depth, camera_info=camera_info)
        assert goal.accepted, f"goal {instruction[:40]!r} rejected"
        status, result = goal.result(timeout)
        return status, result, goal.feedback

    def state(self, timeout: float = 10.0) -> str:
        assert self._get_state.wait_for_service(timeout_sec=timeout)
        response = self.graph.wait_for_future(
            self._get_state.call_async(GetState.Request()), timeout, "get_state"
        )
        return response.current_state.label

    def transition(self, label: str, timeout: float = 120.0) -> bool:
        assert self._change_state.wait_for_service(timeout_sec=10.0)
        request = ChangeState.Request()
        request.transition.label = label
        response = self.graph.wait_for_future(
            self._change_state.call_async(request), timeout, f"transition {label}"
        )
        return bool(response.success)

    def set_parameters(self, **values: Any) -> list[Any]:
        """Set parameters of the node; returns the SetParametersResult of each."""
        assert self._set_parameters.wait_for_service(timeout_sec=10.0)
        request = SetParameters.Request(
            parameters=[
                Parameter(name, value=value).to_parameter_msg() for name, value in values.items()
            ]
        )
        response = self.graph.wait_for_future(
            self._set_parameters.call_async(request), 10.0, "set_parameters"
        )
        return list(response.results)


@pytest.fixture(scope="module")
def module_processes(
    ros_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RosProcesses]:
    """Like ros_harness's ros_processes, for processes shared by the tests of a module."""
    with started_processes(ros_env, tmp_path_factory.mktemp("processes")) as processes:
        yield processes


@pytest.fixture(scope="module")
def graph(ros_env: dict[str, str]) -> Iterator[RclpyNode]:
    """An rclpy node in the test process shared by the tests of a module."""
    node = RclpyNode(ros_env, name=f"lisa_test_{int(time.monotonic() * 1000) % 100000}")
    try:
        yield node
    finally:
        node.close()
