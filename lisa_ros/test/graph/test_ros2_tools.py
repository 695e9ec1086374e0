"""lisa_ros driven the way users drive it: colcon, ros2 launch,
ros2 action/lifecycle/param/topic/run.

The real upstream command-line tools (not on PyPI) are installed into the venv by `make setup` when
``ROS2_TOOLS`` (default ``../shared/ros2-tools``) holds their sources. Without them these tests skip
and say why; with ``LISA_ROS_REQUIRE_ROS2_TOOLS=1`` (set by ``.ci/run``) a missing tool fails them.

- A colcon workspace with both packages is built once; ``ros2 launch`` runs the installed launch
  file from it, as on a robot, with every kind of launch argument. That launch is then used the
  way a person would: parameters, lifecycle transitions, a standing instruction, the outputs, and
  Ctrl-C ending everything.
- The action tests need known, slowed answers: they run the scripted node of ``node_graph`` (the
  real LisaNode, scripted next tokens) and drive it with ``ros2 action send_goal``.
- Every process shares the harness's DDS settings (localhost only, a domain of its own); the
  ``ros2`` daemon (started with the module, as most verbs use it) is stopped at its end.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from node_graph import (
    CHECKPOINT,
    LONG_REPLY,
    SENSOR,
    bgr8_msg,
    fixture_rgb,
    start_lisa,
    wait_active,
)
from ros_harness import RosProcess, RosProcesses
from sensor_msgs.msg import Image

from testbed import PACKAGE
from testbed.fixture_replies import AND, COMMA, DOT, SEG, SURE
from testbed.tiny_lisa import CLIP, ON_CPU, ros_parameters

BIN = Path(sys.executable).parent
ROS2 = BIN / "ros2"
COLCON = BIN / "colcon"
PACKAGES = PACKAGE.parent  # the checkout: lisa_ros/ and lisa_ros_interfaces/
REQUIRE_TOOLS = os.environ.get("LISA_ROS_REQUIRE_ROS2_TOOLS") == "1"

CLI_TIMEOUT = 60.0
# "Sure, [SEG]" and " and" 20 times: at +50 ms a token, the answer grows for about a second.
GROWING_REPLY = [SURE, COMMA, SEG] + [AND] * 20 + [DOT]


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    missing = [path.name for path in (ROS2, COLCON) if not path.exists()]
    if not missing:
        return
    reason = (
        f"{' and '.join(missing)} not installed in {BIN.parent}: "
        "run `make setup` where ../shared/ros2-tools "
        "holds the ros2 tools' sources (or ROS2_TOOLS=DIR make setup)"
    )
    if REQUIRE_TOOLS:
        pytest.fail(reason + " [LISA_ROS_REQUIRE_ROS2_TOOLS=1]")
    pytest.skip(reason)


class Ros2:
    """Runs ``ros2`` with the harness environment, optionally over a sourced colcon install."""

    def __init__(self, env: dict[str, str], setup_bash: Path | None = None) -> None:
        self.env = env
        self.setup_bash = setup_bash

    def command(self, *args: str) -> list[str]:
        if self.setup_bash is None:
            return [str(ROS2), *args]
        return ["bash", "-c", 'source "$0" && exec "$@"', str(self.setup_bash), str(ROS2), *args]

    def __call__(self, *args: str, timeout: float = CLI_TIMEOUT, check: bool = True) -> str:
        """Run ``ros2 ARGS`` to its end; returns stdout and stderr together."""
        done = subprocess.run(
            self.command(*args),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            pytest.fail(f"ros2 {' '.join(args)} exited with {done.returncode}:\n{done.stdout}")
        return done.stdout

    def start(self, processes: RosProcesses, *args: str, name: str) -> RosProcess:
        """Start ``ros2 ARGS`` in the background (stopped by SIGINT, as Ctrl-C would)."""
        return processes.start(*self.command(*args), name=name)


@pytest.fixture(scope="module", autouse=True)
def daemon(tools: None, ros_env: dict[str, str]) -> Iterator[None]:
    """The ros2 daemon of this module's domain, up before any test queries it (a daemon spawned by
    a query may answer the next one before its discovery is complete), stopped at the end."""
    cli = Ros2(ros_env)
    answer = cli("daemon", "start")
    assert "started" in answer or "already running" in answer, answer
    try:
        yield
    finally:
        cli("daemon", "stop", check=False, timeout=30)


@pytest.fixture(scope="module")
def ros2(ros_env: dict[str, str]) -> Ros2:
    return Ros2(ros_env)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, ros_env: dict[str, str]) -> Path:
    """A colcon workspace with both packages built and installed, as a user builds it."""
    root = tmp_path_factory.mktemp("colcon_ws")
    (root / "src").mkdir()
    for package in ("lisa_ros_interfaces", "lisa_ros"):
        (root / "src" / package).symlink_to(PACKAGES / package)
    env = {**ros_env, "CMAKE_PREFIX_PATH": sys.prefix}
    done = subprocess.run(
        [
            str(COLCON),
            "build",
            "--packages-select",
            "lisa_ros_interfaces",
            "lisa_ros",
            "--cmake-args",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=OFF",
        ],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout
    assert "2 packages finished" in done.stdout, done.stdout
    return root


def test_colcon_installs_both_packages_where_ros2_finds_them(workspace: Path, ros_env) -> None:
    installed = Ros2(ros_env, workspace / "install" / "setup.bash")
    assert installed("pkg", "prefix", "lisa_ros").strip() == str(workspace / "install" / "lisa_ros")
    executables = installed("pkg", "executables", "lisa_ros").split("\n")
    assert {"lisa_ros lisa_node", "lisa_ros lisa-ask", "lisa_ros lisa-segment"} <= set(executables)
    share = workspace / "install" / "lisa_ros" / "share" / "lisa_ros"
    for installed_file in (
        "launch/lisa.launch.py",
        "config/lisa.yaml",
        "rviz/lisa.rviz",
        "package.xml",
    ):
        assert (share / installed_file).is_file(), installed_file
    action = installed("interface", "show", "lisa_ros_interfaces/action/Segment")
    assert "string instruction" in action and "uint8 NOTHING_FOUND = 1" in action


def test_the_venv_is_a_ros_prefix_for_lisa_ros(ros2: Ros2, ros_processes: RosProcesses) -> None:
    """After `make setup`, without any workspace: ros2 pkg, launch and run find lisa_ros."""
    assert ros2("pkg", "prefix", "lisa_ros").strip() == sys.prefix
    arguments = ros2("launch", "lisa_ros", "lisa.launch.py", "--show-args")
    for name in ("model", "vision_tower", "precision", "device", "namespace", "image", "use_rviz"):
        assert f"'{name}':" in arguments, arguments

    node = ros2.start(
        ros_processes,
        "run",
        "lisa_ros",
        "lisa_node",
        "--ros-args",
        "-r",
        "__node:=run_lisa",
        *ros_parameters(*ON_CPU),
        name="ros2_run",
    )
    wait_active(node)
    assert "[run_lisa]" in node.output
    os.killpg(node.pid, signal.SIGINT)  # Ctrl-C in a terminal: `ros2 run` and the node it runs
    assert node.wait(timeout=15) == 0, node.output


# --- ros2 launch ----------------------------------------------------------------------------------

NAMESPACE = "robot1"
NODE = f"/{NAMESPACE}/lisa"
CAMERA = "/cam/image_raw"
INSTRUCTION = f"/{NAMESPACE}/say"


@pytest.fixture(scope="module")
def launched(
    workspace: Path, ros_env, module_processes: RosProcesses
) -> Iterator[tuple[Ros2, RosProcess]]:
    """`ros2 launch lisa_ros lisa.launch.py` from the colcon install, with launch arguments of
    every kind, and use_rviz:=true on a machine without rviz2."""
    installed = Ros2(ros_env, workspace / "install" / "setup.bash")
    launch = installed.start(
        module_processes,
        "launch",
        "lisa_ros",
        "lisa.launch.py",
        *ON_CPU,
        f"namespace:={NAMESPACE}",
        f"image:={CAMERA}",
        "camera_info:=/cam/camera_info",
        f"instruction:={INSTRUCTION}",
        "use_rviz:=true",
        name="ros2_launch",
    )
    launch.wait_for_output(r"Active: serving", 120)
    yield installed, launch


def test_launch_reaches_an_active_node_with_its_arguments(launched) -> None:
    ros2, launch = launched
    assert "rviz2 is not installed here: starting lisa_node without RViz" in launch.output
    assert "[ERROR]" not in launch.output, launch.output
    # Under launch's pseudo-terminal (lines end in \r\n there) the load reports progress as log
    # lines, not bars redrawn with a bare \r.
    assert not re.search(r"\r(?!\n)", launch.output), launch.output
    assert not re.search(r"^\[lisa_node-1\]\s*$", launch.output, re.MULTILINE), launch.output
    assert re.search(
        r"^\[lisa_node-1\] \[INFO\] .*\[robot1\.lisa\]: Loading weights: \d+/\d+",
        launch.output,
        re.MULTILINE,
    )
    assert NODE in ros2("node", "list").split()
    assert ros2("lifecycle", "get", NODE).startswith("active [3]")
    assert ros2("param", "get", NODE, "model").strip() == f"String value is: {CHECKPOINT}"
    assert ros2("param", "get", NODE, "precision").strip() == "String value is: fp32"
    assert ros2("param", "get", NODE, "device").strip() == "String value is: cpu"
    assert ros2("param", "get", NODE, "vision_tower").strip() == f"String value is: {CLIP}"
    # The topic arguments remapped the node's inputs; its outputs and action moved with the
    # namespace.
    assert "Subscription count: 1" in ros2("topic", "info", CAMERA)
    assert "Subscription count: 1" in ros2("topic", "info", INSTRUCTION)
    assert f"{NODE}/segment [lisa_ros_interfaces/action/Segment]" in ros2("action", "list", "-t")


def test_param_set_is_refused_with_the_reason_or_applied(launched) -> None:
    ros2, _ = launched
    refused = ros2("param", "set", NODE, "busy_policy", "lifo")
    assert (
        "Setting parameter failed" in refused
        and "not one of 'queue', 'reject', 'preempt'" in refused
    )
    assert ros2("param", "get", NODE, "busy_policy").strip() == "String value is: queue"
    assert "Set parameter successful" in ros2("param", "set", NODE, "max_rate_hz", "5.0")
    assert ros2("param", "get", NODE, "max_rate_hz").strip() == "Double value is: 5.0"


def test_a_standing_instruction_from_topic_pub_is_answered_on_the_output_topics(
    launched, graph, module_processes
) -> None:
    ros2, launch = launched
    # The tiny model's random weights babble: keep its answers short so frames follow quickly.
    assert "Set parameter successful" in ros2("param", "set", NODE, "max_new_tokens", "8")
    assert "Set parameter successful" in ros2("param", "set", NODE, "max_rate_hz", "5.0")
    camera = graph.node.create_publisher(Image, CAMERA, SENSOR)
    graph.wait_for_subscribers(camera)
    frame = bgr8_msg(fixture_rgb(), frame_id="cam_optical")
    streaming = threading.Event()

    def stream() -> None:
        while not streaming.wait(0.1):
            camera.publish(frame)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        published = ros2(
            "topic",
            "pub",
            "--once",
            "-w",
            "1",
            # The publisher sees the node's reader before the reader has matched it; on a loaded
            # machine the default 0.1 s ended it before the reliable retransmission came.
            "--keep-alive",
            "2",
            INSTRUCTION,
            "std_msgs/msg/String",
            "{data: 'the cup'}",
        )
        assert "publishing #1" in published
        launch.wait_for_output(r"Standing instruction: 'the cup'", 10)
        text = ros2("topic", "echo", "--once", f"{NODE}/text", timeout=60)
        assert text.startswith("data:"), text
        segmentation = ros2(
            "topic", "echo", "--once", "--no-arr", f"{NODE}/segmentation", timeout=60
        )
        assert "frame_id: cam_optical" in segmentation and "instruction: the cup" in segmentation
        hz = ros2.start(
            module_processes, "topic", "hz", f"{NODE}/segmentation", name="ros2_topic_hz"
        )
        match = hz.wait_for_output(r"average rate: ([0-9.]+)", 30)
        assert 0.1 < float(match.group(1)) <= 5.5, hz.output  # max_rate_hz caps it
        hz.send_signal(signal.SIGINT)
        hz.wait(timeout=10)
        ros2(
            "topic", "pub", "--once", "-w", "1", "--keep-alive", "2",
            INSTRUCTION, "std_msgs/msg/String", "{data: ''}",
        )  # fmt: skip
        launch.wait_for_output(r"Standing instruction cleared", 10)
    finally:
        streaming.set()
        streamer.join()
        graph.node.destroy_publisher(camera)


def test_lifecycle_set_cycles_the_node_and_it_serves_again(launched) -> None:
    ros2, launch = launched
    for transition, state in (
        ("deactivate", "inactive [2]"),
        ("cleanup", "unconfigured [1]"),
        ("configure", "inactive [2]"),
        ("activate", "active [3]"),
    ):
        assert "Transitioning successful" in ros2(
            "lifecycle", "set", NODE, transition, timeout=120
        ), transition
        assert ros2("lifecycle", "get", NODE).startswith(state), transition
    assert "Transitioning successful" not in ros2("lifecycle", "set", NODE, "activate", check=False)
    launch.wait_for_output(r"Cleaned up: model unloaded", 5)


def test_ctrl_c_on_the_launch_ends_every_process_within_seconds(launched) -> None:
    ros2, launch = launched
    node_pid = int(
        re.search(r"\[lisa_node-1\]: process started with pid \[(\d+)\]", launch.output).group(1)
    )
    started = time.monotonic()
    launch.send_signal(signal.SIGINT)
    launch.wait(timeout=15)
    elapsed = time.monotonic() - started
    assert not _alive(node_pid), f"lisa_node (pid {node_pid}) outlived the launch\n{launch.output}"
    assert elapsed < 10.0, launch.output
    assert NODE not in ros2("node", "list", "--no-daemon").split()


def test_launch_arguments_set_a_standing_instruction_the_answer_length_and_recording(
    ros2: Ros2, ros_processes: RosProcesses, graph, tmp_path: Path
) -> None:
    """The loop of docs/node.md starts with a standing instruction given at launch: it is segmented
    from the first frame, recorded, and a colon or a yes in it stays text (no YAML reading)."""
    instruction = "the cup: red, or yes?"
    record_dir = tmp_path / "recorded"
    launch = ros2.start(
        ros_processes,
        "launch",
        "lisa_ros",
        "lisa.launch.py",
        *ON_CPU,
        "namespace:=texted",
        "image:=/texted/image_raw",
        f"instruction_text:={instruction}",
        "max_new_tokens:=8",
        f"record_dir:={record_dir}",
        name="ros2_launch_texted",
    )
    launch.wait_for_output(r"Active: serving ~/segment goals and segmenting '.*' continuously", 120)
    assert f"segmenting '{instruction}' continuously" in launch.output, launch.output
    assert ros2("param", "get", "/texted/lisa", "max_new_tokens").strip() == "Integer value is: 8"
    camera = graph.node.create_publisher(Image, "/texted/image_raw", SENSOR)
    graph.wait_for_subscribers(camera)
    try:
        deadline = time.monotonic() + 90
        while not list(record_dir.glob("*.json")) and time.monotonic() < deadline:
            camera.publish(bgr8_msg(fixture_rgb(), frame_id="cam_optical"))
            time.sleep(0.2)
    finally:
        graph.node.destroy_publisher(camera)
    (recorded, *_) = sorted(record_dir.glob("*.json")) or [None]
    assert recorded is not None, launch.output
    assert json.loads(recorded.read_text())["instruction"] == instruction
    launch.send_signal(signal.SIGINT)
    assert launch.wait(timeout=30) == 0, launch.output
    assert "[ERROR]" not in launch.output and "Traceback" not in launch.output, launch.output


def test_a_bad_integer_launch_argument_is_one_clear_line(ros2: Ros2) -> None:
    output = ros2(
        "launch", "lisa_ros", "lisa.launch.py", "max_new_tokens:=many", f"model:={CHECKPOINT}",
        check=False, timeout=60,
    )  # fmt: skip
    assert "max_new_tokens:='many' is not a whole number" in output, output
    assert "lisa_node" not in output or "process started" not in output, output


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent) is gone for every purpose but `kill -0`.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


# --- ros2 action send_goal, and a slowed load, against the scripted node --------------------------


@pytest.fixture(scope="module")
def scripted(module_processes: RosProcesses, graph) -> Iterator[RosProcess]:
    process = start_lisa(
        module_processes,
        # The frames below are published once, and these goals run on them minutes later.
        "max_frame_age_s:=0.0",
        name="acting_lisa",
        replies={"describe": GROWING_REPLY, "long": LONG_REPLY},
        # "long": 400 tokens at 0.15 s, a minute: room for Ctrl-C on a loaded machine
        slow={"describe": 0.05, "long": 0.15},
        remap=["image:=/acting/image_raw"],
    )
    wait_active(process)
    camera = graph.node.create_publisher(Image, "/acting/image_raw", SENSOR)
    graph.wait_for_subscribers(camera)
    small = np.ascontiguousarray(fixture_rgb()[::8, ::8])  # small masks: a short printed result
    for _ in range(3):
        camera.publish(bgr8_msg(small, when=777.0))
        time.sleep(0.1)
    yield process
    graph.node.destroy_publisher(camera)


def feedback_texts(output: str) -> list[str]:
    # send_goal prints "Feedback:\n    stage: ...\ntext: ...\ntokens_generated: N" (only the first
    # field indented), and the result's fields after "Result:\n    ".
    return re.findall(r"^Feedback:\n    stage: .*\ntext: (.*)$", output, re.MULTILINE)


def test_send_goal_shows_the_answer_growing_in_feedback_and_the_result(
    scripted, ros2: Ros2
) -> None:
    output = ros2(
        "action",
        "send_goal",
        "--feedback",
        "/acting_lisa/segment",
        "lisa_ros_interfaces/action/Segment",
        "{instruction: 'describe the cup'}",
    )
    assert "Goal finished with status: SUCCEEDED" in output, output
    texts = [text.strip("'\"") for text in feedback_texts(output) if text.strip("'\"")]
    assert len(set(texts)) >= 3, output  # it grew, step by step
    assert all(
        later.startswith(earlier.rstrip(" .")) for earlier, later in itertools.pairwise(texts)
    ), texts
    result = output[output.index("Result:") :]
    assert "error_code: 0" in result and "\ntext: Sure, [SEG] and and" in result
    assert "sec: 777" in result  # the latest camera frame's header
    assert texts[-1] == re.search(r"^text: (.*)$", result, re.MULTILINE).group(1).strip("'\"")


def test_ctrl_c_on_send_goal_cancels_the_goal_on_the_node(
    scripted, ros2: Ros2, ros_processes
) -> None:
    client = ros2.start(
        ros_processes,
        "action",
        "send_goal",
        "--feedback",
        "/acting_lisa/segment",
        "lisa_ros_interfaces/action/Segment",
        "{instruction: 'a long answer please'}",
        name="send_goal",
    )
    # Half a second into the answer, as a person would press it (send_goal installs its Ctrl-C
    # handler once the goal is accepted).
    # send_goal installs its Ctrl-C handler just before it prints this line; a press before it
    # ends the process instead of cancelling the goal.
    client.wait_for_output(r"Goal accepted with ID", 30)
    client.wait_for_output(r"tokens_generated: 1\d", 30)
    # send_goal's handler ignores Ctrl-C until the goal's status (a topic of its own, apart from
    # the feedback) has reached the client as ACCEPTED or EXECUTING. rclpy's client drops a status
    # that arrives before the goal response, so the node publishes it again every second while the
    # goal runs (segment_action.STATUS_REPUBLISH_PERIOD; before that, a CI run saw none in 45 s).
    # Press again, as a person would, until it reacts: every 3 s for up to 45 s of the answer.
    for _ in range(15):
        client.send_signal(signal.SIGINT)
        try:
            client.wait_for_output(r"Canceling goal\.\.\.", 3)
            break
        except pytest.fail.Exception:
            continue
    client.wait_for_output(r"Goal canceled\.", 10)
    client.wait_for_output(r"Goal finished with status: CANCELED", 10)
    assert "error_code: 5" in client.output
    # The node is free again at once (400 slowed tokens would keep it busy for a minute).
    started = time.monotonic()
    output = ros2(
        "action",
        "send_goal",
        "/acting_lisa/segment",
        "lisa_ros_interfaces/action/Segment",
        "{instruction: 'describe the plate'}",
    )
    assert "Goal finished with status: SUCCEEDED" in output
    assert time.monotonic() - started < 15.0


def test_lifecycle_get_and_param_get_answer_while_the_model_loads(
    module_processes, ros2: Ros2, graph
) -> None:
    node = start_lisa(module_processes, name="loading_lisa", load_delay=15.0)  # autostart: true
    node.wait_for_output(r"Loading LISA", 30)
    # The ros2 daemon may have been started before the node appeared: let it see the node first.
    graph.wait_until(
        lambda: "/loading_lisa" in ros2("lifecycle", "nodes").split(),
        10,
        "the daemon to see the node's services",
    )
    started = time.monotonic()
    assert ros2("lifecycle", "get", "/loading_lisa").startswith("configuring [10]")
    assert (
        ros2("param", "get", "/loading_lisa", "model").strip() == f"String value is: {CHECKPOINT}"
    )
    # Blocked services would have answered after the 15 s load, and "active" (autostart activates
    # right after configure). Each CLI call costs 1-3 s of its own on 2 busy cores.
    assert time.monotonic() - started < 12.0, "the services waited for the load"
    assert "Active: serving" not in node.output  # all of that happened during the load
    # Ctrl-C during the load ends the node now, not when the load is done.
    interrupted = time.monotonic()
    node.send_signal(signal.SIGINT)
    assert node.wait(timeout=10) == 0, node.output
    assert time.monotonic() - interrupted < 5.0, node.output
    assert "SIGINT: shutting down, interrupting the model load (configuring)" in node.output
    assert "Still configuring: exiting without waiting for it to end" in node.output
