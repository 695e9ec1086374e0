"""lisa_node's CPU share beside a bare rclpy subscriber to the same camera stream (the CPU mode
of :mod:`benchmarks.node`: ``python -m benchmarks.node --cpu``).

Three processes besides this one, all on one localhost-only DDS graph:

- ``lisa_node``, started as ``ros2 run`` would (its entry point, ``config/lisa.yaml``, the model
  given, ``image_transport`` raw or compressed), with ``OMP_NUM_THREADS=1`` so that the model's
  work stays on the node's inference thread, which is named "lisa-inference" for the OS: its CPU
  is told apart from the rest of the node's (taking frames off the wire, the executor, DDS);
- a bare subscriber: ``rclpy.spin`` of a node with one subscription to the same topic, with the
  node's camera QoS and a callback that does nothing (the cost of a subscription);
- this process is the camera: it publishes the demo scene at each size and rate (rgb8, or JPEG
  as image_transport's compressed plugin sends it), restamped for every frame, and reads the
  node's outputs (text, masks, overlay, segmentation: as RViz would) to count its answers.

Both subscribers take the same frames at the same moments, so the machine's noise falls on both;
each figure is the median of several windows, in % of one core (user + system time from /proc).
Idle: no instruction, no goal. Continuous: the demo's question as the standing instruction, with
the demo's adapter so that the tiny model answers with a mask and the following between
reasoning steps runs too (config/lisa.yaml: reasoning at 1 Hz, following at up to 10 Hz).
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import CONFIG, DEMO, ratio

NAMESPACE = "/benchmark_cpu"
CAMERA_TOPIC = f"{NAMESPACE}/camera/image"
INFERENCE_THREAD = "lisa-inference"
OUTPUTS = ("text", "masks", "overlay", "segmentation")
JPEG_QUALITY = 95  # image_transport's compressed plugin's default
STARTUP_TIMEOUT_S = 300.0

BARE_SUBSCRIBER = textwrap.dedent(
    """
    import sys, rclpy
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    topic, kind = sys.argv[1], {"raw": Image, "compressed": CompressedImage}[sys.argv[2]]
    rclpy.init()
    node = rclpy.create_node("bare_subscriber")
    qos = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST,
                     depth=1, durability=DurabilityPolicy.VOLATILE)  # lisa_node's CAMERA_QOS
    node.create_subscription(kind, topic, lambda msg: None, qos)
    print("subscribed", flush=True)
    try:
        rclpy.spin(node)
    except BaseException:
        pass
    """
)


@dataclass(frozen=True)
class Stream:
    transport: str  # raw | compressed
    width: int
    height: int
    rate_hz: float

    def __str__(self) -> str:
        return f"{self.width}x{self.height} {self.transport} {self.rate_hz:g} Hz"


@dataclass(frozen=True)
class Shares:
    """Medians over the windows, % of one core."""

    node: float
    node_model_thread: float
    bare: float
    answers_hz: float

    @property
    def node_without_model(self) -> float:
        return self.node - self.node_model_thread


# --- /proc -------------------------------------------------------------------------------------


def _stat_seconds(stat: str) -> float:
    """utime + stime of a /proc stat line, in seconds (the fields after the command's ')')."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    return _stat_seconds(Path(f"/proc/{pid}/stat").read_text())


