"""``lisa-ask``: send one instruction to a running lisa_node and show (and save) what it answers.

    lisa-ask "where can I throw away the food scraps?" --image kitchen.jpg --output out/
    lisa-ask "what is on the table?"                       # the node's latest camera frame
    lisa-ask "and which bin takes paper?" --session k1     # a follow-up turn of conversation k1

It is an rclpy client of the node's ``Segment`` action (``/lisa/segment`` unless ``--action``
says otherwise): it prints the node's feedback (stage and answer so far) on stderr, the answer on
stdout, then the outcome (``SUCCESS``, ``NOTHING_FOUND``, or the error code and message). With
``--output`` it writes ``overlay.png``, ``mask_<k>.png`` (0/255) and ``result.json``, the JSON
last, like ``lisa-segment``.

Ctrl-C (or SIGTERM) cancels the goal on the node before exiting; so does ``--timeout``. Expected
failures (unreadable image, no node, a rejected goal, an error from the node) end with one
``lisa-ask: error: ...`` line, never a traceback. Exit status: 0 masks found, 3 the answer
refers to nothing, 2 bad input, 1 any other failure, 130 interrupted.

Its length: one tool from its options to its files (the action client, feedback, the wait for the
node's frame, cancel on Ctrl-C, the report); what it shares with ``lisa-segment`` is in
:mod:`.files` and :mod:`.options`, and the rest serves this tool only.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from lisa_ros.cli.files import (
    CAMERA_FRAME,
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    OVERLAY_FILE,
    RESULT_FILE,
    CommandError,
    check_instruction,
    prepare_output,
    print_answer,
    read_image,
    result_record,
    target_record,
    write_result_files,
)
from lisa_ros.cli.options import positive_float
from lisa_ros.conversion.images import (
    ImageConversionError,
    fill_image_msg,
    image_msg_to_array,
    to_rgb8,
)
from lisa_ros.geometry import Target3D
from lisa_ros.model.result import MaskRecord
from lisa_ros.visualization import draw_overlay, mask_title

PROG = "lisa-ask"
DEFAULT_ACTION = "/lisa/segment"

EXIT_SUCCESS = 0
EXIT_NOTHING_FOUND = 3

CANCEL_WAIT_S = 5.0  # how long to wait for the node to confirm a cancel and send its last result
FEEDBACK_DRAIN_S = 0.05  # after the result: time to process feedback that arrived with it
# --image-topic: frames kept after the goal is accepted (the node's pick is among them)
FRAME_WINDOW_S = 2.0


# --- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Ask a running lisa_node to segment what an instruction refers to, through its "
        "Segment action. Progress goes to stderr, the answer to stdout.",
        epilog="Exit status: 0 masks found, 3 the answer refers to nothing (NOTHING_FOUND), "
        "2 bad input, "
        "1 other failures (no node, goal rejected, node error, timeout), "
        "130 interrupted (goal canceled). "
        "ROS arguments may follow --ros-args.",
    )
    parser.add_argument(
        "instruction", help='what to find, e.g. "where can I throw away the food scraps?"'
    )
    parser.add_argument(
        "--image", type=Path, help="image file to segment (default: the node's latest camera frame)"
    )
    parser.add_argument(
        "--session",
        default="",
        metavar="ID",
        help="conversation id: the same id again asks a follow-up about the same frame",
    )
    parser.add_argument(
        "--output",
        type=Path,
        metavar="DIR",
        help=f"folder for {OVERLAY_FILE}, mask_<k>.png and {RESULT_FILE} (created if missing)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=300.0,
        metavar="S",
        help="give up (and cancel the goal) after S seconds without a result "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--action",
        default=DEFAULT_ACTION,
        metavar="NAME",
        help="the node's Segment action (default: %(default)s)",
    )
    parser.add_argument(
        "--server-timeout",
        type=positive_float,
        default=10.0,
        metavar="S",
        help="how long to wait for the action server to appear (default: %(default)s)",
    )
    parser.add_argument(
        "--image-topic",
        metavar="TOPIC",
        help="without --image: the camera topic the node reads, so the overlay can be drawn "
        "on the frame the node used (matched by header)",
    )
    parser.add_argument(
        "--first-mask",
        action="store_true",
        help="stop at the first mask: cancel the rest of the answer once the node sends it in "
        "feedback, and report and save that mask as the result (exit status 0)",
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="no feedback or progress on stderr"
    )
    return parser


# --- progress --------------------------------------------------------------------------------


class FeedbackPrinter:
    """Shows the node's feedback: one updating line on a terminal, a line per change otherwise."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.interactive = stream.isatty()
        self._last: tuple[str, str] | None = None

    def show(self, stage: str, text: str) -> None:
        if not self.enabled or self._last == (stage, text):
            return
        self._last = (stage, text)
        prefix = f"[{stage}] "
        if self.interactive:  # the end of the answer so far, on one line
            room = max(10, _terminal_width() - 1 - len(prefix))
            shown = text if len(text) <= room else "..." + text[-(room - 3) :]
            self.stream.write("\r\033[K" + prefix + shown)
        else:
            self.stream.write((prefix + text).rstrip() + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line of its own (ends an updating line first)."""
        if self.enabled:
            self.end()
            self.stream.write(f"{PROG}: {text}\n")
            self.stream.flush()

    def end(self) -> None:
        if self.interactive and self._last is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._last = None


def _terminal_width() -> int:
    try:
        # 0 on a pty with no size set
        return os.get_terminal_size(sys.stderr.fileno()).columns or 80
    except OSError:
        return 80


# --- the ROS client --------------------------------------------------------------------------


class SourceFrames:
    """Recent frames of the camera topic, to find the one a result's header names.

    Frames are kept from start-up until ``FRAME_WINDOW_S`` after the goal is accepted: the node
    picks its latest frame when the goal arrives, and no later frame is needed.
    """

    def __init__(self, node: Any, topic: str, printer: FeedbackPrinter) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self._topic = topic
        self._printer = printer
        self._frames: deque = deque(maxlen=30)
        self._stop_at: float | None = None
        # Best effort matches both best-effort camera drivers and reliable publishers.
        node.create_subscription(Image, topic, self._on_frame, qos_profile_sensor_data)

    def _on_frame(self, msg: Any) -> None:
        if self._stop_at is None or time.monotonic() < self._stop_at:
            self._frames.append(msg)

    def wait_for_first(self, client: SegmentClient, timeout: float) -> None:
        """Wait for a frame: the node picks its latest frame on the goal's arrival, and the
        overlay can only use it if this subscription was already receiving."""
        if not client.spin_until(lambda: len(self._frames) > 0, timeout):
            raise CommandError(
                f"no image on {self._topic} within {timeout:g} s: check the topic name "
                "(or leave out --image-topic to save masks without the camera picture)"
            )

    def goal_accepted(self) -> None:
        self._stop_at = time.monotonic() + FRAME_WINDOW_S

    def find(self, header: Any) -> np.ndarray | None:
        """The RGB picture of the frame with ``header``'s stamp and frame_id, if one arrived and
        has a colour meaning (the masks are saved either way)."""
        for msg in reversed(self._frames):
            if msg.header.stamp == header.stamp and msg.header.frame_id == header.frame_id:
                try:
                    return to_rgb8(image_msg_to_array(msg), msg.encoding)
                except ImageConversionError as error:
                    self._printer.message(
                        f"the frame on {self._topic} cannot be drawn on ({error})"
                    )
                    return None
        return None


class SegmentClient:
    """An rclpy node with one Segment action client, spun from the calling thread."""

    def __init__(self, action_name: str, ros_args: list[str]) -> None:
        import rclpy
        from lisa_ros_interfaces.action import Segment
        from rclpy.action import ActionClient
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        self._rclpy = rclpy
        self.context = rclpy.Context()
        # rclpy's own SIGINT handler would shut the context down, and a canceled goal needs it:
        # Ctrl-C stays a KeyboardInterrupt, handled by cancel().
        rclpy.init(
            args=ros_args, context=self.context, signal_handler_options=SignalHandlerOptions.NO
        )
        self.node = rclpy.create_node(f"lisa_ask_{os.getpid()}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.action_name = action_name
        self.client = ActionClient(self.node, Segment, action_name)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)

    def spin_until(self, done: Any, timeout: float) -> bool:
        """Process callbacks until ``done()`` (a callable) is true or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # Short waits: a Ctrl-C is raised here, between two steps, within 0.1 s.
            with INTERRUPTS.deferred():
                self.executor.spin_once(timeout_sec=min(0.1, remaining))
        return True

    def wait_for_server(self, timeout: float) -> None:
        if not self.spin_until(self.client.server_is_ready, timeout):
            raise CommandError(
                f"no action server {self.action_name} after {timeout:g} s: "
                "is lisa_node running and active, "
                "with the same ROS_DOMAIN_ID (and --action matching its namespace)?"
            )

    def send(self, goal: Any, on_feedback: Any, timeout: float) -> Any:
        future = self.client.send_goal_async(
            goal, feedback_callback=lambda msg: on_feedback(msg.feedback)
        )
        try:
            answered = self.spin_until(future.done, timeout)
        except KeyboardInterrupt:  # the node may accept the goal anyway: don't leave it running
            if self.spin_until(future.done, CANCEL_WAIT_S) and future.result().accepted:
                self.cancel(future.result())
            raise
        if not answered:
            raise CommandError(
                f"{self.action_name} did not answer the goal request within {timeout:g} s"
            )
        goal_handle = future.result()
        if not goal_handle.accepted:
            raise CommandError(
                f"the goal was rejected by {self.action_name}: "
                "the node is busy (busy_policy 'reject') "
                "or not active; try again later"
            )
        return goal_handle

    def result(
        self, goal_handle: Any, timeout: float, until: Callable[[], bool] | None = None
    ) -> Any | None:
        """The result response (status and result), or None if ``timeout`` passed first, or
        ``until()`` became true first."""
        future = goal_handle.get_result_async()
        self.spin_until(lambda: future.done() or (until is not None and until()), timeout)
        if not future.done():
            return None
        # Feedback and result travel separately: feedback sent just before the result may still be
        # waiting in the executor. Show it before the answer rather than drop it.
        self.spin_until(lambda: False, FEEDBACK_DRAIN_S)
        return future.result()

    def cancel(self, goal_handle: Any) -> Any | None:
        """Ask the node to cancel the goal; return its final result response if it comes in time."""
        cancel_future = goal_handle.cancel_goal_async()
        self.spin_until(cancel_future.done, CANCEL_WAIT_S)
        return self.result(goal_handle, CANCEL_WAIT_S)


class FirstMask:
    """When the node's first mask came (in a "mask_ready" feedback), from the goal's sending."""

    def __init__(self, printer: FeedbackPrinter) -> None:
        self._printer = printer
        self._sent = time.monotonic()
        self.seconds: float | None = None

    def on_feedback(self, feedback: Any) -> None:
        if feedback.stage == "mask_ready" and self.seconds is None:
            self.seconds = time.monotonic() - self._sent
            self._printer.message(
                f"first mask after {self.seconds:.2f} s "
                f"({feedback.tokens_generated} tokens of the answer so far)"
            )

    def arrived(self) -> bool:
        return self.seconds is not None


# --- results ---------------------------------------------------------------------------------


def constant_names(message_type: Any, prefix: str = "") -> dict[int, str]:
    """``{value: name}`` of the integer constants a ROS message type defines."""
    metaclass = type(message_type)
    return {
        getattr(message_type, name): name[len(prefix) :]
        for name in dir(metaclass)
        if name.isupper()
        and name.startswith(prefix)
        and isinstance(getattr(message_type, name, None), int)
    }


def masks_to_array(mask_msgs: Sequence[Any]) -> np.ndarray:
    """The result's mono8 masks as ``(N, H, W)`` bool."""
    try:
        masks = [image_msg_to_array(msg) > 0 for msg in mask_msgs]
    except ImageConversionError as error:
        raise CommandError(f"the node sent a mask that cannot be read: {error}") from None
    if len({mask.shape for mask in masks}) > 1:
        raise CommandError(
            f"the node sent masks of different sizes: {[mask.shape for mask in masks]}"
        )
    return np.stack(masks) if masks else np.zeros((0, 0, 0), dtype=bool)


def mask_record(info: Any) -> MaskRecord:
    """The :class:`MaskRecord` a ``lisa_ros_interfaces/MaskInfo`` carries (the inverse of the
    node's ``outputs.mask_info``), so that lisa-ask saves what lisa-segment saves."""
    bbox = info.bbox
    return MaskRecord(
        index=int(info.seg_index),
        phrase=info.phrase,
        text_offset=int(info.text_offset),
        bbox_xywh=(int(bbox.x_offset), int(bbox.y_offset), int(bbox.width), int(bbox.height)),
        area_px=int(info.area),
        score=float(info.score),
    )


def target_of(info: Any) -> Target3D:
    """The 3D target a ``MaskInfo`` carries (its points stay on the node: ~/points has them)."""
    as_array = lambda point: np.array([point.x, point.y, point.z])  # noqa: E731
    return Target3D(
        ok=bool(info.has_target),
        reason=info.target_status,
        centroid=as_array(info.centroid),
        extent_min=as_array(info.extent_min),
        extent_max=as_array(info.extent_max),
        num_points=int(info.num_points),
        valid_ratio=float(info.valid_ratio),
        points=np.empty((0, 3), np.float32),
        pixels=np.empty((0, 2), np.int32),
    )


def depth_fields(result: Any) -> dict[str, Any]:
    """Where the 3D values of ``result.json`` are (the depth image's frame), or why there are
    none."""
    stamp = result.depth_header.stamp
    return {
        "frame_id": result.depth_header.frame_id,
        "stamp": {"sec": int(stamp.sec), "nanosec": int(stamp.nanosec)},
        "frame": CAMERA_FRAME,
        "status": result.depth_status,
    }


def outcome_fields(result: Any, status_name: str, code_name: str) -> dict[str, Any]:
    """What lisa-ask's ``result.json`` holds beyond lisa-segment's: the goal's outcome and frame."""
    stamp = result.header.stamp
    return {
        "status": status_name,
        "error_code": int(result.error_code),
        "error_code_name": code_name,
        "error_message": result.error_message,
        "header": {
            "frame_id": result.header.frame_id,
            "stamp": {"sec": int(stamp.sec), "nanosec": int(stamp.nanosec)},
        },
    }


def write_outputs(
    folder: Path,
    record: dict[str, Any],
    masks: np.ndarray,
    text: str,
    source_rgb: np.ndarray | None,
    printer: FeedbackPrinter,
) -> None:
    """Write the overlay (when there is a picture to draw on), the masks, then ``result.json``."""
    canvas = source_rgb
    if canvas is not None and masks.shape[0] and canvas.shape[:2] != masks.shape[1:]:
        printer.message(
            f"the masks ({masks.shape[2]}x{masks.shape[1]}) do not match the image "
            f"({canvas.shape[1]}x{canvas.shape[0]}): overlay drawn on black"
        )
        canvas = None
    if canvas is None and masks.shape[0]:
        canvas = np.zeros((*masks.shape[1:], 3), dtype=np.uint8)
        record["overlay_background"] = (
            "black (the source frame was not available: pass --image or --image-topic)"
        )
    overlay = None
    if canvas is not None:
        overlay = draw_overlay(
            canvas, masks if masks.shape[0] else np.zeros((0, *canvas.shape[:2]), bool), text
        )
    write_result_files(folder, record, masks, overlay)


# --- main ------------------------------------------------------------------------------------


class Interrupts:
    """Ctrl-C and SIGTERM as KeyboardInterrupt, but never from inside rclpy's executor.

    Python raises KeyboardInterrupt wherever the main thread is, so a Ctrl-C could land inside
    ``spin_once`` after it took a message (a goal response, a cancel answer) and before the
    future it completes saw it: the cancel that follows would then wait out its timeouts for an
    answer already lost. Inside :meth:`deferred` a signal is only noted, and raised when the
    executor step is done.
    """

    def __init__(self) -> None:
        self._deferring = False
        self._pending = False

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):  # SIGTERM: `timeout`, systemd
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._deferring:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt


