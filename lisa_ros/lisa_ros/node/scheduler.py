"""What the single inference thread does next: waiting goals first, then the newest camera frame.

The model is not thread-safe and a GPU runs one generation at a time, so the node has exactly one
inference thread. This module decides what it runs, and keeps every queue bounded by design:

- Camera frames are never queued. A new frame replaces the previous one; one never looked at
  counts as dropped when the inference thread was busy while continuous mode or following wanted
  frames, and as unused otherwise (no standing instruction, or ``max_rate_hz`` not due yet).
  Continuous mode takes the newest frame, at most ``max_rate_hz`` times per second, only while a
  standing instruction is set.
- Goals are admitted by the busy policy (queue up to N / reject / preempt) before they are
  accepted, so a goal the node cannot serve is refused up front instead of piling up.
- Goals always take precedence over continuous-mode frames: a frame inference running when a goal
  arrives is stopped (its result would only be superseded by the next frame anyway).
- Between reasoned frames, frames are *followed* (the last answer's [SEG] prompts decoded again by
  SAM on the new frame) at most ``follow_rate_hz`` times per second, while a follow target is set.
  Following comes after goals and after a reasoning step that is due, and a follow starts only
  when it can end (judged by the last follow's duration) before the next reasoning step is due,
  so following never delays reasoning. Only the newest frame is ever followed: frames that
  arrive during a reasoning step are replaced, not followed late. :meth:`request_reasoning` (the
  followed masks degraded) and a new instruction make the next frame a reasoned one at once.
- *Reasoning's share*: on hardware where a reasoning step takes longer than ``1/max_rate_hz``,
  reasoning would always be due and no follow would ever fit, which is exactly where following is
  needed. So while following is on, a reasoning step that took ``d`` seconds reserves the time up
  to ``d / reasoning_share`` after its start for following: the next reasoning step waits for the
  reservation's end, and a follow may start at any moment inside it (even one that will run past
  it: the reserved time is following's). Reasoning then keeps about ``reasoning_share`` of the
  thread's time and followed frames flow in the rest, at whatever rate the hardware allows, up
  to ``follow_rate_hz``. A wall-clock share (rather than a number of follows per reasoning step)
  adapts by itself to how long both take, and needs no tuning per machine; when reasoning is fast
  enough for ``max_rate_hz``, the reservation has ended before the step is due and changes
  nothing. ``reasoning_share`` 1 is reasoning first, as before the share existed.
  :meth:`request_reasoning` waives the reservation too: the followed masks no longer hold, so
  following has nothing left to publish until the next answer; it cannot starve following
  either, since only a follow can ask for it (at least one follow runs between two steps).
- The achieved reasoning and follow rates over the last ``RATE_WINDOW_SECONDS`` are in
  :class:`SchedulerStats`, with a reason when following is starved: while following was on,
  reasoning steps ran and new frames came, but not one was followed in the window. (Following
  cannot starve reasoning: a follow never starts while a reasoning step is due.)
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

__all__ = [
    "BUSY_POLICIES",
    "DEFAULT_REASONING_SHARE",
    "RATE_WINDOW_SECONDS",
    "Job",
    "JobKind",
    "SchedulerStats",
    "StopReason",
    "WorkScheduler",
]

TargetT = TypeVar("TargetT")

FrameT = TypeVar("FrameT")

RESERVATION_SECONDS = 10.0

# The window of the achieved rates (and of the starvation check) in SchedulerStats: long enough to
# hold several reasoning steps of a slow GPU, short enough to show a change of rate soon.
RATE_WINDOW_SECONDS = 10.0

# Reasoning's share of the inference thread while following is on (the node's reasoning_share).
DEFAULT_REASONING_SHARE = 0.5

# What a goal arriving while another goal runs gets (see WorkScheduler.admit); the node's
# busy_policy parameter offers exactly these.
BUSY_POLICIES = ("queue", "reject", "preempt")


class StopReason(Enum):
    """Why a job was stopped before it completed (the node maps these to action error codes)."""

    CANCELED = "canceled"  # the goal's client cancelled it
    PREEMPTED = "preempted"  # a newer goal took its place (busy_policy "preempt")
    SUPERSEDED = "superseded"  # a continuous-mode frame gave way to a goal
    DEACTIVATED = "deactivated"  # the node was deactivated or cleaned up


class JobKind(Enum):
    """What a job is, for the scheduler's order and its reasoning/following share."""

    GOAL = "goal"  # a Segment action goal
    FRAME = "frame"  # a camera frame reasoned with the standing instruction
    FOLLOW = "follow"  # a camera frame on which the last answer's targets are followed


class Job(Protocol):
    """A unit of work for the inference thread."""

    kind: JobKind

    def request_stop(self, reason: StopReason) -> None:
        """Ask the job to stop as soon as it can (within one decoding step while generating)."""

    def run(self) -> None:
        """Run the job (or, when it was stopped before it started, just report why)."""


