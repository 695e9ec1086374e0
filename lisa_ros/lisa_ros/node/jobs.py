"""The camera-frame jobs the inference thread runs (a continuous-mode frame, reasoned; a followed
frame) and what every job shares: its settings and the pipeline that delivers its answer. The
goal job is in :mod:`.goals`, the frames in :mod:`.frames`, the follow policy in :mod:`.following`.

All run on the node's single inference thread (see :mod:`.scheduler`), never on the executor, so
topics, cancel requests and lifecycle services stay responsive during a long generation. Frames
and goals can be stopped within one decoding step through the ``threading.Event`` passed to
``LisaModel.segment(stop=...)``; a follow (one SAM pass) is dropped after it when stopped.

A frame job publishes its answer on the result topics; a problem is logged and reported as a
diagnostic, and the next frame is tried as usual. A follow job decodes the last answer's [SEG]
prompts on a newer frame with SAM alone (``LisaModel.follow``) and publishes that, unless the
masks drifted too far from the reasoned ones: then it asks for a reasoning step instead.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from lisa_ros.model import LisaOutOfMemoryError
from lisa_ros.model.follow_quality import follow_drift
from lisa_ros.model.result import SegmentationResult

if TYPE_CHECKING:  # the model (and torch) are loaded on configure, not when the node imports
    from lisa_ros.model import LisaModel

from .depth import DepthSettings
from .following import FollowSettings, FollowTarget
from .frames import Frame
from .headers import copy_header
from .inputs import ImageLimits, InputError
from .outputs import Answer, Followed, ResultPublishers
from .scheduler import JobKind, StopReason
from .sessions import SessionStore

__all__ = [
    "FollowJob",
    "FrameJob",
    "JobSettings",
    "Pipeline",
    "StoppableJob",
    "recover_from_failure",
]


@dataclass(frozen=True)
class JobSettings:
    """The run-time parameters a job reads, snapshotted when the job is created."""

    max_new_tokens: int
    limits: ImageLimits
    max_instruction_chars: int
    depth: DepthSettings = field(default_factory=DepthSettings)
    max_frame_age_s: float = 0.0  # a goal on an older latest camera frame: NO_IMAGE; 0: off
    follow: FollowSettings = field(default_factory=lambda: FollowSettings())
    publish_partial: bool = True  # continuous mode: publish each mask as soon as it is decoded


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

    def deliver(
        self, answer: Answer, *, to_follow: bool, from_goal: bool = False, record: bool = True
    ) -> None:
        """Hand an answer out, the one way every job does: make a reasoned answer the target to
        follow (``to_follow``; ``from_goal``: a goal's), publish it on the result topics, and
        record it (``record``: a new reasoning, not a followed frame or a follow-up turn)."""
        if to_follow:
            self.on_reasoned(answer, from_goal)
        self.last_followed = answer.followed is not None
        self.last_reasoning_age = answer.reasoning_age
        self.outputs.publish(answer)
        if record:
            self.record(answer)


class StoppableJob:
    """A job the scheduler can stop: within one decoding step while the model generates."""

    kind: JobKind

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._stop_lock = threading.Lock()  # what runs under it sees no stop request arrive
        self.stop_reason: StopReason | None = None

    def request_stop(self, reason: StopReason) -> None:
        with self._stop_lock:
            if self.stop_reason is None:
                self.stop_reason = reason
        self._stop.set()


class _CameraFrameJob(StoppableJob):
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
        *,
        partial: bool = False,
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
            partial=partial,
        )


class FrameJob(_CameraFrameJob):
    """Segment one camera frame with the standing instruction and publish the answer."""

    kind = JobKind.FRAME

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
        on_mask = None
        if self._settings.publish_partial:
            on_mask = lambda partial: self._deliver_partial(image, partial)  # noqa: E731
        try:
            result = pipeline.model.segment(
                image,
                self._instruction,
                stop=self._stop,
                on_mask=on_mask,
                max_new_tokens=self._settings.max_new_tokens,
            )
        except ValueError as error:
            pipeline.report_input_error("instruction", f"standing instruction not usable: {error}")
            return
        except Exception as error:  # noqa: BLE001 - the node must survive e.g. GPU out-of-memory
            recover_from_failure(pipeline, error)
            return
        pipeline.last_inference_seconds = result.timings.get("total")
        if self.stop_reason is not None:
            return  # a goal took over, continuous mode was stopped, or the node deactivated
        pipeline.deliver(self._answer(self._instruction, image, result), to_follow=True)

    def _deliver_partial(self, image: np.ndarray, partial: SegmentationResult) -> None:
        """Publish the masks decoded so far while the answer goes on; on the inference thread, so
        a consumer that needs the target now has it tens of tokens before the answer ends."""
        if self.stop_reason is not None:
            return
        try:
            answer = self._answer(self._instruction, image, partial, partial=True)
            self._pipeline.deliver(answer, to_follow=False, record=False)
        except Exception as error:  # noqa: BLE001 - a lost early publication must not lose the answer
            self._pipeline.logger.warning(f"early mask not published: {error!r}")


class FollowJob(_CameraFrameJob):
    """Follow ``target`` on one newer frame and publish the followed masks."""

    kind = JobKind.FOLLOW

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
            recover_from_failure(pipeline, error)
            return
        if self.stop_reason is not None:
            return  # a goal or a reasoning step took over
        problem = self._settings.follow.problem(drifts)
        if problem is not None:
            pipeline.on_follow_degraded(target, problem)
            return
        origin = Followed(reasoned_header=target.header, drifts=drifts)
        answer = self._answer(target.instruction, image, followed, origin)
        pipeline.deliver(answer, to_follow=False, record=False)


def recover_from_failure(pipeline: Pipeline, error: Exception) -> str:
    """Log an inference failure, free what memory can be freed, and return a message for the
    user."""
    if isinstance(error, LisaOutOfMemoryError):
        message = str(error)  # already says what to do
    else:
        message = f"inference failed: {type(error).__name__}: {error}"
    pipeline.logger.error(message)
    pipeline.model.free_memory()
    return message