INTERRUPTS = Interrupts()


def run(args: argparse.Namespace, ros_args: list[str], printer: FeedbackPrinter) -> int:
    """Check the inputs, send the goal, report the result and save it; return the exit status."""
    instruction = check_instruction(args.instruction)
    image_rgb = read_image(args.image) if args.image is not None else None
    prepare_output(args.output)  # before the goal: a bad folder must not cost an inference
    _check_interfaces()

    client = SegmentClient(args.action, ros_args)
    try:
        frames = (
            SourceFrames(client.node, args.image_topic, printer)
            if image_rgb is None and args.image_topic
            else None
        )
        printer.message(f"waiting for {args.action}")
        client.wait_for_server(args.server_timeout)
        if frames is not None:
            frames.wait_for_first(client, args.server_timeout)
        goal = build_goal(
            instruction, args.session, image_rgb, client.node.get_clock().now().to_msg()
        )
        first_mask = FirstMask(printer)

        def on_feedback(feedback: Any) -> None:
            printer.show(feedback.stage, feedback.text)
            first_mask.on_feedback(feedback)

        goal_handle = client.send(goal, on_feedback, args.server_timeout)
        if frames is not None:
            frames.goal_accepted()
        printer.message(
            "goal accepted" + (" (using the node's latest frame)" if image_rgb is None else "")
        )
        response = await_result(
            client, goal_handle, args.timeout, printer, first_mask if args.first_mask else None
        )
        exit_status = report(response, printer, stopped_at_first_mask=args.first_mask)
        if args.output is not None:
            source = (
                image_rgb
                if image_rgb is not None
                else (frames.find(response.result.header) if frames else None)
            )
            save(args, instruction, response, source, printer)
        return exit_status
    finally:
        client.close()