@dataclass(frozen=True)
class SchedulerStats:
    frames_received: int
    frames_dropped_busy: int  # replaced unseen while a job ran and frames were wanted
    frames_reasoned: int  # continuous mode: the full model ran on them (goals: by outcome)
    goals_waiting: int
    running: str  # "idle", "goal", "frame" or "follow"
    frames_followed: int = 0  # followed (SAM alone, with the last answer's prompts)
    frames_unused: int = 0  # replaced unseen while nothing wanted them (idle, max_rate_hz)
    reasoned_hz: float = 0.0  # reasoning steps started per second over RATE_WINDOW_SECONDS
    followed_hz: float = 0.0  # follows started per second over RATE_WINDOW_SECONDS
    starvation: str = ""  # why following is starved by reasoning; "" when it is not


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
        # The inference thread waits with no timeout: only news (e.g. a frame) can give it work.
        self._consumer_awaits_news = False
        self._frame_seq = 0
        self._taken_seq = 0
        self._next_frame_time = float("-inf")
        self._frames_received = 0
        self._frames_dropped_busy = 0
        self._frames_unused = 0
        self._frames_reasoned = 0
        self._frames_followed = 0
        self._follow_target: TargetT | None = None
        self._follow_expires = float("inf")
        self._follow_rate_hz = 0.0
        self._next_follow_time = float("-inf")
        self._follow_seconds = 0.0  # how long the last follow took
        self._follow_started = 0.0
        self._reasoning_share = DEFAULT_REASONING_SHARE
        self._reasoning_started = 0.0
        self._reasoning_seconds = 0.0  # how long the last reasoning step took
        self._reserved_until = float("-inf")  # the time reserved for following (reasoning_share)
        self._resumed_at = clock()
        # Start times (and frame arrivals) within RATE_WINDOW_SECONDS, for the achieved rates.
        self._reasoning_starts: deque[float] = deque()
        self._follow_starts: deque[float] = deque()
        self._arrivals: deque[float] = deque()

    # --- producers: camera and standing instruction --------------------------------------------

    def offer_frame(self, frame: FrameT) -> None:
        """Make ``frame`` the newest one, replacing an older one (see the module docstring for
        how a frame never looked at is counted)."""
        with self._cond:
            if self._frame is not None and self._taken_seq < self._frame_seq:
                wanted = self._instruction is not None or self._following_allowed()
                if self._running is not None and wanted:
                    self._frames_dropped_busy += 1
                else:
                    self._frames_unused += 1
            self._frame = frame
            self._frame_seq += 1
            self._frames_received += 1
            self._arrivals.append(self._clock())
            self._prune_rate_windows()
            if self._frame_may_start_work():
                self._cond.notify_all()

    def _frame_may_start_work(self) -> bool:
        """Whether a new frame can give the waiting inference thread work. A camera's every
        frame waking it (30 a second, each a GIL hand-off) cost an idle node more than taking the
        frame: it is woken only when it waits for news and frames are wanted. A thread that is
        running a job, or waiting for a reasoning step or a follow to be due, looks at the newest
        frame when it comes back, whatever arrived meanwhile."""
        if not self._consumer_awaits_news or self._paused:
            return False
        return self._instruction is not None or self._following_allowed()

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
                self._reserved_until = float("-inf")
            self._instruction = instruction or None
            if instruction is None and self._running_kind() not in (None, JobKind.GOAL):
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

    def set_reasoning_share(self, share: float) -> None:
        """While following is on, reasoning keeps about this share of the inference thread's time
        (0 < share <= 1; 1: reasoning first, following gets only the time reasoning leaves)."""
        with self._cond:
            if not 0 < share <= 1:
                raise ValueError(f"reasoning_share must be in (0, 1], got {share}")
            self._reasoning_share = share
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
        """Reason on the next frame at once (the followed masks no longer hold), waiving both
        ``max_rate_hz`` and the time reserved for following."""
        with self._cond:
            self._next_frame_time = float("-inf")
            self._reserved_until = float("-inf")
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
            goals = 1 if self._running_kind() is JobKind.GOAL else 0
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
                if self._running_kind() is JobKind.GOAL:
                    self._running.request_stop(StopReason.PREEMPTED)
            if self._paused:
                job.request_stop(StopReason.DEACTIVATED)
                self._finish.append(job)
            else:
                self._goals.append(job)
                if self._running_kind() not in (None, JobKind.GOAL):
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

    def _running_kind(self) -> JobKind | None:
        """The kind of the job the inference thread runs (None: none); under ``self._cond``."""
        return None if self._running is None else self._running.kind

    def goals_ahead_of(self, job: Job) -> int:
        """How many goals run before ``job`` (the running one included); 0 when it runs."""
        with self._cond:
            if job is self._running:
                return 0
            ahead = 1 if self._running_kind() is JobKind.GOAL else 0
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
            self._reserved_until = float("-inf")
            self._resumed_at = self._clock()
            for starts in (self._reasoning_starts, self._follow_starts, self._arrivals):
                starts.clear()
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
                awaits_news = wait is None
                if deadline is not None:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._consumer_awaits_news = awaits_news
                try:
                    self._cond.wait(wait)
                finally:
                    self._consumer_awaits_news = False

    def job_done(self, job: Job) -> None:
        """Called by the inference thread when ``job`` has finished."""
        with self._cond:
            if self._running is job:
                now = self._clock()
                if job.kind is JobKind.FOLLOW:
                    self._follow_seconds = now - self._follow_started
                elif job.kind is JobKind.FRAME:
                    self._reasoning_seconds = now - self._reasoning_started
                    share = self._reasoning_share
                    self._reserved_until = self._reasoning_started + self._reasoning_seconds / share
                self._running = None
            self._cond.notify_all()

    def stats(self) -> SchedulerStats:
        with self._cond:
            running = "idle"
            if self._running is not None:
                running = self._running.kind.value
            return SchedulerStats(
                frames_received=self._frames_received,
                frames_dropped_busy=self._frames_dropped_busy,
                frames_reasoned=self._frames_reasoned,
                frames_unused=self._frames_unused,
                goals_waiting=len(self._goals),
                running=running,
                frames_followed=self._frames_followed,
                **self._achieved_rates(),
            )

    def _achieved_rates(self) -> dict[str, float | str]:
        """Reasoning steps and follows started per second over the rate window, and why
        following is starved, if it is."""
        self._prune_rate_windows()
        span = min(RATE_WINDOW_SECONDS, self._clock() - self._resumed_at)
        if span <= 0:
            return {}
        reasoned, followed = len(self._reasoning_starts), len(self._follow_starts)
        starvation = ""
        # Starved: following is on, reasoning steps ran (two: the window saw one end and another
        # start) and frames came that were not reasoned, but none was followed.
        if (
            self._following_allowed()
            and self._instruction is not None
            and reasoned >= 2
            and followed == 0
            and len(self._arrivals) > reasoned
        ):
            starvation = (
                f"following starved: {reasoned} reasoning steps of {self._reasoning_seconds:.1f} s "
                f"and not one followed frame in the last {span:.0f} s (reasoning_share "
                f"{self._reasoning_share:g}; lower it, or max_rate_hz)"
            )
        return {
            "reasoned_hz": reasoned / span,
            "followed_hz": followed / span,
            "starvation": starvation,
        }

    def _prune_rate_windows(self) -> None:
        start = self._clock() - RATE_WINDOW_SECONDS
        for times in (self._reasoning_starts, self._follow_starts, self._arrivals):
            while times and times[0] < start:
                times.popleft()

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
            self._frames_reasoned += 1
            period = 1.0 / self._max_rate_hz if self._max_rate_hz > 0 else 0.0
            now = self._clock()
            self._next_frame_time = now + period  # start to start
            self._reasoning_started = now
            self._reasoning_starts.append(now)
            assert self._frame is not None and self._instruction is not None
            return self._frame_job(self._frame, self._instruction)
        if self._follow_due():
            assert self._frame is not None and self._follow_job is not None
            self._taken_seq = self._frame_seq
            self._frames_followed += 1
            now = self._clock()
            self._follow_started = now
            self._follow_starts.append(now)
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
        return now >= self._next_follow_time and self._follow_fits(now)

    def _follow_fits(self, start: float) -> bool:
        """Whether a follow starting at ``start`` leaves the next reasoning step on time: it ends
        before the step is due (when one is coming at all), or starts in the time reserved for
        following."""
        if self._instruction is None or start < self._reserved_until:
            return True
        return start + self._follow_seconds <= self._reasoning_due_at()

    def _reasoning_due_at(self) -> float:
        """When the next reasoning step may start: ``max_rate_hz``'s period after the last one
        and, while following is on, after the time reserved for following."""
        if self._following_allowed():
            return max(self._next_frame_time, self._reserved_until)
        return self._next_frame_time

    def _frame_pending(self) -> bool:
        return (
            self._instruction is not None
            and self._frame is not None
            and self._taken_seq < self._frame_seq
        )

    def _frame_due(self) -> bool:
        return self._frame_pending() and self._clock() >= self._reasoning_due_at()

    def _seconds_until_frame_due(self) -> float | None:
        """Seconds until a pending frame may run (reasoned or followed); None when no frame is
        waiting (wait for news)."""
        if self._paused or self._frame is None or self._taken_seq >= self._frame_seq:
            return None
        now = self._clock()
        waits = []
        if self._instruction is not None:
            waits.append(self._reasoning_due_at() - now)
        if self._following_allowed():
            follow_at = max(now, self._next_follow_time)
            # A follow that cannot end before the next reasoning step will not fit later either:
            # then the reasoning step is what to wait for (waiting 0 here would spin).
            if self._follow_fits(follow_at):
                waits.append(follow_at - now)
            if self._follow_expires < math.inf:
                waits.append(self._follow_expires - now)
        if not waits:
            return None
        return max(0.0, min(waits))
