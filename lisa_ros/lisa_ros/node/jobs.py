"""The kinds of work the inference thread runs: a continuous-mode frame (reasoned), a followed
frame, and an action goal.

All run on the node's single inference thread (see :mod:`.scheduler`), never on the executor, so
topics, cancel requests and lifecycle services stay responsive during a long generation. Frames
and goals can be stopped within one decoding step through the ``threading.Event`` passed to
``LisaModel.segment(stop=...)``; a follow (one SAM pass) is dropped after it when stopped.

A frame job publishes its answer on the result topics; a problem is logged and reported as a
diagnostic, and the next frame is tried as usual. A follow job decodes the last answer's [SEG]
prompts on a newer frame with SAM alone (``LisaModel.follow``) and publishes that, unless the
masks drifted too far from the reasoned ones: then it asks for a reasoning step instead. A goal
job always ends in an action result whose ``error_code`` tells success from "nothing found" from
failure, and also publishes a successful answer on the result topics so RViz shows what the goal
found.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from lisa_ros_interfaces.action import Segment
from sensor_msgs.msg import CameraInfo, CompressedImage
from std_msgs.msg import Header

from lisa_ros.model import LisaOutOfMemoryError
from lisa_ros.model.follow_quality import MaskDrift, follow_drift
from lisa_ros.model.result import SegmentationResult

if TYPE_CHECKING:  # the model (and torch) are loaded on configure, not when the node imports
    from lisa_ros.model import LisaModel

from .depth import DepthPartner, DepthSettings
from .headers import copy_header
from .inputs import ImageLimits, InputError, check_instruction, compressed_to_rgb, image_to_rgb
from .outputs import Answer, Followed, ResultPublishers
from .pairing import CameraStreams, nanoseconds
from .scheduler import StopReason
from .sessions import Session, SessionStore

__all__ = [
    "FollowJob",
    "FollowSettings",
    "FollowTarget",
    "Frame",
    "FrameJob",
    "GoalError",
    "GoalJob",
    "GoalOutcome",
    "GoalTurn",
    "JobSettings",
    "Pipeline",
    "resolve_turn",
]

Result = Segment.Result

_STOP_CODES = {
    StopReason.CANCELED: (Result.CANCELED, "canceled by the client"),
    StopReason.PREEMPTED: (Result.PREEMPTED, "preempted by a newer goal (busy_policy 'preempt')"),
    StopReason.DEACTIVATED: (
        Result.MODEL_NOT_READY,
        "the node was deactivated: activate it again and resend the goal",
    ),
}


class GoalOutcome(Enum):
    """The terminal state a Segment goal ends in (see Segment.action for which error codes)."""

    SUCCEEDED = "succeeded"
    ABORTED = "aborted"
    CANCELED = "canceled"


@dataclass(frozen=True)
class Frame:
    """A camera frame as received (conversion and pairing are deferred to the inference thread)."""

    msg: Any  # sensor_msgs/Image or sensor_msgs/CompressedImage
    streams: CameraStreams | None = None  # None: an image without a camera (goal image)
    received: float = field(default_factory=time.perf_counter)  # when the node got it
    # When the node got it by the node's clock (seconds; sim time when use_sim_time is set), for
    # the age that max_frame_age_s bounds; None: unknown (never too old).
    received_at: float | None = None

    @property
    def header(self) -> Header:
        return self.msg.header

    @property
    def camera_info(self) -> CameraInfo:
        """The camera info published with this frame (empty when there is none)."""
        if self.streams is None:
            return CameraInfo()
        return self.streams.camera_info_for(self.msg.header.stamp)

    def depth(self, settings: DepthSettings) -> DepthPartner:
        """The depth image paired with this frame, looked up and decoded only when an output
        needs it."""
        streams = self.streams
        if streams is None:
            return DepthPartner.none("the image came without a depth image")
        stamp = self.msg.header.stamp
        # The candidates held now, the first to arrive stamped at or after the frame, and those
        # held at the lookup: the frame's own depth image may come a little after it, and a long
        # inference must not push it out meanwhile.
        candidates = streams.depths.hold(stamp)

        def lookup() -> tuple[Any, CameraInfo, InputError | None]:
            held = candidates.messages()
            depth = streams.depths.nearest(stamp, settings.max_skew_s, also=held)
            if depth is None:
                reason = _no_depth_reason(streams, held, stamp, settings.max_skew_s)
                return None, CameraInfo(), reason
            return depth, streams.camera_info_for(stamp), None

        def refused(error: InputError) -> None:
            streams.report(error.cause, f"no 3D targets: {error}")

        return DepthPartner.paired_later(lookup, self.msg.header, settings, refused)

    def to_rgb(self, limits: ImageLimits) -> np.ndarray:
        if isinstance(self.msg, CompressedImage):
            return compressed_to_rgb(self.msg, limits)
        return image_to_rgb(self.msg, limits)


def _no_depth_reason(
    streams: CameraStreams, held: list[Any], stamp: Any, max_skew_s: float
) -> InputError:
    """Why a frame has no depth partner; a stream problem (cause "depth") only when depth comes
    but not with the frame's stamp: a camera without depth is a 2D camera, not a fault."""
    nearest = streams.depths.nearest(stamp, also=held)
    if nearest is None:
        return InputError(
            "no depth image has arrived on the depth topic: remap 'depth' to the depth image "
            "registered to the colour camera for 3D targets"
        )
    skew = abs(nanoseconds(nearest.header.stamp) - nanoseconds(stamp)) / 1e9
    return InputError(
        f"no depth image within depth_max_skew_s={max_skew_s:g} s of the image (the nearest is "
        f"{skew:.3f} s away): is the depth stream running, and stamped like the colour images?",
        cause="depth",
    )