def _check_interfaces() -> None:
    try:
        importlib.import_module("lisa_ros_interfaces.action")
    except ImportError as error:
        raise CommandError(
            f"lisa_ros_interfaces cannot be imported ({error}): "
            "build it (make setup, or colcon build "
            "and source install/setup.bash)"
        ) from None


def build_goal(instruction: str, session_id: str, image_rgb: np.ndarray | None, stamp: Any) -> Any:
    """The Segment goal; without an image the node uses its latest camera frame."""
    from lisa_ros_interfaces.action import Segment
    from sensor_msgs.msg import Image

    goal = Segment.Goal(instruction=instruction, session_id=session_id)
    if image_rgb is not None:
        goal.image = fill_image_msg(Image(), image_rgb, "rgb8")
        goal.image.header.stamp = stamp
    return goal


def await_result(
    client: SegmentClient,
    goal_handle: Any,
    timeout: float,
    printer: FeedbackPrinter,
    first_mask: FirstMask | None = None,
) -> Any:
    """The goal's result response; Ctrl-C or ``timeout`` cancel the goal on the node first. With
    ``first_mask``, the goal is canceled once it arrived: the node's result then holds it."""
    try:
        response = client.result(goal_handle, timeout, first_mask.arrived if first_mask else None)
        if response is None and first_mask is not None and first_mask.arrived():
            printer.message("canceling the rest of the answer (--first-mask)")
            response = client.cancel(goal_handle)
            if response is None:
                raise CommandError("the node did not end the goal after --first-mask canceled it")
    except KeyboardInterrupt:
        printer.message("interrupted: canceling the goal")
        response = client.cancel(goal_handle)
        if response is not None:
            report(response, printer)
        raise
    if response is None:
        printer.message(f"no result after {timeout:g} s: canceling the goal")
        canceled = client.cancel(goal_handle)
        if canceled is not None:
            printer.message(f"the node ended the goal: {_status_name(canceled.status)}")
        raise CommandError(
            f"no result within --timeout {timeout:g} s (goal canceled); "
            "CPU inference can take minutes: raise --timeout"
        )
    return response


