"""Benchmark lisa_node's own cost per camera frame, beside the model's, at 640x480 and 1280x720.

A frame costs the node, outside the model: taking the sensor_msgs/Image off the wire (rclpy
deserialisation), converting it to RGB, drawing the overlay, building the result messages
(Segmentation with one mono8 image per mask, the label image, the overlay, the text) and
publishing them. Each stage is timed with the node's own code (lisa_ros.node.jobs/outputs) on
real messages; publishing goes through rclpy to a subscriber in another process, over the same
localhost-only shared-memory Fast DDS set-up the graph tests use. The stages run as in the node:
on a thread of their own, with lisa_node's allocator settings. The model's time on the same
frames (the tiny fixture checkpoint by default, two [SEG] scripted) is printed beside it, in the
same run, with the node/model ratio. The node builds messages only for topics with subscribers,
so a second total gives a frame's cost when ~/segmentation is the only output anyone reads. The
node total is given in wall-clock time and in the CPU time the process spent on it: OpenCV runs
some steps on several threads, which shortens the first and lengthens the second.

The 3D rows (aligned 16UC1 depth, three object-like masks on a synthetic scene of boxes before a
wall, with 5 % of the depth missing) time what a frame with depth adds: decoding the depth,
locating the three masks (lisa_ros.geometry.locate: centroids and extents), ~/markers, and the
~/points cloud (which locates the masks again, gathering their points), each built by the node's
own code. They are not in the node totals above them: they are paid only when
someone reads 3D (~/segmentation, a goal, ~/markers, ~/points), and the cloud only when
~/points has a subscriber.

    python -m benchmarks.node
    python -m benchmarks.node --model xinlai/LISA-7B-v1 --precision bf16 --device cuda

``--cpu`` measures instead what the running node costs the machine: the real lisa_node's CPU
share, idle and in continuous mode, for camera streams of each size, rate and transport, beside a
bare rclpy subscriber to the same stream in the same run (see benchmarks.cpu_share):

    python -m benchmarks.node --cpu
    python -m benchmarks.node --cpu --rates 30 --sizes 1280x720 --no-continuous
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from benchmarks.common import DEMO_ADAPTER, TINY_CHECKPOINT, TINY_IMAGE, use_local_graph
from testbed.fixture_replies import (
    REPLY,
)  # "Sure, [SEG] and [SEG] ." in the tiny model's vocabulary

INSTRUCTION = "Where is the thing? Please output segmentation mask."
SIZES = ((640, 480), (1280, 720))
TOPICS = ("text", "masks", "overlay", "segmentation")
TAKE, CONVERT, MODEL = "take Image (deserialize)", "convert to RGB", "model (LisaModel.segment)"
SEGMENTATION_BUILD = "  of which: build ~/segmentation"
SEGMENTATION_PUBLISH = "  of which: publish ~/segmentation"
DEPTH_DECODE = "3D: decode 16UC1 depth"
LOCATE = "3D: locate 3 masks"
MARKERS = "3D: build ~/markers"
CLOUD = "3D: build ~/points (locate with points + cloud)"
THREE_D = (DEPTH_DECODE, LOCATE, MARKERS, CLOUD)

SUBSCRIBER = textwrap.dedent(
    """
    import sys, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from lisa_ros_interfaces.msg import Segmentation
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node("benchmark_subscriber")
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    kinds = {"text": String, "masks": Image, "overlay": Image, "segmentation": Segmentation}
    for topic, kind in kinds.items():
        node.create_subscription(kind, "/benchmark/lisa/" + topic, lambda msg: None, qos)
    print("subscribed", flush=True)
    try:
        rclpy.spin(node)
    except BaseException:
        pass
    """
)


class Samples(list):
    """Wall-clock seconds of each call, and in ``cpu`` the CPU seconds the process spent on it (all
    its threads: OpenCV's workers included). The CPU time is what the node takes from the robot,
    and it does not grow when other processes keep a core busy, as the wall-clock time does."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu: list[float] = []


def timed(function: Callable[[], object], repeats: int) -> Samples:
    """Seconds of each of ``repeats`` calls (after one unmeasured call)."""
    function()
    seconds = Samples()
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        function()
        seconds.append(time.perf_counter() - start)
        seconds.cpu.append(time.process_time() - start_cpu)
    return seconds


def on_a_thread(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` on a thread of its own, as the node works on frames: off the main
    thread (whose heap behaved differently: freed frames that a thread gave back to the system
    and faulted in again, the main thread kept)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args).result()


def camera_frames(rgb: np.ndarray, count: int) -> list[np.ndarray]:
    """``count`` different frames (a counter in the first pixels), as a camera would send."""
    frames = []
    for number in range(count):
        frame = rgb.copy()
        frame[0, :2, 0] = (number % 256, number // 256)
        frames.append(frame)
    return frames


def box_scene(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth (uint16 mm, 5 % missing), three object masks bleeding 4 px past their boxes, and K:
    boxes at 0.6, 0.9 and 1.2 m covering about 5 %, 9 % and 14 % of the image, a wall at 2 m."""
    rng = np.random.default_rng(0)
    depth = np.full((height, width), 2000, np.uint16)
    masks = np.zeros((3, height, width), bool)
    boxes = (
        (0.10, 0.15, 0.22, 0.22, 600),
        (0.45, 0.20, 0.25, 0.36, 900),
        (0.25, 0.55, 0.45, 0.30, 1200),
    )
    for k, (x, y, w, h, millimetres) in enumerate(boxes):
        x0, y0 = int(x * width), int(y * height)
        x1, y1 = x0 + int(w * width), y0 + int(h * height)
        depth[y0:y1, x0:x1] = millimetres
        masks[k, max(y0 - 4, 0) : y1 + 4, max(x0 - 4, 0) : x1 + 4] = True
    depth[rng.random(depth.shape) < 0.05] = 0
    f = 0.9 * width
    camera_matrix = np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]])
    return depth, masks, camera_matrix


def benchmark_3d(
    width: int, height: int, rgb: np.ndarray, header: Any, frames: int
) -> dict[str, Samples]:
    """What depth adds to a frame, stage by stage, with the node's own code."""
    from sensor_msgs.msg import CameraInfo, Image

    from lisa_ros.conversion.images import fill_image_msg
    from lisa_ros.model.result import SegmentationResult
    from lisa_ros.node.depth import DepthPartner, DepthSettings, locate_masks
    from lisa_ros.node.outputs import Answer

    depth, masks, camera_matrix = box_scene(width, height)
    depth_msg = fill_image_msg(Image(), depth, "16UC1", header=header)
    info = CameraInfo(header=header, k=[float(v) for v in camera_matrix.ravel()])
    result = SegmentationResult(
        text="Sure, [SEG] , [SEG] and [SEG] .",
        token_ids=[],
        mask_logits=np.where(masks, 1.0, -1.0).astype(np.float32),
        scores=np.ones(3, np.float32),
        phrases=["Sure,", ",", "and"],
        text_offsets=[6, 14, 24],
    )
    settings = DepthSettings()

    def frame_depth() -> DepthPartner:
        return DepthPartner(depth_msg, info, image_header=header, settings=settings)

    def answer() -> Answer:
        return Answer(header, info, INSTRUCTION, rgb, result, depth=frame_depth())

    decoded = frame_depth()
    loaded = decoded.load((height, width))
    with_targets = answer()
    assert all(target.ok for target in with_targets.targets), with_targets.targets

    def cloud() -> object:
        # A new answer on the decoded depth: the cloud locates the masks again, with points.
        return Answer(header, info, INSTRUCTION, rgb, result, depth=decoded).points_msg()

    return {
        DEPTH_DECODE: timed(lambda: frame_depth().load((height, width)), frames),
        LOCATE: timed(
            lambda: locate_masks(result.masks, loaded, settings, with_points=False), frames
        ),
        MARKERS: timed(with_targets.markers_msg, frames),
        CLOUD: timed(cloud, frames),
    }


def benchmark_size(
    width: int, height: int, args: argparse.Namespace, lisa: Any, publishers: dict[str, Any]
) -> dict[str, Samples]:
    from PIL import Image as PILImage
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header
    from transformers import LogitsProcessorList

    from lisa_ros.conversion.images import fill_image_msg
    from lisa_ros.model.generation import ScriptedReply
    from lisa_ros.node.frames import Frame
    from lisa_ros.node.inputs import ImageLimits
    from lisa_ros.node.outputs import Answer, ResultPublishers
    from lisa_ros.visualization import draw_overlay

    source = np.asarray(PILImage.open(TINY_IMAGE).convert("RGB").resize((width, height)))
    frames = camera_frames(source, max(args.frames, args.model_frames) + 1)
    messages = [
        fill_image_msg(Image(), f[..., ::-1].copy(), "bgr8", Header(frame_id="camera"))
        for f in frames
    ]
    wire = [serialize_message(m) for m in messages]
    limits = ImageLimits(16, 4096)
    iterator = iter(range(10**9))

    def next_index() -> int:
        return next(iterator) % len(messages)

    results: dict[str, Samples] = {}
    newest: list[Any] = [None]  # the node holds the newest frame until the next replaces it

    def take() -> None:
        newest[0] = deserialize_message(wire[next_index()], Image)

    results[TAKE] = timed(take, args.frames)
    results[CONVERT] = timed(lambda: Frame(messages[next_index()]).to_rgb(limits), args.frames)

    scripted = LogitsProcessorList([ScriptedReply(REPLY, lisa.layout.eos)])
    lisa.segment(frames[-1], INSTRUCTION, logits_processor=scripted, max_new_tokens=32)  # warm-up
    model_seconds = Samples()
    answer = None
    for frame in frames[1 : args.model_frames + 1]:
        start = time.perf_counter()
        answer = lisa.segment(frame, INSTRUCTION, logits_processor=scripted, max_new_tokens=32)
        model_seconds.append(time.perf_counter() - start)
    assert answer is not None and len(answer.mask_logits) == 2, answer

    header = messages[0].header
    outputs = ResultPublishers(publishers)

    def new_answer() -> Answer:
        return Answer(header, CameraInfo(), INSTRUCTION, frames[0], answer)

    def build() -> dict[str, object]:
        return outputs.messages(new_answer())

    results["build messages"] = timed(build, args.frames)
    results["  of which: draw overlay"] = timed(
        lambda: draw_overlay(frames[0], answer.masks, answer.text), args.frames
    )
    # What a frame costs when only ~/segmentation is subscribed (no overlay, no label image).
    results[SEGMENTATION_BUILD] = timed(lambda: new_answer().segmentation_msg(), args.frames)
    built = build()
    assert set(built) == set(TOPICS), f"the subscriber was not seen on {set(TOPICS) - set(built)}"

    def publish() -> None:
        for topic, message in built.items():
            publishers[topic].publish(message)

    results["publish (4 topics, 1 subscriber)"] = timed(publish, args.frames)
    results[SEGMENTATION_PUBLISH] = timed(
        lambda: publishers["segmentation"].publish(built["segmentation"]), args.frames
    )
    results.update(benchmark_3d(width, height, frames[0], header, args.frames))
    results[MODEL] = model_seconds
    return results


def table(rows: Sequence[tuple[str, dict[str, Samples]]]) -> str:
    stages = list(rows[0][1])
    node_stages = [s for s in stages if s not in (MODEL, *THREE_D) and not s.startswith(" ")]
    # A frame when ~/segmentation is the only output anyone subscribes to.
    segmentation_stages = [TAKE, CONVERT, SEGMENTATION_BUILD, SEGMENTATION_PUBLISH]
    header = ["stage (median ms; p90 in brackets)", *(name for name, _ in rows)]
    lines = [header, ["---"] * len(header)]
    for stage in stages:
        cells = [stage]
        for _, results in rows:
            values = np.array(results[stage]) * 1e3
            cells.append(f"{np.median(values):.2f} ({np.quantile(values, 0.9):.2f})")
        lines.append(cells)
    totals = ["node total (take + convert + build + publish)"]
    cpu_totals = ["node total, CPU time of the process"]
    segmentation_totals = ["node total with ~/segmentation alone subscribed"]
    ratios = ["node / model"]
    # Centroids and markers: what a frame with depth costs when nobody reads the cloud.
    targets = ["3D: decode + locate + markers (no ~/points subscriber)"]
    for _, results in rows:
        node = sum(statistics.median(results[s]) for s in node_stages)
        alone = sum(statistics.median(results[s]) for s in segmentation_stages)
        model = statistics.median(results[MODEL])
        totals.append(f"{node * 1e3:.2f}")
        cpu = sum(statistics.median(results[s].cpu) for s in node_stages)
        cpu_totals.append(f"{cpu * 1e3:.2f}")
        segmentation_totals.append(f"{alone * 1e3:.2f}")
        ratios.append(f"{node / model:.1%}")
        three_d = sum(statistics.median(results[s]) for s in (DEPTH_DECODE, LOCATE, MARKERS))
        targets.append(f"{three_d * 1e3:.2f}")
    lines += [totals, cpu_totals, segmentation_totals, ratios, targets]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--model", default=str(TINY_CHECKPOINT), help="LISA checkpoint folder or hub id"
    )
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--frames", type=int, default=50, help="frames per node stage (medians reported)"
    )
    parser.add_argument(
        "--model-frames", type=int, default=5, help="frames through the model per size"
    )
    cpu = parser.add_argument_group("CPU mode (--cpu): the running node's CPU share")
    cpu.add_argument("--cpu", action="store_true", help="measure the node's CPU share instead")
    cpu.add_argument(
        "--adapter",
        help="the node's adapter; default: the demo's with the tiny model (it then answers with "
        "masks), none with another model",
    )
    cpu.add_argument("--vision-tower", default="", help="the node's vision_tower parameter")
    cpu.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"], help="WIDTHxHEIGHT")
    cpu.add_argument("--rates", nargs="+", type=float, default=[5.0, 15.0, 30.0], help="Hz")
    cpu.add_argument(
        "--transports", nargs="+", choices=("raw", "compressed"), default=["raw", "compressed"]
    )
    cpu.add_argument("--seconds", type=float, default=4.0, help="length of one window")
    cpu.add_argument("--windows", type=int, default=3, help="windows per figure (medians)")
    cpu.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    cpu.add_argument(
        "--no-continuous", dest="continuous", action="store_false", help="idle figures only"
    )
    args = parser.parse_args(argv)
    if args.adapter is None:
        args.adapter = str(DEMO_ADAPTER) if args.model == str(TINY_CHECKPOINT) else ""
    return args


def cpu_streams(args: argparse.Namespace) -> list[Any]:
    from benchmarks.cpu_share import Stream

    sizes = [tuple(int(side) for side in size.lower().split("x")) for size in args.sizes]
    return [
        Stream(transport, width, height, rate)
        for transport in args.transports
        for width, height in sizes
        for rate in args.rates
    ]


def main_cpu(args: argparse.Namespace) -> None:
    from benchmarks import cpu_share

    results = cpu_share.run(args, cpu_streams(args))
    print(
        f"lisa_node CPU share (% of one core; medians of {args.windows} windows of "
        f"{args.seconds:g} s), model {args.model} ({args.precision}, {args.device}), "
        f"{os.cpu_count()} CPUs\n"
    )
    print(cpu_share.table(results))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    use_local_graph()
    if args.cpu:
        main_cpu(args)
        return
    from lisa_ros.model import host_memory

    # lisa_node's allocator settings, made as it makes them: before the imports that start
    # threads, and the heap keeping frames' pages once the model is loaded.
    host_memory.return_large_blocks_on_free()
    import cv2
    import rclpy
    from lisa_ros_interfaces.msg import Segmentation
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import String
    from visualization_msgs.msg import MarkerArray

    from lisa_ros.model import load_model
    from lisa_ros.node.lisa_node import RESULT_IMAGE_QOS, RESULT_QOS

    cv2.setNumThreads(1)  # as lisa_node.run
    lisa = load_model(args.model, precision=args.precision, device=args.device)
    host_memory.keep_free_for_reuse()
    subscriber = subprocess.Popen(
        [sys.executable, "-c", SUBSCRIBER],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    rclpy.init()
    node = rclpy.create_node("lisa", namespace="/benchmark")
    try:
        # The node's publishers, with its QoS.
        kinds = {
            "text": (String, RESULT_QOS),
            "masks": (Image, RESULT_IMAGE_QOS),
            "overlay": (Image, RESULT_IMAGE_QOS),
            "segmentation": (Segmentation, RESULT_QOS),
            # Nobody subscribes to the 3D topics here: the 2D rows stay what they were, and
            # show that an unread ~/markers or ~/points costs nothing. The 3D rows time them.
            "markers": (MarkerArray, RESULT_QOS),
            "points": (PointCloud2, RESULT_IMAGE_QOS),
        }
        publishers = {
            topic: node.create_publisher(kind, f"~/{topic}", qos)
            for topic, (kind, qos) in kinds.items()
        }
        assert (
            subscriber.stdout is not None and subscriber.stdout.readline().strip() == "subscribed"
        )
        deadline = time.monotonic() + 30
        while any(publishers[topic].get_subscription_count() == 0 for topic in TOPICS):
            if time.monotonic() > deadline:
                sys.exit("the subscriber process was not discovered within 30 s")
            time.sleep(0.05)
        rows = []
        for width, height in SIZES:
            print(f"[benchmark] {width}x{height} ...", file=sys.stderr, flush=True)
            results = on_a_thread(benchmark_size, width, height, args, lisa, publishers)
            rows.append((f"{width}x{height}", results))
        print(
            f"lisa_node per-frame cost, model {args.model} ({args.precision}, {lisa.device}); "
            f"{args.frames} frames per node stage, {args.model_frames} through the model\n"
        )
        print(table(rows))
    finally:
        subscriber.send_signal(signal.SIGINT)
        try:
            subscriber.wait(10)
        except subprocess.TimeoutExpired:
            subscriber.kill()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