@dataclass(frozen=True)
class JobSettings:
    """The run-time parameters a job reads, snapshotted when the job is created."""

    max_new_tokens: int
    limits: ImageLimits
    max_instruction_chars: int
    depth: DepthSettings = field(default_factory=DepthSettings)
    max_frame_age_s: float = 0.0  # a goal on an older latest camera frame: NO_IMAGE; 0: off
    follow: FollowSettings = field(default_factory=lambda: FollowSettings())


@dataclass
class Pipeline:
    """What the jobs of one configured node share; built on configure, dropped on cleanup."""

    model: LisaModel
    outputs: ResultPublishers
    sessions: SessionStore
    report_input_error: Callable[[str, str], None]  # (cause, message): log line + diagnostic
    logger: Any
    # Told of every answer LISA reasoned (is_goal): the node makes it the target to follow.
    on_reasoned: Callable[[Answer, bool], None] = lambda answer, is_goal: None
    # Told when followed masks no longer hold, with why: the node reasons again or stops.
    on_follow_degraded: Callable[[FollowTarget, str], None] = lambda target, why: None
    # Given every reasoned answer that was delivered, to record it (parameter record_dir); it
    # must return at once: it runs on the inference thread, after the answer went out.
    record: Callable[[Answer], None] = lambda answer: None
    last_inference_seconds: float | None = None
    last_followed: bool = False  # whether the last published answer was followed
    last_reasoning_age: float = 0.0  # and the age of the reasoning it rested on (s)


class _StoppableJob:
    is_goal = False

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._stop_lock = threading.Lock()  # what runs under it sees no stop request arrive
        self.stop_reason: StopReason | None = None

    def request_stop(self, reason: StopReason) -> None:
        with self._stop_lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        self._stop.set()


