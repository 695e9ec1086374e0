"""The node's health as diagnostic_msgs, for /diagnostics (rqt_robot_monitor,
diagnostic_aggregator).

Errors on topics have no caller to answer (a bad camera frame, an unusable standing instruction),
so they go to the log and to a diagnostic that says what went wrong; the status stays WARN for a
while after the last such error and returns to OK by itself. A model that failed to load is an
ERROR until a configure succeeds.

A depth stream that delivered and then went silent is a WARN too (the answers go on, 2D only):
a grasp planner waiting for 3D targets should learn why none come.

Recording answered frames (parameter ``record_dir``) shows its folder, the samples written, those
dropped because the disk fell behind, those whose write failed, and the last error; while writes
to the folder fail the status is WARN with that error (the answers go on).

``model`` is the model actually loaded (empty when none is), not the parameter: after
``ros2 param set /lisa model ...`` the old model serves until the next configure, and
``pending_parameters`` says which model parameters are waiting for it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

from .recording import RecorderStats
from .scheduler import SchedulerStats

__all__ = ["Health", "HealthSnapshot"]

WARN_SECONDS = 10.0  # how long a topic input error keeps the status at WARN
DEPTH_SILENT_SECONDS = 2.0  # a depth stream quiet for longer than this is reported missing


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


class Health:
    """Remembers the last errors; turns a snapshot of the node into a DiagnosticArray."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._load_error: str | None = None
        self._input_error: tuple[float, str] | None = None
        self._errors_total = 0

    def set_load_error(self, message: str | None) -> None:
        with self._lock:
            self._load_error = message

    @property
    def load_error(self) -> str | None:
        with self._lock:
            return self._load_error

    def input_error(self, message: str) -> None:
        with self._lock:
            self._input_error = (self._clock(), message)
            self._errors_total += 1

    def diagnostics(self, snapshot: HealthSnapshot, stamp: Time) -> DiagnosticArray:
        level, message = self._level_and_message(snapshot)
        values = {
            "lifecycle_state": snapshot.lifecycle_state,
            "model": snapshot.model,
            "pending_parameters": ", ".join(snapshot.pending_parameters),
            "device": snapshot.device,
            "standing_instruction": snapshot.instruction or "",
            "input_errors_total": str(self._errors_total),
        }
        if snapshot.stats is not None:
            values.update(
                frames_received=str(snapshot.stats.frames_received),
                frames_processed=str(snapshot.stats.frames_processed),
                frames_dropped=str(snapshot.stats.frames_dropped),
                goals_waiting=str(snapshot.stats.goals_waiting),
                running=snapshot.stats.running,
                frames_followed=str(snapshot.stats.frames_followed),
            )
            values["last_answer"] = "followed" if snapshot.last_followed else "reasoned"
            values["reasoning_age_s"] = f"{snapshot.last_reasoning_age:.3f}"
        if snapshot.last_inference_seconds is not None:
            values["last_inference_seconds"] = f"{snapshot.last_inference_seconds:.3f}"
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
            if self._input_error is not None:
                values["last_input_error"] = self._input_error[1]
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
            if (
                self._input_error is not None
                and self._clock() - self._input_error[0] < WARN_SECONDS
            ):
                return DiagnosticStatus.WARN, self._input_error[1]
        recording = snapshot.recording
        if recording is not None and recording.failing and recording.folder:
            return DiagnosticStatus.WARN, recording.last_error
        silence = snapshot.depth_silence_s
        if snapshot.lifecycle_state == "active" and silence is not None:
            if silence > DEPTH_SILENT_SECONDS:
                return DiagnosticStatus.WARN, (
                    f"depth missing: no depth image for {silence:.1f} s; answers go on without "
                    "3D targets (is the depth stream running?)"
                )
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
