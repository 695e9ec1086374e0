"""Ctrl-C and SIGTERM end `ros2 launch lisa_ros lisa.launch.py` cleanly, whatever the node is doing.

The real launch (the venv is a ROS prefix, see test_ros2_tools.py) with the tiny checkpoint is
started again and again and signalled at a seeded random moment of one of its phases:

- starting: the node's process runs our code, which has not printed anything yet (imports,
  rclpy.init, node construction). It begins when the process has installed its SIGTERM handler,
  the first thing its code does: in the ~0.1 s before, the interpreter is still starting and no
  program can answer a signal (the kernel's default action ends it, exit code -15);
- loading: during the model load (the lifecycle configure, on an executor thread);
- idle: active, nothing to do;
- answering: a ~segment goal is being answered (the tiny model babbles for seconds);
- following: a camera publishes at 5 Hz and a standing instruction is being segmented on it.

and with one of the ways a person or a supervisor stops it: SIGINT to the launch's process group
(a terminal's Ctrl-C: launch and node both get it), SIGINT to `ros2 launch` alone (launch forwards
it), SIGTERM to lisa_node (`kill PID`, launch's own escalation after 5 s, a container stop). Every
run must end every process, with the node and the launch exiting 0 ("process has finished
cleanly"), and nothing in the output may say "Traceback", "process has died", "exit code" or that
a publisher's context was invalid. (SIGTERM to `ros2 launch` itself makes launch cancel at once and
leave its children, by upstream design: "using SIGTERM can result in orphaned processes".)
"""

from __future__ import annotations

import os
import random
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from lisa_ros_interfaces.action import Segment
from node_graph import SENSOR, _ActionClient, bgr8_msg, fixture_rgb
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import RclpyNode, RosProcess, RosProcesses
from sensor_msgs.msg import Image
from std_msgs.msg import String

from testbed.tiny_lisa import ON_CPU

pytestmark = pytest.mark.slow

ROS2 = Path(sys.executable).parent / "ros2"
SEED = 19
PHASES = ("starting", "loading", "idle", "answering", "following")
STOPS = ("SIGINT to the process group", "SIGINT to ros2 launch", "SIGTERM to lisa_node")
RUNS = [(phase, stop) for stop in STOPS for phase in PHASES] + [
    (phase, STOPS[0]) for phase in PHASES
]  # 20: a terminal's Ctrl-C, the common case, twice in every phase
FORBIDDEN = ("Traceback", "process has died", "exit code", "context is invalid", "RCLError")
EXIT_TIMEOUT = 20.0  # launch escalates to SIGTERM after 5 s and SIGKILL after 10 s
QUEUED_GOALS = 4  # the default max_queued_goals
INSTRUCTION_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    if not ROS2.exists():
        pytest.skip(f"ros2 is not installed in {ROS2.parent.parent}: run `make setup`")


def launch(processes: RosProcesses, namespace: str) -> RosProcess:
    return processes.start(
        str(ROS2),
        "launch",
        "lisa_ros",
        "lisa.launch.py",
        *ON_CPU,
        f"namespace:={namespace}",
        name=f"launch_{namespace}",
    )