class _CameraFrameJob(_StoppableJob):
    """What a reasoned and a followed camera frame share: converting the frame, and the answer on
    it with the frame's header, camera info, depth and node timings."""

    def __init__(self, pipeline: Pipeline, frame: Frame, settings: JobSettings) -> None:
        super().__init__()
        self._pipeline = pipeline
        self._frame = frame
        self._settings = settings
        self._node_timings: dict[str, float] = {}
        # Paired when the job starts (see Frame.depth), decoded only if an output needs 3D.
        self._depth = frame.depth(settings.depth)

    def _frame_rgb(self) -> np.ndarray | None:
        """The frame as RGB, or None when it is unusable (reported as an input error)."""
        started = time.perf_counter()
        try:
            image = self._frame.to_rgb(self._settings.limits)
        except InputError as error:
            self._pipeline.report_input_error("image", f"camera frame dropped: {error}")
            return None
        # "queued" stays under one camera period: frames are never queued.
        self._node_timings = {
            "queued": started - self._frame.received,
            "image_conversion": time.perf_counter() - started,
        }
        return image

    def _answer(
        self,
        instruction: str,
        image: np.ndarray,
        result: SegmentationResult,
        followed: Followed | None = None,
    ) -> Answer:
        return Answer(
            header=copy_header(self._frame.header),
            camera_info=self._frame.camera_info,
            instruction=instruction,
            image_rgb=image,
            result=result,
            depth=self._depth,
            followed=followed,
            node_timings=self._node_timings,
        )


class FrameJob(_CameraFrameJob):
    """Segment one camera frame with the standing instruction and publish the answer."""

    def __init__(
        self, pipeline: Pipeline, frame: Frame, instruction: str, settings: JobSettings
    ) -> None:
        super().__init__(pipeline, frame, settings)
        self._instruction = instruction

    def run(self) -> None:
        if self.stop_reason is not None:
            return
        pipeline = self._pipeline
        image = self._frame_rgb()
        if image is None:
            return
        try:
            result = pipeline.model.segment(
                image,
                self._instruction,
                stop=self._stop,
                max_new_tokens=self._settings.max_new_tokens,
            )
        except ValueError as error:
            pipeline.report_input_error("instruction", f"standing instruction not usable: {error}")
            return
        except Exception as error:  # noqa: BLE001 - the node must survive e.g. GPU out-of-memory
            _recover_from_failure(pipeline, error)
            return
        pipeline.last_inference_seconds = result.timings.get("total")
        if self.stop_reason is not None:
            return  # a goal took over, continuous mode was stopped, or the node deactivated
        answer = self._answer(self._instruction, image, result)
        pipeline.on_reasoned(answer, False)
        pipeline.last_followed, pipeline.last_reasoning_age = False, 0.0
        pipeline.outputs.publish(answer)
        pipeline.record(answer)


@dataclass(frozen=True)
class FollowSettings:
    """When followed masks no longer hold (see the follow_* parameters)."""

    min_score_ratio: float = 0.5  # followed IoU score below this share of the reasoned one
    max_area_change: float = 2.0  # area more than this factor larger or smaller
    max_shift: float = 0.2  # box centre moved by more than this share of the image diagonal

    def problem(self, drifts: Sequence[MaskDrift]) -> str | None:
        """Why the followed masks no longer stand for the reasoned ones, or None."""
        for drift in drifts:
            name = f"mask {drift.index}"
            if drift.lost:
                return f"{name} is lost"
            if drift.score < self.min_score_ratio * drift.reasoned_score:
                return (
                    f"{name}'s predicted IoU fell to {drift.score:.2f} from "
                    f"{drift.reasoned_score:.2f}"
                )
            change = self.max_area_change
            if drift.area_ratio > change or drift.area_ratio * change < 1.0:
                return f"{name}'s area changed {drift.area_ratio:.2f} times"
            if drift.centre_shift > self.max_shift:
                return f"{name} moved by {drift.centre_shift:.0%} of the image diagonal"
        return None


@dataclass(frozen=True)
class FollowTarget:
    """A reasoned answer whose targets are followed on newer frames."""

    result: SegmentationResult
    header: Header  # of the frame LISA reasoned on
    instruction: str
    from_goal: bool


