"""Segment action goals: checking a goal and gathering its image, depth and conversation
(:func:`resolve_turn`), and the job that answers it with feedback (:class:`GoalJob`).

A goal job always ends in an action result whose ``error_code`` tells success from "nothing
found" from failure, and also publishes a successful answer on the result topics so RViz shows
what the goal found.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Sequence

import numpy as np
from lisa_ros_interfaces.action import Segment
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from lisa_ros.model.result import SegmentationResult

from .depth import DepthPartner, DepthSettings
from .frames import Frame
from .headers import copy_header
from .inputs import InputError, check_instruction
from .jobs import JobSettings, Pipeline, StoppableJob, recover_from_failure
from .outputs import Answer
from .scheduler import JobKind, StopReason
from .sessions import Session, SessionStore

__all__ = [
    "GoalError",
    "GoalJob",
    "GoalOutcome",
    "GoalTurn",
    "goal_result",
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


class GoalJob(StoppableJob):
    """Answer one Segment goal, with feedback, and hand the result to ``on_done``.

    ``on_done(result, outcome)`` is called exactly once, with the :class:`GoalOutcome` the action
    goal must end in: on the inference thread, or, for a goal canceled while it waited, on the
    executor thread that handled the cancel request (so the cancel is answered at once).
    """

    kind = JobKind.GOAL

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
            self._finish_stopped(self.stop_reason, None)
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
                on_mask=self._on_mask,
                max_new_tokens=self._settings.max_new_tokens,
            )
        except ValueError as error:
            self._done(goal_result(Result.INVALID_INPUT, str(error)), GoalOutcome.ABORTED)
            return
        except Exception as error:  # noqa: BLE001 - report, free memory, keep serving
            message = recover_from_failure(self._pipeline, error)
            self._done(goal_result(Result.INFERENCE_FAILED, message), GoalOutcome.ABORTED)
            return
        self._pipeline.last_inference_seconds = result.timings.get("total")
        answer = self._answer(result, {"queued": queued, **turn.node_timings})
        if self.stop_reason is not None:
            self._finish_stopped(self.stop_reason, answer)
            return

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
        self._done(goal_result(code, message, answer), GoalOutcome.SUCCEEDED)
        # A follow-up turn's instruction means nothing without the conversation, which a
        # dataset sample cannot hold: the frame was recorded with the session's first turn.
        self._pipeline.deliver(
            answer, to_follow=turn.on_camera_frame, from_goal=True, record=not turn.history
        )

    def _answer(self, result: SegmentationResult, node_timings: dict[str, float]) -> Answer:
        turn = self._turn
        return Answer(
            header=turn.header,
            camera_info=turn.camera_info,
            instruction=turn.instruction,
            image_rgb=turn.image_rgb,
            result=result,
            depth=turn.depth,
            node_timings=node_timings,
        )

    def _finish_stopped(self, reason: StopReason, answer: Answer | None) -> None:
        """End a stopped goal: with the answer and masks until then when it had started."""
        code, message = _STOP_CODES.get(reason, (Result.CANCELED, reason.value))
        result = goal_result(code, message, answer)
        result.header = copy_header(self._turn.header)
        result.camera_info = self._turn.camera_info
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

    def _on_mask(self, partial: SegmentationResult) -> None:
        """A [SEG]'s mask is decoded while the answer goes on: send it (and the earlier ones) in
        a "mask_ready" feedback, then carry on in "generating"."""
        self._text, self._tokens = partial.text, len(partial.token_ids)
        feedback = self._feedback("mask_ready", self._text, self._tokens)
        try:
            answer = self._answer(partial, {})
            feedback.masks, feedback.mask_info = answer.mask_images, answer.mask_infos
            feedback.depth_header, feedback.depth_status = answer.depth_header, answer.depth_status
        except Exception as error:  # noqa: BLE001 - the goal goes on; its result will have them
            self._pipeline.logger.warning(f"early mask not sent in feedback: {error!r}")
            return
        self._publish(feedback)

    def _feedback(self, stage: str, text: str, tokens: int) -> Any:
        return Segment.Feedback(stage=stage, text=text, tokens_generated=tokens)

    def _send_feedback(self) -> None:
        self._publish(self._feedback(self._stage, self._text, self._tokens))

    def _publish(self, feedback: Any) -> None:
        try:
            with self._stop_lock:
                if self.stop_reason is not None:
                    return  # the goal is ending (canceled, preempted): no stage after its end
                self._publish_feedback(feedback)
        except Exception as error:  # noqa: BLE001 - a lost feedback message must not lose the goal
            self._pipeline.logger.debug(f"feedback not sent: {error}")