def thread_cpu_seconds(pid: int, name: str) -> float:
    """CPU seconds of the threads of ``pid`` named ``name`` for the OS (see thread_names)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")] == name:
            total += _stat_seconds(stat)
    return total


# --- processes ---------------------------------------------------------------------------------


class Process:
    """A child process whose output is kept (and drained, so that it never blocks on a pipe)."""

    def __init__(self, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.command = list(command)
        self.popen = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,  # Ctrl-C on the benchmark reaches us, not the children
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in self.lines):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.lines[-20:])
                sys.exit(f"{self.command[:4]}... did not print {pattern!r}:\n{tail}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)  # lisa_node shuts down cleanly
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_node(args: Any, transport: str) -> Process:
    parameters = {
        "model": args.model,
        "precision": args.precision,
        "device": args.device,
        "image_transport": transport,
    }
    for name in ("adapter", "vision_tower"):
        if getattr(args, name):
            parameters[name] = getattr(args, name)
    command = [sys.executable, "-m", "lisa_ros.node.entry_point", "--ros-args"]
    command += ["-r", "__node:=lisa", "-r", f"__ns:={NAMESPACE}", "-r", f"image:={CAMERA_TOPIC}"]
    command += ["--params-file", str(CONFIG)]
    for name, value in parameters.items():
        command += ["-p", f"{name}:={value}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    node = Process(command, env)
    node.wait_for(r"Active: serving", STARTUP_TIMEOUT_S)
    return node


def camera_topic(transport: str) -> str:
    """The camera's topic for ``transport``, as image_transport names its subtopics."""
    return CAMERA_TOPIC + ("/compressed" if transport == "compressed" else "")


def start_bare_subscriber(transport: str) -> Process:
    bare = Process([sys.executable, "-c", BARE_SUBSCRIBER, camera_topic(transport), transport])
    bare.wait_for(r"^subscribed$", 60)
    return bare


# --- the camera (this process) -----------------------------------------------------------------


def scene_frames(width: int, height: int, count: int = 4) -> list[np.ndarray]:
    """The demo scene at ``width`` x ``height`` (RGB), ``count`` frames told apart by a pixel."""
    import cv2

    bgr = cv2.imread(str(DEMO / "scene" / "color.png"), cv2.IMREAD_COLOR)
    rgb = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR)[..., ::-1]
    frames = []
    for number in range(count):
        frame = rgb.copy()
        frame[0, 0, 0] = number
        frames.append(frame)
    return frames