class FollowJob(_CameraFrameJob):
    """Follow ``target`` on one newer frame and publish the followed masks."""

    is_follow = True

    def __init__(
        self, pipeline: Pipeline, frame: Frame, target: FollowTarget, settings: JobSettings
    ) -> None:
        super().__init__(pipeline, frame, settings)
        self._target = target

    def run(self) -> None:
        if self.stop_reason is not None:
            return
        pipeline, target = self._pipeline, self._target
        image = self._frame_rgb()
        if image is None:
            return
        try:
            followed = pipeline.model.follow(image, target.result)
            drifts = follow_drift(target.result, followed)
        except ValueError as error:  # e.g. the camera changed resolution since the answer
            pipeline.on_follow_degraded(target, str(error))
            return
        except Exception as error:  # noqa: BLE001 - the node must survive e.g. GPU out-of-memory
            _recover_from_failure(pipeline, error)
            return
        if self.stop_reason is not None:
            return  # a goal or a reasoning step took over
        problem = self._settings.follow.problem(drifts)
        if problem is not None:
            pipeline.on_follow_degraded(target, problem)
            return
        origin = Followed(reasoned_header=target.header, drifts=drifts)
        answer = self._answer(target.instruction, image, followed, origin)
        pipeline.last_followed, pipeline.last_reasoning_age = True, answer.reasoning_age
        pipeline.outputs.publish(answer)


@dataclass
class GoalTurn:
    """A goal made ready for the model: checked instruction, converted image, conversation so
    far."""

    instruction: str
    image_rgb: np.ndarray
    header: Header
    camera_info: CameraInfo
    depth: DepthPartner
    session_id: str = ""
    history: Sequence[tuple[str, str]] = ()
    node_timings: dict[str, float] = field(default_factory=dict)
    # The image is the camera's latest frame: its targets may be followed on the next frames
    # (not those of an image the goal brought, nor a follow-up turn on an older frame).
    on_camera_frame: bool = False


