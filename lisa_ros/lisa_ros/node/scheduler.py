"""What the single inference thread does next: waiting goals first, then the newest camera frame.

The model is not thread-safe and a GPU runs one generation at a time, so the node has exactly one
inference thread. This module decides what it runs, and keeps every queue bounded by design:

- Camera frames are never queued. A new frame replaces the previous one (which counts as dropped
  when it was never processed); continuous mode takes the newest frame, at most ``max_rate_hz``
  times per second, only while a standing instruction is set.
- Goals are admitted by the busy policy (queue up to N / reject / preempt) before they are
  accepted, so a goal the node cannot serve is refused up front instead of piling up.
- Goals always take precedence over continuous-mode frames: a frame inference running when a goal
  arrives is stopped (its result would only be superseded by the next frame anyway).
- Between reasoned frames, frames are *followed* (the last answer's [SEG] prompts decoded again by
  SAM on the new frame) at most ``follow_rate_hz`` times per second, while a follow target is set.
  Following comes last: after goals and after a reasoning step that is due, and a follow starts
  only when it can end (judged by the last follow's duration) before the next reasoning step is
  due, so following never delays reasoning. Only the newest frame is ever followed: frames that
  arrive during a reasoning step are replaced, not followed late. :meth:`request_reasoning` (the
  followed masks degraded) and a new instruction make the next frame a reasoned one at once.
- Goals stopped by a preemption or a deactivation are handed back to the inference thread on a
  separate "finish" list, ahead of any waiting goal; the running job they wait for stops within one
  decoding step. A cancelled *waiting* goal is taken out and finished by the caller of
  :meth:`WorkScheduler.stop` at once, so a cancel is answered even during a long generation.

ROS-free and model-free: jobs are any objects with the small :class:`Job` interface.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Generic, Hashable, Protocol, TypeVar

__all__ = ["BUSY_POLICIES", "Job", "SchedulerStats", "StopReason", "WorkScheduler"]

TargetT = TypeVar("TargetT")

FrameT = TypeVar("FrameT")

RESERVATION_SECONDS = 10.0

# What a goal arriving while another goal runs gets (see WorkScheduler.admit); the node's
# busy_policy parameter offers exactly these.
BUSY_POLICIES = ("queue", "reject", "preempt")


class StopReason(Enum):
    """Why a job was stopped before it completed (the node maps these to action error codes)."""

    CANCELED = "canceled"  # the goal's client cancelled it
    PREEMPTED = "preempted"  # a newer goal took its place (busy_policy "preempt")
    SUPERSEDED = "superseded"  # a continuous-mode frame gave way to a goal
    DEACTIVATED = "deactivated"  # the node was deactivated or cleaned up


class Job(Protocol):
    """A unit of work for the inference thread."""

    is_goal: bool

    def request_stop(self, reason: StopReason) -> None:
        """Ask the job to stop as soon as it can (within one decoding step while generating)."""

    def run(self) -> None:
        """Run the job (or, when it was stopped before it started, just report why)."""


@dataclass(frozen=True)
class SchedulerStats:
    frames_received: int
    frames_dropped: int  # replaced by a newer frame before any inference looked at them
    frames_processed: int  # reasoned (the full model ran on them)
    goals_waiting: int
    running: str  # "idle", "goal", "frame" or "follow"
    frames_followed: int = 0  # followed (SAM alone, with the last answer's prompts)


class WorkScheduler(Generic[FrameT]):
    """Thread-safe hand-off between ROS callbacks (producers) and the inference thread (consumer).

    Args:
        frame_job: builds the job that segments ``frame`` with the standing ``instruction``.
        follow_job: builds the job that follows ``target`` (set by :meth:`set_follow_target`) on
            ``frame``; None: frames are never followed.
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        frame_job: Callable[[FrameT, str], Job],
        follow_job: Callable[[FrameT, TargetT], Job] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._frame_job = frame_job
        self._follow_job = follow_job
        self._clock = clock
        self._cond = threading.Condition()
        self._goals: deque[Job] = deque()
        self._finish: deque[Job] = deque()  # stopped before they ran; completed first
        self._reserved: dict[Hashable, float] = {}  # admitted goals not submitted yet
        self._running: Job | None = None
        self._paused = True
        self._closed = False
        self._instruction: str | None = None
        self._max_rate_hz = 0.0
        self._frame: FrameT | None = None
        self._frame_seq = 0
        self._taken_seq = 0
        self._next_frame_time = float("-inf")
        self._frames_received = 0
        self._frames_dropped = 0
        self._frames_processed = 0
        self._frames_followed = 0
        self._follow_target: TargetT | None = None
        self._follow_expires = float("inf")
        self._follow_rate_hz = 0.0
        self._next_follow_time = float("-inf")
        self._follow_seconds = 0.0  # how long the last follow took
        self._follow_started = 0.0

    # --- producers: camera and standing instruction --------------------------------------------

    def offer_frame(self, frame: FrameT) -> None:
        """Make ``frame`` the newest one; an older frame that was never processed is dropped."""
        with self._cond:
            if self._frame is not None and self._taken_seq < self._frame_seq:
                self._frames_dropped += 1
            self._frame = frame
            self._frame_seq += 1
            self._frames_received += 1
            self._cond.notify_all()

    def latest_frame(self) -> FrameT | None:
        """The newest frame received (processed or not), for goals without an image."""
        with self._cond:
            return self._frame

    def forget_frame(self) -> None:
        """Drop the newest frame (it would be stale after a pause)."""
        with self._cond:
            self._frame = None
            self._taken_seq = self._frame_seq

    def set_instruction(self, instruction: str | None) -> None:
        """Set the standing instruction for continuous mode; None stops continuous mode. A new
        instruction is reasoned on the next frame, whatever ``max_rate_hz`` says."""
        with self._cond:
            if (instruction or None) != self._instruction:
                self._next_frame_time = float("-inf")
            self._instruction = instruction or None
            if instruction is None and self._running is not None and not self._running.is_goal:
                self._running.request_stop(StopReason.SUPERSEDED)
            self._cond.notify_all()

    @property
    def instruction(self) -> str | None:
        with self._cond:
            return self._instruction

    def set_max_rate(self, max_rate_hz: float) -> None:
        """At most this many continuous-mode inferences start per second; 0: no limit."""
        with self._cond:
            if max_rate_hz < 0:
                raise ValueError(f"max_rate_hz must be >= 0, got {max_rate_hz}")
            self._max_rate_hz = max_rate_hz
            self._cond.notify_all()

    def set_follow_rate(self, follow_rate_hz: float) -> None:
        """At most this many followed frames start per second; 0: frames are never followed."""
        with self._cond:
            if follow_rate_hz < 0:
                raise ValueError(f"follow_rate_hz must be >= 0, got {follow_rate_hz}")
            self._follow_rate_hz = follow_rate_hz
            self._cond.notify_all()

    def set_follow_target(self, target: TargetT | None, seconds: float | None = None) -> None:
        """Follow ``target`` on the frames between reasoning steps, for ``seconds`` (None: until
        it is replaced or cleared); None stops following."""
        with self._cond:
            self._follow_target = target
            self._follow_expires = self._clock() + seconds if seconds is not None else math.inf
            self._cond.notify_all()

    @property
    def follow_target(self) -> TargetT | None:
        with self._cond:
            return self._follow_target if self._following_allowed() else None

    def request_reasoning(self) -> None:
        """Reason on the next frame at once (the followed masks no longer hold)."""
        with self._cond:
            self._next_frame_time = float("-inf")
            self._cond.notify_all()

    # --- producers: goals ------------------------------------------------------------------------

    def admit(self, policy: str, max_queued: int, key: Hashable) -> str | None:
        """Decide whether a new goal may be accepted; return why not, or None.

        An admitted goal holds a slot under ``key`` until it is passed to :meth:`submit` or
        :meth:`release`. Slots not claimed within ``RESERVATION_SECONDS`` (the client vanished
        between acceptance and execution) are freed, so they can never block the node for good.
        """
        if policy not in BUSY_POLICIES:
            raise ValueError(f"unknown busy policy {policy!r}")
        with self._cond:
            self._expire_reservations()
            goals = 1 if self._running is not None and self._running.is_goal else 0
            goals += len(self._goals) + len(self._reserved)
            if policy == "reject" and goals > 0:
                return "the node is busy with another goal (busy_policy 'reject'): retry later"
            if policy == "queue" and goals > max_queued:
                return (
                    f"{max_queued} goal(s) already wait behind the running one "
                    f"(busy_policy 'queue', max_queued_goals={max_queued}): retry later"
                )
            self._reserved[key] = self._clock()
            return None

    def release(self, key: Hashable) -> None:
        """Free the slot :meth:`admit` reserved under ``key`` (no-op when there is none)."""
        with self._cond:
            self._reserved.pop(key, None)

    def submit(self, job: Job, key: Hashable = None, *, preempt: bool = False) -> bool:
        """Queue a goal (claiming its slot ``key``); with ``preempt``, stop the other goals first.

        Returns False when the scheduler is closed (no inference thread will run the job).
        """
        with self._cond:
            self._reserved.pop(key, None)
            if self._closed:
                return False
            if preempt:
                for waiting in self._goals:
                    waiting.request_stop(StopReason.PREEMPTED)
                    self._finish.append(waiting)
                self._goals.clear()
                if self._running is not None and self._running.is_goal:
                    self._running.request_stop(StopReason.PREEMPTED)
            if self._paused:
                job.request_stop(StopReason.DEACTIVATED)
                self._finish.append(job)
            else:
                self._goals.append(job)
                if self._running is not None and not self._running.is_goal:
                    self._running.request_stop(StopReason.SUPERSEDED)
            self._cond.notify_all()
            return True

    def stop(self, job: Job, reason: StopReason) -> bool:
        """Stop ``job`` wherever it is: running (stops within a decoding step) or waiting.

        Returns True when ``job`` was waiting: it is then out of the scheduler and the caller
        finishes it (``job.run()`` only reports the stop), instead of it waiting behind the
        running generation.
        """
        with self._cond:
            job.request_stop(reason)
            if job not in self._goals:
                return False
            self._goals.remove(job)
            self._cond.notify_all()
            return True

    def goals_ahead_of(self, job: Job) -> int:
        """How many goals run before ``job`` (the running one included); 0 when it runs."""
        with self._cond:
            if job is self._running:
                return 0
            ahead = 1 if self._running is not None and self._running.is_goal else 0
            for index, waiting in enumerate(self._goals):
                if waiting is job:
                    return ahead + index
            return 0

    # --- lifecycle ---------------------------------------------------------------------------

    def resume(self) -> None:
        """Start handing out work (node activated)."""
        with self._cond:
            self._paused = False
            self._next_frame_time = float("-inf")
            self._cond.notify_all()

    def pause(self) -> None:
        """Stop handing out work (node deactivated): stop the running job, finish waiting goals."""
        with self._cond:
            self._paused = True
            if self._running is not None:
                self._running.request_stop(StopReason.DEACTIVATED)
            for waiting in self._goals:
                waiting.request_stop(StopReason.DEACTIVATED)
                self._finish.append(waiting)
            self._goals.clear()
            self._cond.notify_all()

    def close(self) -> None:
        """Pause for good: :meth:`next_job` returns None once the stopped jobs are finished."""
        with self._cond:
            self._closed = True
        self.pause()

    # --- consumer: the inference thread ------------------------------------------------------

    def next_job(self, timeout: float | None = None) -> Job | None:
        """Block until there is work and return it; None when closed (or after ``timeout`` s)."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                job = self._take_job()
                if job is not None:
                    self._running = job
                    return job
                if self._closed:
                    return None
                wait = self._seconds_until_frame_due()
                if deadline is not None:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)

    def job_done(self, job: Job) -> None:
        """Called by the inference thread when ``job`` has finished."""
        with self._cond:
            if self._running is job:
                if getattr(job, "is_follow", False):
                    self._follow_seconds = self._clock() - self._follow_started
                self._running = None
            self._cond.notify_all()

    def stats(self) -> SchedulerStats:
        with self._cond:
            running = "idle"
            if self._running is not None:
                running = "goal" if self._running.is_goal else "frame"
                if getattr(self._running, "is_follow", False):
                    running = "follow"
            return SchedulerStats(
                frames_received=self._frames_received,
                frames_dropped=self._frames_dropped,
                frames_processed=self._frames_processed,
                goals_waiting=len(self._goals),
                running=running,
                frames_followed=self._frames_followed,
            )

    def _expire_reservations(self) -> None:
        now = self._clock()
        for key in [
            key for key, since in self._reserved.items() if now - since > RESERVATION_SECONDS
        ]:
            del self._reserved[key]

    def _take_job(self) -> Job | None:
        if self._finish:
            return self._finish.popleft()
        if self._paused:
            return None
        if self._goals:
            return self._goals.popleft()
        if self._frame_due():
            self._taken_seq = self._frame_seq
            self._frames_processed += 1
            period = 1.0 / self._max_rate_hz if self._max_rate_hz > 0 else 0.0
            self._next_frame_time = self._clock() + period  # start to start
            assert self._frame is not None and self._instruction is not None
            return self._frame_job(self._frame, self._instruction)
        if self._follow_due():
            assert self._frame is not None and self._follow_job is not None
            self._taken_seq = self._frame_seq
            self._frames_followed += 1
            now = self._clock()
            self._follow_started = now
            self._next_follow_time = now + 1.0 / self._follow_rate_hz  # start to start
            return self._follow_job(self._frame, self._follow_target)
        return None

    def _following_allowed(self) -> bool:
        if self._follow_target is not None and self._clock() >= self._follow_expires:
            self._follow_target = None  # a goal's targets, followed for their time
        return (
            self._follow_job is not None
            and self._follow_target is not None
            and self._follow_rate_hz > 0
        )

    def _follow_due(self) -> bool:
        if not (self._following_allowed() and self._frame is not None):
            return False
        if self._taken_seq >= self._frame_seq:
            return False
        now = self._clock()
        if now < self._next_follow_time:
            return False
        # It must end before the next reasoning step is due (when one is coming at all).
        reasoning_coming = self._instruction is not None
        return not reasoning_coming or now + self._follow_seconds <= self._next_frame_time

    def _frame_pending(self) -> bool:
        return (
            self._instruction is not None
            and self._frame is not None
            and self._taken_seq < self._frame_seq
        )

    def _frame_due(self) -> bool:
        return self._frame_pending() and self._clock() >= self._next_frame_time

    def _seconds_until_frame_due(self) -> float | None:
        """Seconds until a pending frame may run (reasoned or followed); None when no frame is
        waiting (wait for news)."""
        if self._paused or self._frame is None or self._taken_seq >= self._frame_seq:
            return None
        now = self._clock()
        waits = []
        if self._instruction is not None:
            waits.append(self._next_frame_time - now)
        if self._following_allowed():
            follow_at = max(now, self._next_follow_time)
            # A follow that cannot end before the next reasoning step will not fit later either:
            # then the reasoning step is what to wait for (waiting 0 here would spin).
            if self._instruction is None or follow_at + self._follow_seconds <= (
                self._next_frame_time
            ):
                waits.append(follow_at - now)
            if self._follow_expires < math.inf:
                waits.append(self._follow_expires - now)
        if not waits:
            return None
        return max(0.0, min(waits))