class Phases:
    """Brings a launched node to a phase; the camera and clients it makes live on ``graph``."""

    def __init__(self, graph: RclpyNode, launched: RosProcess, namespace: str) -> None:
        self.graph = graph
        self.launched = launched
        self.namespace = namespace
        self._cleanup: list[Callable[[], None]] = []

    def reach(self, phase: str) -> None:
        if phase == "starting":
            # Launch has started the node, which imports, initialises rclpy, builds the node.
            # (Before this, `ros2` itself is importing: a Ctrl-C there is the ros2 CLI's business.)
            self.launched.wait_for_output(r"process started with pid", 60)
            (pid,) = node_pids(self.launched.output)
            self.graph.wait_until(lambda: catches(pid, signal.SIGTERM), 30, "signal handlers")
            return
        if phase == "loading":
            self.launched.wait_for_output(r"Loading LISA", 60)
            return
        self.launched.wait_for_output(r"Active: serving", 120)
        if phase == "answering":
            self._answer_a_goal()
        elif phase == "following":
            self._follow_a_camera()

    def _answer_a_goal(self) -> None:
        client = _ActionClient(self.graph.node, Segment, f"/{self.namespace}/lisa/segment")
        self._cleanup.append(client.destroy)
        assert client.wait_for_server(timeout_sec=30)
        feedback: list[str] = []
        goal = Segment.Goal(instruction="where is the thing?", image=bgr8_msg(fixture_rgb()))

        def on_feedback(message: Segment.Impl.FeedbackMessage) -> None:
            feedback.append(message.feedback.stage)

        # The tiny model answers a goal in about a second: keep it busy with a queue of them.
        for _ in range(QUEUED_GOALS):
            client.send_goal_async(goal, feedback_callback=on_feedback)
        self.graph.wait_until(lambda: "generating" in feedback, 60, "the goal's generation")

    def _follow_a_camera(self) -> None:
        node = self.graph.node
        camera = node.create_publisher(Image, f"/{self.namespace}/image", SENSOR)
        instruction = node.create_publisher(
            String, f"/{self.namespace}/instruction", INSTRUCTION_QOS
        )
        streaming = threading.Event()
        frame = bgr8_msg(fixture_rgb())

        def stream() -> None:
            while not streaming.wait(0.2):
                camera.publish(frame)

        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()

        def stop() -> None:
            streaming.set()
            streamer.join()
            node.destroy_publisher(camera)
            node.destroy_publisher(instruction)

        self._cleanup.append(stop)
        self.graph.wait_until(lambda: instruction.get_subscription_count() > 0, 30, "the node")
        instruction.publish(String(data="the thing in the middle"))
        self.launched.wait_for_output(r"Standing instruction: 'the thing in the middle'", 30)

    def close(self) -> None:
        for cleanup in reversed(self._cleanup):
            cleanup()


def stop(launched: RosProcess, how: str) -> None:
    if how == "SIGINT to the process group":
        os.killpg(launched.pid, signal.SIGINT)
    elif how == "SIGINT to ros2 launch":
        launched.send_signal(signal.SIGINT)
    else:
        pids = node_pids(launched.output)
        if not pids:  # launch has not started it yet
            launched.wait_for_output(r"process started with pid", 30)
            pids = node_pids(launched.output)
        os.kill(pids[0], signal.SIGTERM)


def node_pids(output: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"process started with pid \[(\d+)\]", output)]


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for ``signum`` (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)$", status, re.MULTILINE).group(1), 16)
    return bool(caught >> (signum - 1) & 1)


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()  # a zombie has ended
    except FileNotFoundError:
        return False


def ended(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize(
    ("run", "phase", "how"),
    [(run, phase, how) for run, (phase, how) in enumerate(RUNS)],
    ids=[f"{run:02d}-{phase}-{how.replace(' ', '_')}" for run, (phase, how) in enumerate(RUNS)],
)
def test_a_signal_at_any_moment_ends_everything_cleanly(
    run: int, phase: str, how: str, ros_processes: RosProcesses, graph: RclpyNode
) -> None:
    rng = random.Random(SEED * 1000 + run)
    namespace = f"exit{run}_{os.getpid()}"
    launched = launch(ros_processes, namespace)
    phases = Phases(graph, launched, namespace)
    try:
        phases.reach(phase)
        time.sleep(rng.uniform(0.0, 1.5))
        before = launched.output
        stop(launched, how)
        status = launched.popen.wait(EXIT_TIMEOUT)
    except Exception:
        pytest.fail(f"{phase}, {how}: did not end\n{launched.describe()}")
    finally:
        phases.close()
    output = launched.output
    context = f"{phase}, {how} (signal {len(before)} characters in)\n{launched.describe()}"
    for pid in node_pids(output):
        assert ended(pid, 5.0), f"lisa_node {pid} outlived the launch: {context}"
    assert status == 0, context
    for text in FORBIDDEN:
        assert text not in output, f"{text!r}: {context}"
    if node_pids(output):
        assert "process has finished cleanly" in output, context
    if phase in ("idle", "answering", "following"):
        said = re.search(r"SIG(INT|TERM): shutting down(.*)$", output, re.MULTILINE)
        assert said, context
        if phase == "answering":
            assert "interrupting the answer to a goal" in said.group(2), context
