"""The ``~/segment`` action server: admits goals by the busy policy, checks them, hands them to
the inference thread, and ends each in the state its outcome calls for.

It exists in every lifecycle state: a goal sent to an unconfigured or inactive node is answered
at once with MODEL_NOT_READY and the reason, instead of waiting for a server that never comes.
The goal coroutine holds no executor thread while the inference thread works: it awaits a future
that the job completes.

Every goal ends through :meth:`SegmentActionServer._end`, which counts it (:class:`GoalTally`, shown
on /diagnostics) and logs each aborted goal in one line with its result code and message: the
client has the result, but whoever reads the node's log should see why goals fail too.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Generator
from typing import Any, Callable, Protocol

from lisa_ros_interfaces.action import Segment
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.task import Future

from .frames import Frame
from .goals import GoalError, GoalJob, GoalOutcome, goal_result, resolve_turn
from .jobs import JobSettings, Pipeline
from .scheduler import StopReason, WorkScheduler
from .sessions import SessionStore

__all__ = ["GoalHost", "GoalTally", "SegmentActionServer", "result_code_name"]

Result = Segment.Result

# Result code -> its name in Segment.action (SUCCESS, NO_IMAGE, ...), for logs and diagnostics.
_CODE_NAMES = {
    value: name
    for name in dir(Result)
    if name.isupper() and isinstance(value := getattr(Result, name), int)
}


def result_code_name(code: int) -> str:
    return _CODE_NAMES.get(code, str(code))


# How long a canceled goal may wait for rclpy to put it into CANCELING (it does so right after the
# cancel callback returns: microseconds); past it the goal is aborted rather than left open.
CANCEL_STATE_TIMEOUT = 2.0

# While goals run, their status is published again this often. rclpy publishes it on state changes
# only (accepted and executing come together, right after the goal response), and its action
# client drops a status that arrives before that goal's response, which travels on another topic:
# a client that lost the race knows the goal's status as UNKNOWN until the result, and
# `ros2 action send_goal` then ignores Ctrl-C for the whole answer. Published again, every client
# knows it within this period.
STATUS_REPUBLISH_PERIOD = 1.0


class GoalHost(Protocol):
    """What the action server needs from the node that serves the goals."""

    @property
    def scheduler(self) -> WorkScheduler[Frame] | None: ...

    @property
    def pipeline(self) -> Pipeline | None: ...

    @property
    def sessions(self) -> SessionStore: ...

    def is_active(self) -> bool: ...

    def not_ready_reason(self) -> str: ...

    def job_settings(self) -> JobSettings: ...

    def busy_policy(self) -> str: ...

    def max_queued_goals(self) -> int: ...


class GoalTally:
    """How goals ended: per outcome (succeeded, aborted, canceled, rejected) and per result code.

    A goal that succeeded may still have found nothing (NOTHING_FOUND): the codes tell.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._outcomes: Counter[str] = Counter()
        self._codes: Counter[str] = Counter()

    def count(self, outcome: str, code: int | None = None) -> None:
        with self._lock:
            self._outcomes[outcome] += 1
            if code is not None:
                self._codes[result_code_name(code)] += 1

    def outcomes(self) -> dict[str, int]:
        with self._lock:
            return dict(self._outcomes)

    def codes(self) -> dict[str, int]:
        with self._lock:
            return dict(self._codes)


