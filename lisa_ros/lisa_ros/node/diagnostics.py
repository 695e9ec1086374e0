"""The node's health as diagnostic_msgs, for /diagnostics (rqt_robot_monitor,
diagnostic_aggregator).

Errors on topics have no caller to answer (a bad camera frame, a depth image or camera_info that
cannot place masks in 3D, an unusable standing instruction), so they go to the log and to a
diagnostic that says what went wrong. Each has a *cause* ("image", "depth", "camera_info",
"instruction"). One problem of a cause is logged at most once per ``LOG_REPEAT_SECONDS`` (a
broken camera at 30 Hz must not flood the log); messages that differ only in their numbers, e.g.
a depth image "0.061 s away" and then "0.083 s away", are one problem, while another problem of
the same stream is logged at once. The status stays WARN for ``WARN_SECONDS`` after a cause's
last error, saying the latest reason of every cause, then returns to OK by itself. A model that
failed to load is an ERROR until a configure succeeds.

A colour stream that delivered and then went silent is a WARN ("no image for N s": goals without
an image of their own get NO_IMAGE once the frame is older than ``max_frame_age_s``), and so is a
depth stream that went silent while colour goes on (the answers go on, 2D only): a grasp planner
waiting for 3D targets should learn why none come.

The counters say what happened to each camera frame (``frames_received`` = reasoned + followed +
dropped because the inference thread was busy + unused, as no work wanted them, + the newest) and
how every goal ended (``goals_succeeded``/``aborted``/``canceled``/``rejected``, and per result
code in ``goal_results``).

Recording answered frames (parameter ``record_dir``) shows its folder, the samples written, those
dropped because the disk fell behind, those whose write failed, and the last error; while writes
to the folder fail the status is WARN with that error (the answers go on).

``model`` and ``adapter`` are those actually loaded (empty when none is), not the parameters:
after ``ros2 param set /lisa model ...`` the old model serves until the next configure, and
``pending_parameters`` says which model parameters are waiting for it.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Callable

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from .recording import RecorderStats
from .scheduler import SchedulerStats

__all__ = ["Health", "HealthSnapshot"]

WARN_SECONDS = 10.0  # how long a topic input error keeps the status at WARN
LOG_REPEAT_SECONDS = 10.0  # a cause of input errors is logged at most this often
DEPTH_SILENT_SECONDS = 2.0  # a depth stream quiet for longer than this is reported missing
IMAGE_SILENT_SECONDS = 2.0  # a colour stream quiet for longer than this is reported stopped
_NUMBER = re.compile(r"\d+(?:\.\d+)?")  # what varies from frame to frame in one problem's message


@dataclass(frozen=True)
class HealthSnapshot:
    lifecycle_state: str
    model: str  # the loaded model ("" when none is loaded)
    pending_parameters: list[str]  # model parameters changed since the load (apply on configure)
    device: str
    instruction: str | None
    stats: SchedulerStats | None
    last_inference_seconds: float | None
    depth_silence_s: float | None = None  # since the last depth image; None: none since activation
    last_followed: bool = False  # the last published answer was followed, not reasoned
    last_reasoning_age: float = 0.0  # age of the reasoning it rested on (s)
    recording: RecorderStats | None = None  # the answer recorder (parameter record_dir)
    adapter: str = ""  # the loaded adapter ("" when none is)
    image_silence_s: float | None = None  # since the last colour image; None: none since activation
    goal_outcomes: Mapping[str, int] = field(default_factory=dict)  # "succeeded" -> count, ...
    goal_results: Mapping[str, int] = field(default_factory=dict)  # result code name -> count


class Health:
    """Remembers the last errors; turns a snapshot of the node into a DiagnosticArray."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._load_error: str | None = None
        # cause -> (when, latest message), the cause reported last at the end
        self._input_errors: dict[str, tuple[float, str]] = {}
        self._logged: dict[tuple[str, str], float] = {}  # (cause, problem) -> when last logged
        self._errors_total = 0

    def set_load_error(self, message: str | None) -> None:
        with self._lock:
            self._load_error = message

    @property
    def load_error(self) -> str | None:
        with self._lock:
            return self._load_error

    def input_error(self, cause: str, message: str) -> bool:
        """Remember an error of topic input; return whether to log it (the first time in
        ``LOG_REPEAT_SECONDS`` that this problem of ``cause`` is seen)."""
        problem = (cause, _NUMBER.sub("#", message))
        with self._lock:
            now = self._clock()
            self._input_errors.pop(cause, None)
            self._input_errors[cause] = (now, message)
            self._errors_total += 1
            if now - self._logged.get(problem, -math.inf) < LOG_REPEAT_SECONDS:
                return False
            self._logged = {
                key: when for key, when in self._logged.items() if now - when < LOG_REPEAT_SECONDS
            }
            self._logged[problem] = now
            return True

    def diagnostics(self, snapshot: HealthSnapshot, stamp: Time) -> DiagnosticArray:
        level, message = self._level_and_message(snapshot)
        values = {
            "lifecycle_state": snapshot.lifecycle_state,
            "model": snapshot.model,
            "adapter": snapshot.adapter,
            "pending_parameters": ", ".join(snapshot.pending_parameters),
            "device": snapshot.device,
            "standing_instruction": snapshot.instruction or "",
            "input_errors_total": str(self._errors_total),
        }
        if snapshot.stats is not None:
            values.update(
                frames_received=str(snapshot.stats.frames_received),
                frames_reasoned=str(snapshot.stats.frames_reasoned),
                frames_followed=str(snapshot.stats.frames_followed),
                frames_dropped_busy=str(snapshot.stats.frames_dropped_busy),
                frames_unused=str(snapshot.stats.frames_unused),
                goals_waiting=str(snapshot.stats.goals_waiting),
                running=snapshot.stats.running,
            )
            values["last_answer"] = "followed" if snapshot.last_followed else "reasoned"
            values["reasoning_age_s"] = f"{snapshot.last_reasoning_age:.3f}"
            # Achieved rates over the scheduler's RATE_WINDOW_SECONDS (reasoning_share at work).
            values["reasoned_hz"] = f"{snapshot.stats.reasoned_hz:.2f}"
            values["followed_hz"] = f"{snapshot.stats.followed_hz:.2f}"
        if snapshot.last_inference_seconds is not None:
            values["last_inference_seconds"] = f"{snapshot.last_inference_seconds:.3f}"
        for outcome in ("succeeded", "aborted", "canceled", "rejected"):
            values[f"goals_{outcome}"] = str(snapshot.goal_outcomes.get(outcome, 0))
        values["goal_results"] = ", ".join(
            f"{code}: {count}" for code, count in sorted(snapshot.goal_results.items())
        )
        if snapshot.image_silence_s is not None:
            values["seconds_since_image"] = f"{snapshot.image_silence_s:.3f}"
        if snapshot.depth_silence_s is not None:
            values["seconds_since_depth"] = f"{snapshot.depth_silence_s:.3f}"
        if snapshot.recording is not None:
            recording = snapshot.recording
            values.update(
                record_dir=recording.folder,
                frames_recorded=str(recording.recorded),
                frames_record_dropped=str(recording.dropped),
                frames_record_failed=str(recording.failed),
                last_record_error=recording.last_error,
            )
        with self._lock:
            if self._load_error:
                values["load_error"] = self._load_error
            if self._input_errors:  # the latest of any cause
                values["last_input_error"] = next(reversed(self._input_errors.values()))[1]
        status = DiagnosticStatus(
            level=level,
            name=self._name,
            message=message,
            hardware_id=snapshot.device,
            values=[KeyValue(key=key, value=value) for key, value in values.items()],
        )
        return DiagnosticArray(header=Header(stamp=stamp), status=[status])

    def _level_and_message(self, snapshot: HealthSnapshot) -> tuple[bytes, str]:
        with self._lock:
            if self._load_error and snapshot.lifecycle_state == "unconfigured":
                return DiagnosticStatus.ERROR, f"model not loaded: {self._load_error}"
        warnings = self._recent_input_errors() + self._stream_warnings(snapshot)
        recording = snapshot.recording
        if recording is not None and recording.failing and recording.folder:
            warnings.append(recording.last_error)
        if snapshot.stats is not None and snapshot.stats.starvation:
            warnings.append(snapshot.stats.starvation)  # reasoning takes the whole thread
        if warnings:
            return DiagnosticStatus.WARN, "; ".join(warnings)
        if snapshot.lifecycle_state != "active":
            message = f"{snapshot.lifecycle_state}: not processing"
        elif snapshot.instruction:
            message = f"segmenting '{snapshot.instruction}' continuously"
        else:
            message = "active: waiting for goals or a standing instruction"
        if snapshot.pending_parameters:
            message += (
                f"; {', '.join(snapshot.pending_parameters)} changed: applies on the next cleanup "
                "and configure"
            )
        return DiagnosticStatus.OK, message

    def _recent_input_errors(self) -> list[str]:
        """The latest message of every cause of input errors within WARN_SECONDS, newest first."""
        with self._lock:
            now = self._clock()
            recent = [
                (when, msg)
                for when, msg in self._input_errors.values()
                if now - when < WARN_SECONDS
            ]
        return [message for _, message in sorted(recent, reverse=True)]

    @staticmethod
    def _stream_warnings(snapshot: HealthSnapshot) -> list[str]:
        """A camera that stopped: colour first (depth stops with it), else depth alone."""
        if snapshot.lifecycle_state != "active":
            return []
        image, depth = snapshot.image_silence_s, snapshot.depth_silence_s
        if image is not None and image > IMAGE_SILENT_SECONDS:
            return [
                f"no image for {image:.1f} s: the camera stopped (is the image topic still "
                "published?); goals on its last frame get NO_IMAGE past max_frame_age_s"
            ]
        if depth is not None and depth > DEPTH_SILENT_SECONDS:
            return [
                f"depth missing: no depth image for {depth:.1f} s; answers go on without 3D "
                "targets (is the depth stream running?)"
            ]
        return []