class GoalError(Exception):
    """A goal that cannot run; ``code`` is a Segment.Result error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def resolve_turn(
    goal: Any,
    latest_frame: Frame | None,
    sessions: SessionStore,
    settings: JobSettings,
    now: float | None = None,
) -> GoalTurn:
    """Check a Segment goal and gather its image and history; GoalError when it cannot run.

    Order of precedence for the image: the session's frame (follow-up turns), the goal's image,
    the latest camera frame, which must be younger than ``settings.max_frame_age_s`` at ``now``
    (the node's clock, seconds) when both are given (see :func:`_check_frame_age`).
    """
    try:
        instruction = check_instruction(goal.instruction, settings.max_instruction_chars)
    except InputError as error:
        raise GoalError(Result.INVALID_INPUT, str(error)) from error

    session = sessions.get(goal.session_id) if goal.session_id else None
    if session is not None:
        return GoalTurn(
            instruction=instruction,
            image_rgb=session.image_rgb,
            header=session.header,
            camera_info=session.camera_info,
            depth=session.depth,
            session_id=goal.session_id,
            history=list(session.history),
        )

    started = time.perf_counter()
    own_image = _has_pixels(goal.image)
    if own_image:
        frame = Frame(goal.image)
    elif latest_frame is not None:
        _check_frame_age(latest_frame, settings.max_frame_age_s, now)
        frame = latest_frame
    else:
        raise GoalError(
            Result.NO_IMAGE,
            "the goal has no image and no camera frame has arrived on the image topic yet: "
            "put an image in the goal or check the camera (is 'image' remapped to it?)",
        )
    try:
        image = frame.to_rgb(settings.limits)
    except InputError as error:
        raise GoalError(Result.INVALID_INPUT, str(error)) from error
    if own_image:
        camera_info = goal.camera_info
        depth = _goal_depth(goal, image.shape[:2], settings.depth)
    else:
        camera_info = frame.camera_info
        depth = frame.depth(settings.depth)
    return GoalTurn(
        instruction=instruction,
        image_rgb=image,
        header=copy_header(frame.header),
        camera_info=camera_info,
        depth=depth,
        session_id=goal.session_id,
        node_timings={"image_conversion": time.perf_counter() - started},
        on_camera_frame=not own_image,
    )


def _check_frame_age(frame: Frame, max_age_s: float, now: float | None) -> None:
    """GoalError NO_IMAGE when the camera's latest frame is older than ``max_age_s`` (0: off).

    The age is the time since the node *received* the frame, by the node's clock, not since its
    header stamp: camera clocks are often not synchronised with the robot's (a stamp seconds off
    would refuse every goal, or accept stale ones), while a stopped camera, the case this guards
    against, shows as a receive time that no longer moves. The node's clock follows /clock under
    use_sim_time, so a paused or slowed simulation does not age its frames. A driver's own latency
    before publishing is not counted.
    """
    if max_age_s <= 0 or now is None or frame.received_at is None:
        return
    age = now - frame.received_at
    if age > max_age_s:
        raise GoalError(
            Result.NO_IMAGE,
            f"the camera's latest frame is {age:.1f} s old (max_frame_age_s={max_age_s:g}): "
            "is the camera still publishing on the image topic? Put an image in the goal, or "
            "raise max_frame_age_s (0: off)",
        )


def _has_pixels(image: Any) -> bool:
    return len(image.data) > 0 or bool(image.width) or bool(image.height)


def _goal_depth(goal: Any, image_hw: tuple[int, int], settings: DepthSettings) -> DepthPartner:
    """The depth a goal sent with its image, checked now: a client that sends depth wants 3D,
    and learns of a mistake before the inference, not after it."""
    if not _has_pixels(goal.depth):
        return DepthPartner.none("the goal's image came without a depth image (goal field 'depth')")
    depth = DepthPartner(
        goal.depth, goal.camera_info, image_header=goal.image.header, settings=settings
    )
    try:
        depth.load(image_hw)
    except InputError as error:
        raise GoalError(Result.INVALID_INPUT, f"goal field 'depth': {error}") from error
    return depth


def goal_result(code: int, message: str = "", answer: Answer | None = None) -> Any:
    """A Segment.Result; with ``answer``, filled with its header, text, masks and timings."""
    result = Result(error_code=code, error_message=message)
    if answer is not None:
        result.header = copy_header(answer.header)
        result.camera_info = answer.camera_info
        result.text = answer.result.text
        result.masks = answer.mask_images
        result.mask_info = answer.mask_infos
        result.depth_header, result.depth_status = answer.depth_header, answer.depth_status
        result.timings = answer.timings
    return result


class GoalJob(_StoppableJob):
    """Answer one Segment goal, with feedback, and hand the result to ``on_done``.

    ``on_done(result, outcome)`` is called exactly once, with the :class:`GoalOutcome` the action
    goal must end in: on the inference thread, or, for a goal canceled while it waited, on the
    executor thread that handled the cancel request (so the cancel is answered at once).
    """

    is_goal = True

    def __init__(
        self,
        pipeline: Pipeline,
        turn: GoalTurn,
        settings: JobSettings,
        publish_feedback: Callable[[Any], None],
        on_done: Callable[[Any, GoalOutcome], None],
    ) -> None:
        super().__init__()
        self._pipeline = pipeline
        self._turn = turn
        self._settings = settings
        self._publish_feedback = publish_feedback
        self._on_done = on_done
        self._stage = "queued"
        self._text = ""  # the answer so far, repeated in every feedback (a stage change keeps it)
        self._tokens = 0
        self._created = time.perf_counter()
        self._finished = False

    def run(self) -> None:
        try:
            self._run()
        except Exception as error:  # noqa: BLE001 - a bug must still end the goal, with its cause
            self._pipeline.logger.error(f"goal failed with an unexpected error: {error!r}")
            self._done(
                goal_result(Result.INFERENCE_FAILED, f"internal error: {error!r}"),
                GoalOutcome.ABORTED,
            )

    def _done(self, result: Any, outcome: GoalOutcome) -> None:
        """Hand the goal's outcome over, once (a late failure cannot overwrite a result)."""
        if not self._finished:
            self._finished = True
            self._on_done(result, outcome)

    def _run(self) -> None:
        if self.stop_reason is not None:
            self._finish_stopped(self.stop_reason, "")
            return
        turn = self._turn
        queued = time.perf_counter() - self._created
        try:
            result = self._pipeline.model.segment(
                turn.image_rgb,
                turn.instruction,
                list(turn.history) or None,
                on_stage=self._on_stage,
                stop=self._stop,
                on_text=self._on_text,
                max_new_tokens=self._settings.max_new_tokens,
            )
        except ValueError as error:
            self._done(goal_result(Result.INVALID_INPUT, str(error)), GoalOutcome.ABORTED)
            return
        except Exception as error:  # noqa: BLE001 - report, free memory, keep serving
            message = _recover_from_failure(self._pipeline, error)
            self._done(goal_result(Result.INFERENCE_FAILED, message), GoalOutcome.ABORTED)
            return
        self._pipeline.last_inference_seconds = result.timings.get("total")
        if self.stop_reason is not None:
            self._finish_stopped(self.stop_reason, result.text)
            return

        answer = Answer(
            header=turn.header,
            camera_info=turn.camera_info,
            instruction=turn.instruction,
            image_rgb=turn.image_rgb,
            result=result,
            depth=turn.depth,
            node_timings={"queued": queued, **turn.node_timings},
        )
        if turn.session_id:
            history = [*turn.history, (turn.instruction, result.text)]
            self._pipeline.sessions.put(
                turn.session_id,
                Session(turn.image_rgb, turn.header, turn.camera_info, turn.depth, history),
            )
        if len(result.mask_logits) == 0:
            code, message = Result.NOTHING_FOUND, "the answer holds no [SEG] token, so no mask"
        else:
            code, message = Result.SUCCESS, ""
        outcome = goal_result(code, message, answer)
        self._done(outcome, GoalOutcome.SUCCEEDED)
        if self._turn.on_camera_frame:
            self._pipeline.on_reasoned(answer, True)
        self._pipeline.last_followed, self._pipeline.last_reasoning_age = False, 0.0
        self._pipeline.outputs.publish(answer)
        if not turn.history:
            # A follow-up turn's instruction means nothing without the conversation, which a
            # dataset sample cannot hold; the frame was recorded with the session's first turn.
            self._pipeline.record(answer)

    def _finish_stopped(self, reason: StopReason, partial_text: str) -> None:
        code, message = _STOP_CODES.get(reason, (Result.CANCELED, reason.value))
        result = goal_result(code, message)
        result.header = copy_header(self._turn.header)
        result.camera_info = self._turn.camera_info
        result.text = partial_text
        self._done(
            result, GoalOutcome.CANCELED if reason is StopReason.CANCELED else GoalOutcome.ABORTED
        )

    def feedback_queued(self, goals_ahead: int) -> None:
        self._stage = f"queued ({goals_ahead} ahead)" if goals_ahead else "queued"
        self._send_feedback()

    def _on_stage(self, stage: str) -> None:
        self._stage = stage
        self._send_feedback()

    def _on_text(self, text: str, tokens: int) -> None:
        self._text, self._tokens = text, tokens
        self._send_feedback()

    def _send_feedback(self) -> None:
        feedback = Segment.Feedback(
            stage=self._stage, text=self._text, tokens_generated=self._tokens
        )
        try:
            with self._stop_lock:
                if self.stop_reason is not None:
                    return  # the goal is ending (canceled, preempted): no stage after its end
                self._publish_feedback(feedback)
        except Exception as error:  # noqa: BLE001 - a lost feedback message must not lose the goal
            self._pipeline.logger.debug(f"feedback not sent: {error}")


def _recover_from_failure(pipeline: Pipeline, error: Exception) -> str:
    """Log an inference failure, free what memory can be freed, and return a message for the
    user."""
    if isinstance(error, LisaOutOfMemoryError):
        message = str(error)  # already says what to do
    else:
        message = f"inference failed: {type(error).__name__}: {error}"
    pipeline.logger.error(message)
    pipeline.model.free_memory()
    return message
