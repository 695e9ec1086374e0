"""Benchmark following in the running node: the rates it achieves under a 30 Hz camera.

Starts lisa_node (the real node, on the tiny fixture checkpoint, its answers scripted to
"Sure, [SEG] and [SEG] ." as in the graph tests, each decoding step slowed by ``--step-delay`` to
stand for a real LLM) with a standing instruction, publishes a 30 Hz camera from this process
and reads ~/segmentation for ``--seconds``. Prints, for following on (with ``--reasoning-share``
and with reasoning_share 1, reasoning first as before the share existed) and off in the same run:
how many frames were reasoned and followed per second, the rates /diagnostics reported at the end
(``reasoned_hz``, ``followed_hz`` over its 10 s window) and whether it said following starved, and
how old each frame was when its answer arrived (publish to receipt, medians and p90), over the same
localhost-only graph set-up as the graph tests (shared-memory Fast DDS, a private domain).

    python -m benchmarks.follow --seconds 20
    # slow reasoning (steps longer than 1/max_rate_hz), where following used to starve:
    python -m benchmarks.follow --seconds 30 --max-rate 1 --step-delay 0.2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.common import CONFIG, PACKAGE, TINY_CHECKPOINT, TINY_IMAGE, use_local_graph

NAMESPACE = "/benchmark_follow"


def start_node(
    args: argparse.Namespace, follow_rate_hz: float, reasoning_share: float
) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "testbed.scripted_lisa_node",  # lisa_node answering as in the graph tests
        "--slow",
        f"thing={args.step_delay}",
        "--ros-args",
        "--params-file",
        str(CONFIG),
        "-r",
        f"__ns:={NAMESPACE}",
        "-r",
        f"image:={NAMESPACE}/camera",
    ]
    for parameter in (
        f"model:={TINY_CHECKPOINT}",
        "precision:=fp32",
        "device:=cpu",
        f"max_rate_hz:={args.max_rate}",
        f"follow_rate_hz:={follow_rate_hz}",
        f"reasoning_share:={reasoning_share}",
    ):
        command += ["-p", parameter]
    # From the package folder, where python -m finds testbed (and lisa_ros is this checkout's).
    return subprocess.Popen(
        command, cwd=PACKAGE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_active(process: subprocess.Popen, timeout: float = 120.0) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        if "Active: serving" in line:
            # Keep reading its output, or the node blocks on a full pipe.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return
        if time.monotonic() > deadline:
            break
    sys.exit("lisa_node did not become active")


def run_once(
    args: argparse.Namespace, follow_rate_hz: float, reasoning_share: float
) -> dict[str, Any]:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from lisa_ros_interfaces.msg import Segmentation
    from PIL import Image as PILImage
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header, String

    from lisa_ros.conversion.images import fill_image_msg

    width, height = args.size
    rgb = np.asarray(PILImage.open(TINY_IMAGE).convert("RGB").resize((width, height)))
    process = start_node(args, follow_rate_hz, reasoning_share)
    node = rclpy.create_node("benchmark_follow_camera")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    published: dict[tuple[int, int], float] = {}
    received: list[tuple[float, Segmentation]] = []
    diagnostics: list[tuple[float, str, dict[str, str]]] = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == f"{NAMESPACE}/lisa":
                values = {kv.key: kv.value for kv in status.values}
                diagnostics.append((time.monotonic(), status.message, values))

    try:
        wait_active(process)
        camera = node.create_publisher(
            Image,
            f"{NAMESPACE}/camera",
            QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT),
        )
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        instruction = node.create_publisher(String, f"{NAMESPACE}/instruction", reliable)
        node.create_subscription(
            Segmentation,
            f"{NAMESPACE}/lisa/segmentation",
            lambda msg: received.append((time.monotonic(), msg)),
            reliable,
        )
        node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable)

        def publish_frame() -> None:
            header = Header(stamp=node.get_clock().now().to_msg(), frame_id="camera")
            published[(header.stamp.sec, header.stamp.nanosec)] = time.monotonic()
            camera.publish(fill_image_msg(Image(), rgb[..., ::-1].copy(), "bgr8", header=header))

        node.create_timer(1 / 30, publish_frame)
        deadline = time.monotonic() + 30
        while instruction.get_subscription_count() == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        instruction.publish(String(data="Where is the thing?"))
        while not received and time.monotonic() < deadline + 60:
            executor.spin_once(timeout_sec=0.05)
        start = time.monotonic()
        end = start + args.seconds
        print(
            f"[benchmark] following at {follow_rate_hz} Hz, reasoning_share {reasoning_share} ...",
            file=sys.stderr,
            flush=True,
        )
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        while not any(when > end for when, _, _ in diagnostics) and time.monotonic() < end + 3:
            executor.spin_once(timeout_sec=0.05)
    finally:
        node.destroy_node()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    window = [(when, msg) for when, msg in received if start <= when <= end]

    def ages(followed: bool) -> list[float]:
        return [
            when - published[(msg.header.stamp.sec, msg.header.stamp.nanosec)]
            for when, msg in window
            if msg.followed == followed
        ]

    last = next(((m, v) for when, m, v in reversed(diagnostics) if "reasoned_hz" in v), None)
    return {
        "reasoned": ages(False),
        "followed": ages(True),
        "seconds": args.seconds,
        "diagnostics": last,
    }


def table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    header = ["", *(name for name, _ in rows)]
    lines = [header, ["---"] * len(header)]

    def cells(label: str, value: Any) -> list[str]:
        return [label, *(value(results) for _, results in rows)]

    def rate(kind: str) -> Any:
        return lambda results: f"{len(results[kind]) / results['seconds']:.2f}"

    def age(kind: str) -> Any:
        def text(results: dict[str, Any]) -> str:
            values = np.array(results[kind]) * 1e3
            if not len(values):
                return "-"
            return f"{np.median(values):.0f} ({np.quantile(values, 0.9):.0f})"

        return text

    lines.append(cells("reasoned answers per second", rate("reasoned")))
    lines.append(cells("followed frames per second", rate("followed")))

    def reported(key: str) -> Any:
        return lambda results: results["diagnostics"][1][key] if results["diagnostics"] else "-"

    def starved(results: dict[str, Any]) -> str:
        return "-" if not results["diagnostics"] else str("starved" in results["diagnostics"][0])

    lines.append(cells("/diagnostics reasoned_hz (last 10 s)", reported("reasoned_hz")))
    lines.append(cells("/diagnostics followed_hz (last 10 s)", reported("followed_hz")))
    lines.append(cells("/diagnostics: following starved", starved))
    lines.append(cells("frame age at answer, reasoned (ms, median (p90))", age("reasoned")))
    lines.append(cells("frame age at answer, followed (ms, median (p90))", age("followed")))
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per setting")
    parser.add_argument("--max-rate", type=float, default=0.5, help="max_rate_hz (reasoning)")
    parser.add_argument("--follow-rate", type=float, default=10.0, help="follow_rate_hz")
    parser.add_argument(
        "--reasoning-share", type=float, default=0.5, help="reasoning_share of the first setting"
    )
    parser.add_argument(
        "--step-delay", type=float, default=0.1, help="seconds added to each decoding step"
    )
    parser.add_argument(
        "--size", type=int, nargs=2, default=(640, 480), metavar=("W", "H"), help="camera size"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    use_local_graph()
    import rclpy

    rclpy.init()
    try:
        share = args.reasoning_share
        rows = [
            (
                f"follow_rate_hz {args.follow_rate:g}, reasoning_share {share:g}",
                run_once(args, args.follow_rate, share),
            ),
            (
                f"follow_rate_hz {args.follow_rate:g}, reasoning_share 1 (reasoning first)",
                run_once(args, args.follow_rate, 1.0),
            ),
            ("follow_rate_hz 0 (off)", run_once(args, 0.0, 1.0)),
        ]
    finally:
        rclpy.try_shutdown()
    width, height = args.size
    print(
        f"lisa_node under a 30 Hz {width}x{height} camera, tiny model on the CPU, max_rate_hz "
        f"{args.max_rate:g}, decoding steps slowed by {args.step_delay:g} s; {args.seconds:g} s "
        "per setting\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