class SegmentActionServer:
    """Serves ``~/segment`` goals of ``node`` (which is also the :class:`GoalHost`)."""

    def __init__(self, node: Node, host: GoalHost, callback_group: CallbackGroup) -> None:
        self._node = node
        self._host = host
        self.tally = GoalTally()
        self._jobs: dict[bytes, GoalJob] = {}  # goal id -> job, while the goal runs or waits
        self._jobs_lock = threading.Lock()
        self._server = ActionServer(  # the node destroys it with itself
            node,
            Segment,
            "~/segment",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=self._on_cancel,
            callback_group=callback_group,
            result_timeout=60,
        )
        node.create_timer(
            STATUS_REPUBLISH_PERIOD, self._republish_status, callback_group=callback_group
        )

    def _republish_status(self) -> None:
        """Publish the running goals' status again (see STATUS_REPUBLISH_PERIOD)."""
        with self._jobs_lock:
            running = bool(self._jobs)
        if running:
            # rclpy has no public call for it: this is what ActionServer does on a state change.
            self._server._handle.publish_status()

    def _on_goal(self, goal: Any) -> GoalResponse:
        scheduler = self._host.scheduler
        if scheduler is None or not self._host.is_active():
            return GoalResponse.ACCEPT  # answered at once with MODEL_NOT_READY and the reason
        reason = scheduler.admit(self._host.busy_policy(), self._host.max_queued_goals(), id(goal))
        if reason is not None:
            self._node.get_logger().warning(f"Goal rejected: {reason}")
            self.tally.count("rejected")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle: ServerGoalHandle) -> CancelResponse:
        with self._jobs_lock:
            job = self._jobs.get(bytes(goal_handle.goal_id.uuid))
        scheduler = self._host.scheduler
        if job is not None and scheduler is not None and scheduler.stop(job, StopReason.CANCELED):
            job.run()  # it was waiting: report the cancel now, not after the running generation
        return CancelResponse.ACCEPT

    async def _execute(self, goal_handle: ServerGoalHandle) -> Any:
        """Check the goal here (fast answers for bad goals), run it on the inference thread."""
        host = self._host
        scheduler, pipeline = host.scheduler, host.pipeline
        # The slot admitted in _on_goal is keyed by the goal message, which the handle carries.
        slot = id(goal_handle.request)
        if scheduler is None or pipeline is None or not host.is_active():
            if scheduler is not None:
                scheduler.release(slot)
            result = goal_result(Result.MODEL_NOT_READY, host.not_ready_reason())
            return self._end(goal_handle, GoalOutcome.ABORTED, result)
        settings = host.job_settings()
        now = self._node.get_clock().now().nanoseconds / 1e9
        try:
            turn = resolve_turn(
                goal_handle.request, scheduler.latest_frame(), host.sessions, settings, now
            )
        except GoalError as error:
            scheduler.release(slot)
            return self._end(goal_handle, GoalOutcome.ABORTED, goal_result(error.code, str(error)))
        except Exception as error:  # noqa: BLE001 - re-raised, rclpy would send an empty SUCCESS
            scheduler.release(slot)
            result = goal_result(Result.INFERENCE_FAILED, f"internal error: {error!r}")
            return self._end(goal_handle, GoalOutcome.ABORTED, result)

        done = _Completion(self._node.executor)
        job = GoalJob(pipeline, turn, settings, goal_handle.publish_feedback, done.set)
        key = bytes(goal_handle.goal_id.uuid)
        with self._jobs_lock:
            self._jobs[key] = job
        try:
            if not scheduler.submit(job, slot, preempt=host.busy_policy() == "preempt"):
                result = goal_result(Result.MODEL_NOT_READY, host.not_ready_reason())
                return self._end(goal_handle, GoalOutcome.ABORTED, result)
            if goal_handle.is_cancel_requested and scheduler.stop(job, StopReason.CANCELED):
                job.run()
            ahead = scheduler.goals_ahead_of(job)
            if ahead:
                job.feedback_queued(ahead)
            result, outcome = await done.future
        finally:
            with self._jobs_lock:
                self._jobs.pop(key, None)
        if outcome is GoalOutcome.CANCELED and not await _cancel_acknowledged(goal_handle):
            outcome = GoalOutcome.ABORTED
        return self._end(goal_handle, outcome, result)

    def _end(self, goal_handle: ServerGoalHandle, outcome: GoalOutcome, result: Any) -> Any:
        """End the goal in ``outcome``, count it, log it when aborted; returns ``result``."""
        if outcome is GoalOutcome.SUCCEEDED:
            goal_handle.succeed()
        elif outcome is GoalOutcome.CANCELED:
            goal_handle.canceled()
        else:
            goal_handle.abort()
            line = f"Goal aborted ({result_code_name(result.error_code)}): {result.error_message}"
            # An internal error is the node's fault, the other codes the request's or the setup's.
            # (One call site per severity: rclpy refuses a call site that changes severity.)
            if result.error_code == Result.INFERENCE_FAILED:
                self._node.get_logger().error(line)
            else:
                self._node.get_logger().warning(line)
        self.tally.count(outcome.value, result.error_code)
        return result


class _Completion:
    """The future a goal coroutine awaits, completed by the job from whichever thread ends it."""

    def __init__(self, executor: Any) -> None:
        self.future: Future = Future(executor=executor)
        self._executor = executor

    def set(self, result: Any, outcome: GoalOutcome) -> None:
        self.future.set_result((result, outcome))
        if self._executor is not None:
            self._executor.wake()  # resume the coroutine now, not on the next unrelated event


async def _cancel_acknowledged(goal_handle: ServerGoalHandle) -> bool:
    """Whether rclpy has put the goal into CANCELING, within CANCEL_STATE_TIMEOUT.

    A waiting goal is finished from inside the cancel callback, and rclpy moves the goal to
    CANCELING only after that callback returns: ending it as canceled before then is an invalid
    transition. The coroutine gives the executor back until then, holding no thread.
    """
    deadline = time.monotonic() + CANCEL_STATE_TIMEOUT
    await _Until(lambda: goal_handle.is_cancel_requested or time.monotonic() >= deadline)
    return goal_handle.is_cancel_requested


class _Until:
    """Awaitable in an rclpy coroutine: the executor resumes the coroutine (which holds no thread
    meanwhile) until ``predicate()`` holds. rclpy re-runs a pending task whenever it looks for
    work, so the wait ends at the executor's next pass after the predicate turns true."""

    def __init__(self, predicate: Callable[[], bool]) -> None:
        self._predicate = predicate

    def __await__(self) -> Generator[None, None, None]:
        while not self._predicate():
            yield