def camera_messages(transport: str, width: int, height: int) -> list[Any]:
    import cv2
    from sensor_msgs.msg import CompressedImage, Image

    from lisa_ros.conversion.images import fill_image_msg

    messages = []
    for rgb in scene_frames(width, height):
        if transport == "raw":
            messages.append(fill_image_msg(Image(), rgb, "rgb8"))
        else:
            ok, jpeg = cv2.imencode(
                ".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )
            assert ok
            # What image_transport's compressed plugin sends for an rgb8 camera.
            messages.append(
                CompressedImage(format="rgb8; jpeg compressed bgr8", data=jpeg.tobytes())
            )
    for message in messages:
        message.header.frame_id = "camera_color_optical_frame"
    return messages


class Camera:
    """Publishes frames at a steady rate on a thread of its own, restamping each."""

    def __init__(self, node: Any, transport: str) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image

        kind = CompressedImage if transport == "compressed" else Image
        self._node = node
        self._transport = transport
        self._publisher = node.create_publisher(
            kind, camera_topic(transport), qos_profile_sensor_data
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def playing(self, stream: Stream) -> Iterator[None]:
        messages = camera_messages(self._transport, stream.width, stream.height)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._play, args=(messages, stream.rate_hz), daemon=True
        )
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join()

    def _play(self, messages: list[Any], rate_hz: float) -> None:
        period = 1.0 / rate_hz
        due = time.monotonic()
        count = 0
        while not self._stop.is_set():
            message = messages[count % len(messages)]
            message.header.stamp = self._node.get_clock().now().to_msg()
            self._publisher.publish(message)
            count += 1
            due += period
            self._stop.wait(max(0.0, due - time.monotonic()))

    def destroy(self) -> None:
        self._node.destroy_publisher(self._publisher)


class Outputs:
    """Subscribes to the node's outputs, as RViz would, and counts the answers (~/segmentation)."""

    def __init__(self, node: Any) -> None:
        from lisa_ros_interfaces.msg import Segmentation
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        kinds = {"text": String, "masks": Image, "overlay": Image, "segmentation": Segmentation}
        self.answers = 0
        self._lock = threading.Lock()
        for topic, kind in kinds.items():
            callback = self._count if topic == "segmentation" else (lambda msg: None)
            node.create_subscription(kind, f"{NAMESPACE}/lisa/{topic}", callback, qos)

    def _count(self, msg: Any) -> None:
        with self._lock:
            self.answers += 1


# --- measurement -------------------------------------------------------------------------------


def measure(node: Process, bare: Process, outputs: Outputs, seconds: float, windows: int) -> Shares:
    rows = []
    for _ in range(windows):
        start = time.monotonic()
        before = (
            process_cpu_seconds(node.pid),
            thread_cpu_seconds(node.pid, INFERENCE_THREAD),
            process_cpu_seconds(bare.pid),
            outputs.answers,
        )
        time.sleep(seconds)
        after = (
            process_cpu_seconds(node.pid),
            thread_cpu_seconds(node.pid, INFERENCE_THREAD),
            process_cpu_seconds(bare.pid),
            outputs.answers,
        )
        elapsed = time.monotonic() - start
        rows.append([(b - a) / elapsed for a, b in zip(before, after, strict=True)])
    medians = [statistics.median(column) for column in zip(*rows, strict=True)]
    return Shares(
        node=100 * medians[0],
        node_model_thread=100 * medians[1],
        bare=100 * medians[2],
        answers_hz=medians[3],
    )


def demo_instruction() -> str:
    """The question the demo adapter was trained on."""
    return json.loads((DEMO / "scene" / "scene.json").read_text())["instruction"]


def run(args: Any, streams: Sequence[Stream]) -> list[tuple[Stream, Shares, Shares | None]]:
    """Idle (and, with ``args.continuous``, continuous) shares for every stream, one lisa_node and
    one bare subscriber per transport."""
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    rclpy.init()
    node = rclpy.create_node("camera", namespace=NAMESPACE)
    executor = rclpy.executors.SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    outputs = Outputs(node)
    instruction_qos = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
    )
    instructions = node.create_publisher(String, f"{NAMESPACE}/instruction", instruction_qos)
    results = []
    try:
        for transport in dict.fromkeys(stream.transport for stream in streams):
            print(f"[benchmark] starting lisa_node ({transport}) ...", file=sys.stderr, flush=True)
            lisa, bare = start_node(args, transport), start_bare_subscriber(transport)
            camera = Camera(node, transport)
            try:
                for stream in (s for s in streams if s.transport == transport):
                    print(f"[benchmark] {stream} ...", file=sys.stderr, flush=True)
                    with camera.playing(stream):
                        time.sleep(args.warmup)
                        idle = measure(lisa, bare, outputs, args.seconds, args.windows)
                        continuous = None
                        if args.continuous:
                            instructions.publish(String(data=demo_instruction()))
                            time.sleep(args.warmup + 1.0)  # the first answer, then following
                            continuous = measure(lisa, bare, outputs, args.seconds, args.windows)
                            instructions.publish(String(data=""))
                            time.sleep(args.warmup)  # the step under way ends
                    results.append((stream, idle, continuous))
            finally:
                camera.destroy()
                lisa.stop()
                bare.stop()
    finally:
        executor.shutdown()
        spinner.join()
        node.destroy_node()
        rclpy.try_shutdown()
    return results


def table(results: Sequence[tuple[Stream, Shares, Shares | None]]) -> str:
    header = [
        "stream",
        "idle lisa_node",
        "bare subscriber",
        "idle / bare",
        "continuous lisa_node",
        "of which model thread",
        "rest",
        "rest / bare",
        "answers/s",
    ]
    lines = [header, ["---"] + ["--:"] * (len(header) - 1)]
    for stream, idle, continuous in results:
        cells = [
            str(stream),
            f"{idle.node:.1f} %",
            f"{idle.bare:.1f} %",
            ratio(idle.node, idle.bare, digits=2),
        ]
        if continuous is None:
            cells += ["-"] * 5
        else:
            cells += [
                f"{continuous.node:.1f} %",
                f"{continuous.node_model_thread:.1f} %",
                f"{continuous.node_without_model:.1f} %",
                ratio(continuous.node_without_model, continuous.bare, digits=2),
                f"{continuous.answers_hz:.1f}",
            ]
        lines.append(cells)
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