def save(
    args: argparse.Namespace,
    instruction: str,
    response: Any,
    source_rgb: np.ndarray | None,
    printer: FeedbackPrinter,
) -> None:
    """Write the result into ``args.output`` (masks, overlay, result.json)."""
    from lisa_ros_interfaces.action import Segment

    result = response.result
    code_name = constant_names(Segment.Result).get(result.error_code, str(result.error_code))
    fields = {
        "instruction": instruction,
        "session_id": args.session,
        "action": args.action,
        "image": str(args.image) if args.image is not None else None,
        "stopped_at_first_mask": args.first_mask,
        **outcome_fields(result, _status_name(response.status), code_name),
    }
    masks = [mask_record(info) for info in result.mask_info]
    timings = {timing.stage: timing.seconds for timing in result.timings}
    record = result_record(fields, result.text, masks, timings)
    record["depth"] = depth_fields(result)
    for entry, info in zip(record["masks"], result.mask_info, strict=True):
        entry["target"] = target_record(target_of(info))
    try:
        write_outputs(
            args.output, record, masks_to_array(result.masks), result.text, source_rgb, printer
        )
    except OSError as error:
        raise CommandError(f"cannot write the results into '{args.output}': {error}") from None
    printer.message(f"wrote {args.output / RESULT_FILE}")


def _status_name(status: int) -> str:
    from action_msgs.msg import GoalStatus

    return constant_names(GoalStatus, "STATUS_").get(status, str(status))


def report(response: Any, printer: FeedbackPrinter, *, stopped_at_first_mask: bool = False) -> int:
    """Print the answer (stdout) and the outcome (stderr); return the exit status it means.

    With ``stopped_at_first_mask``, a goal canceled with a mask is what was asked for: success."""
    from lisa_ros_interfaces.action import Segment

    result = response.result
    printer.end()
    if result.text:
        print_answer(result.text)
    code = result.error_code
    name = constant_names(Segment.Result).get(code, f"error code {code}")
    timings = {timing.stage: timing.seconds for timing in result.timings}
    if "first_mask" in timings and "total" in timings:
        printer.message(
            f"first mask at {timings['first_mask']:.2f} s of {timings['total']:.2f} s on the node"
        )
    first_only = stopped_at_first_mask and code == Segment.Result.CANCELED and result.masks
    if code == Segment.Result.SUCCESS or first_only:
        masks = ", ".join(
            f"{mask_title(info.seg_index, info.phrase)}: {info.area} px, score {info.score:.2f}"
            for info in result.mask_info
        )
        outcome = "FIRST MASK (rest of the answer canceled)" if first_only else "SUCCESS"
        printer.message(
            f"{outcome}: {len(result.masks)} mask(s)" + (f" ({masks})" if masks else "")
        )
        for line in target_lines(result):
            printer.message(line)
        return EXIT_SUCCESS
    if code == Segment.Result.NOTHING_FOUND:
        printer.message(
            "NOTHING_FOUND: the answer refers to no region"
            + (f" ({result.error_message})" if result.error_message else "")
        )
        return EXIT_NOTHING_FOUND
    outcome = (
        f"{name}: {result.error_message or 'no message'} (goal {_status_name(response.status)})"
    )
    if code == Segment.Result.CANCELED:
        print(f"{PROG}: {outcome}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{PROG}: error: {outcome}", file=sys.stderr)
    return EXIT_BAD_INPUT if code == Segment.Result.INVALID_INPUT else EXIT_FAILURE


def target_lines(result: Any) -> list[str]:
    """One line per mask saying where it is in 3D, or why it has no 3D target."""
    frame = result.depth_header.frame_id or "the camera frame"
    lines = []
    for info in result.mask_info:
        if info.has_target:
            c, low, high = info.centroid, info.extent_min, info.extent_max
            lines.append(
                f"{mask_title(info.seg_index, info.phrase)}: centroid x={c.x:.3f} y={c.y:.3f} "
                f"z={c.z:.3f} m in {frame}, size {high.x - low.x:.3f} x {high.y - low.y:.3f} x "
                f"{high.z - low.z:.3f} m, {info.num_points} points, depth on "
                f"{info.valid_ratio:.0%} of the mask"
            )
        else:
            reason = info.target_status or result.depth_status or "the node sent no depth status"
            lines.append(f"{mask_title(info.seg_index, info.phrase)}: no 3D target ({reason})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    from rclpy.utilities import remove_ros_args

    full_argv = list(sys.argv if argv is None else [PROG, *argv])
    args = build_parser().parse_args(remove_ros_args(full_argv)[1:])
    printer = FeedbackPrinter(sys.stderr, enabled=not args.quiet)
    INTERRUPTS.install()
    try:
        return run(args, full_argv, printer)
    except CommandError as error:
        printer.end()
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return error.exit_status
    except KeyboardInterrupt:
        printer.end()
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
