"""The node's work scheduler: bounded queues, frame dropping, rate limit, busy policies, pausing.

ROS-free and model-free: these pin down the rules that the ROS graph tests can only sample.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import pytest

from lisa_ros.node.scheduler import RESERVATION_SECONDS, JobKind, StopReason, WorkScheduler


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class RecordingJob:
    def __init__(self, name: str, kind: JobKind) -> None:
        self.name = name
        self.kind = kind
        self.stop_reasons: list[str] = []

    def request_stop(self, reason: str) -> None:
        self.stop_reasons.append(reason)

    def run(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"RecordingJob({self.name})"


def frame_job(frame: str, instruction: str) -> RecordingJob:
    return RecordingJob(f"{frame}|{instruction}", JobKind.FRAME)


def goal(name: str) -> RecordingJob:
    return RecordingJob(name, JobKind.GOAL)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def scheduler(clock: FakeClock) -> WorkScheduler[str]:
    scheduler: WorkScheduler[str] = WorkScheduler(frame_job, clock=clock)
    scheduler.resume()
    return scheduler


def take(scheduler: WorkScheduler[str]) -> RecordingJob | None:
    job = scheduler.next_job(timeout=0)
    return job  # type: ignore[return-value]


def finish(scheduler: WorkScheduler[str], job: RecordingJob | None) -> None:
    assert job is not None
    scheduler.job_done(job)  # type: ignore[arg-type]


def test_frames_are_never_queued_only_the_newest_is_processed(
    scheduler: WorkScheduler[str],
) -> None:
    scheduler.set_instruction("the cup")
    for index in range(100):
        scheduler.offer_frame(f"frame{index}")
    job = take(scheduler)
    assert job is not None and job.name == "frame99|the cup"
    finish(scheduler, job)
    assert take(scheduler) is None  # nothing new arrived: the same frame is not processed twice
    stats = scheduler.stats()
    # Nothing ran while they came: the 99 replaced frames were not dropped for want of time.
    counts = (stats.frames_received, stats.frames_reasoned, stats.frames_dropped_busy)
    assert counts == (100, 1, 0) and stats.frames_unused == 99


def test_frames_count_as_dropped_only_when_the_busy_thread_made_them_wait(
    scheduler: WorkScheduler[str],
) -> None:
    for index in range(5):  # idle, no instruction: nobody wanted them
        scheduler.offer_frame(f"idle{index}")
    scheduler.set_instruction("the cup")
    running = take(scheduler)
    for index in range(3):  # the thread reasons on idle4: these wait for it and are replaced
        scheduler.offer_frame(f"busy{index}")
    finish(scheduler, running)
    stats = scheduler.stats()
    assert (stats.frames_received, stats.frames_reasoned) == (8, 1)
    assert (stats.frames_unused, stats.frames_dropped_busy) == (4, 2)  # busy2 is still waiting


def test_no_standing_instruction_means_no_frame_work(scheduler: WorkScheduler[str]) -> None:
    scheduler.offer_frame("frame0")
    assert take(scheduler) is None
    scheduler.set_instruction("the cup")
    assert take(scheduler).name == "frame0|the cup"


def test_clearing_the_instruction_stops_a_running_frame_inference(
    scheduler: WorkScheduler[str],
) -> None:
    scheduler.set_instruction("the cup")
    scheduler.offer_frame("frame0")
    running = take(scheduler)
    scheduler.set_instruction(None)
    assert running.stop_reasons == [StopReason.SUPERSEDED]
    finish(scheduler, running)
    scheduler.offer_frame("frame1")
    assert take(scheduler) is None


def test_max_rate_limits_frame_inferences_start_to_start(
    scheduler: WorkScheduler[str], clock: FakeClock
) -> None:
    scheduler.set_max_rate(2.0)
    scheduler.set_instruction("the cup")
    scheduler.offer_frame("frame0")
    finish(scheduler, take(scheduler))
    clock.now += 0.1
    scheduler.offer_frame("frame1")
    assert take(scheduler) is None  # 0.1 s after the last start: too early at 2 Hz
    clock.now += 0.35
    assert take(scheduler) is None
    clock.now += 0.06
    assert take(scheduler).name == "frame1|the cup"


def test_rate_zero_means_as_fast_as_frames_come(scheduler: WorkScheduler[str]) -> None:
    scheduler.set_max_rate(0.0)
    scheduler.set_instruction("x")
    for index in range(3):
        scheduler.offer_frame(f"f{index}")
        finish(scheduler, take(scheduler))
    assert scheduler.stats().frames_reasoned == 3


def test_goals_run_before_frames_and_supersede_a_running_frame(
    scheduler: WorkScheduler[str],
) -> None:
    scheduler.set_instruction("the cup")
    scheduler.offer_frame("frame0")
    running_frame = take(scheduler)
    assert running_frame.kind is JobKind.FRAME
    assert scheduler.admit("queue", 4, "g1") is None
    g1 = goal("g1")
    assert scheduler.submit(g1, "g1")
    assert running_frame.stop_reasons == [StopReason.SUPERSEDED]
    finish(scheduler, running_frame)
    scheduler.offer_frame("frame1")
    assert take(scheduler) is g1
    finish(scheduler, g1)
    assert take(scheduler).name == "frame1|the cup"


def test_reject_policy_refuses_a_goal_while_one_runs_or_waits(
    scheduler: WorkScheduler[str],
) -> None:
    assert scheduler.admit("reject", 4, "a") is None
    assert "busy" in scheduler.admit("reject", 4, "b")  # "a" admitted, not yet submitted
    scheduler.submit(goal("a"), "a")
    assert "busy_policy 'reject'" in scheduler.admit("reject", 4, "c")
    running = take(scheduler)
    assert "busy" in scheduler.admit("reject", 4, "c")
    finish(scheduler, running)
    assert scheduler.admit("reject", 4, "c") is None


def test_queue_policy_holds_at_most_max_queued_goals_behind_the_running_one(
    scheduler: WorkScheduler[str],
) -> None:
    for name in ("a", "b", "c"):
        assert scheduler.admit("queue", 2, name) is None
        scheduler.submit(goal(name), name)
        if name == "a":
            assert take(scheduler).name == "a"
    reason = scheduler.admit("queue", 2, "d")
    assert reason is not None and "max_queued_goals=2" in reason
    assert scheduler.stats().goals_waiting == 2


def test_preempt_policy_stops_the_running_goal_and_finishes_the_waiting_ones_first(
    scheduler: WorkScheduler[str],
) -> None:
    for name in ("a", "b"):
        assert scheduler.admit("queue", 4, name) is None
        scheduler.submit(goal(name), name)
    running = take(scheduler)
    assert running.name == "a"
    assert scheduler.admit("preempt", 0, "c") is None
    newest = goal("c")
    scheduler.submit(newest, "c", preempt=True)
    assert running.stop_reasons == [StopReason.PREEMPTED]
    finish(scheduler, running)
    waiting = take(scheduler)
    assert waiting.name == "b" and waiting.stop_reasons == [StopReason.PREEMPTED]
    finish(scheduler, waiting)
    assert take(scheduler) is newest and newest.stop_reasons == []


def test_stopping_a_waiting_goal_takes_it_out_for_the_caller_to_finish_at_once(
    scheduler: WorkScheduler[str],
) -> None:
    first, second = goal("first"), goal("second")
    for job in (first, second):
        scheduler.admit("queue", 4, job.name)
        scheduler.submit(job, job.name)
    assert take(scheduler) is first
    assert scheduler.goals_ahead_of(second) == 1
    # The inference thread is still busy with `first`: the caller finishes the waiting goal.
    assert scheduler.stop(second, StopReason.CANCELED) is True
    assert second.stop_reasons == [StopReason.CANCELED]
    assert scheduler.stop(first, StopReason.CANCELED) is False  # running: stops at its next step
    assert first.stop_reasons == [StopReason.CANCELED]
    finish(scheduler, first)
    assert take(scheduler) is None  # the stopped goal is not handed out again


def test_pause_stops_everything_and_submit_while_paused_is_answered(
    scheduler: WorkScheduler[str],
) -> None:
    scheduler.set_instruction("x")
    running, waiting = goal("running"), goal("waiting")
    for job in (running, waiting):
        scheduler.admit("queue", 4, job.name)
        scheduler.submit(job, job.name)
    assert take(scheduler) is running
    scheduler.pause()
    assert running.stop_reasons == [StopReason.DEACTIVATED]
    finish(scheduler, running)
    assert take(scheduler) is waiting and waiting.stop_reasons == [StopReason.DEACTIVATED]
    finish(scheduler, waiting)
    late = goal("late")
    scheduler.submit(late, "late")
    assert take(scheduler) is late and late.stop_reasons == [StopReason.DEACTIVATED]
    scheduler.offer_frame("frame")
    assert take(scheduler) is None  # paused: frames are kept, not processed
    scheduler.resume()
    assert take(scheduler).name == "frame|x"


def test_close_drains_stopped_goals_then_ends_the_inference_loop(
    scheduler: WorkScheduler[str],
) -> None:
    waiting = goal("waiting")
    scheduler.admit("queue", 4, "w")
    scheduler.submit(waiting, "w")
    scheduler.close()
    assert scheduler.next_job() is waiting
    assert scheduler.next_job() is None
    assert not scheduler.submit(goal("after"), "after")


def test_unclaimed_reservations_expire(scheduler: WorkScheduler[str], clock: FakeClock) -> None:
    assert scheduler.admit("reject", 0, "vanished") is None
    assert scheduler.admit("reject", 0, "next") is not None
    clock.now += RESERVATION_SECONDS + 1
    assert scheduler.admit("reject", 0, "next") is None


def test_unknown_policy_is_a_programming_error(scheduler: WorkScheduler[str]) -> None:
    with pytest.raises(ValueError, match="unknown busy policy"):
        scheduler.admit("lifo", 1, "k")


def test_a_blocked_inference_thread_wakes_for_new_work_and_for_close() -> None:
    scheduler: WorkScheduler[str] = WorkScheduler(frame_job)
    scheduler.resume()
    taken: list[object] = []
    consumer = threading.Thread(target=lambda: taken.extend(iter(scheduler.next_job, None)))
    consumer.start()
    scheduler.set_instruction("x")
    scheduler.offer_frame("frame")
    deadline = time.monotonic() + 5
    while not taken and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [job.name for job in taken] == ["frame|x"]
    scheduler.job_done(taken[0])  # type: ignore[arg-type]
    scheduler.close()
    consumer.join(timeout=5)
    assert not consumer.is_alive()


class WakeCountingScheduler(WorkScheduler[str]):
    """Counts the inference thread's looks at the frames (one per wake-up of next_job)."""

    looks = 0

    def _seconds_until_frame_due(self) -> float | None:
        self.looks += 1
        return super()._seconds_until_frame_due()


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_frames_nobody_wants_do_not_wake_the_inference_thread() -> None:
    # A 30 Hz camera used to wake it for every frame: a GIL hand-off each, for nothing.
    scheduler = WakeCountingScheduler(frame_job)
    scheduler.resume()
    scheduler.set_max_rate(1.0)
    taken: list[object] = []
    consumer = threading.Thread(target=lambda: taken.extend(iter(scheduler.next_job, None)))
    consumer.start()
    wait_for(lambda: scheduler.looks == 1, "the inference thread waits")
    for number in range(100):
        scheduler.offer_frame(f"f{number}")  # no standing instruction, nothing to follow
    time.sleep(0.2)
    assert scheduler.looks == 1
    assert not taken
    scheduler.set_instruction("x")  # now frames are wanted: the newest one runs
    wait_for(lambda: taken, "the frame job")
    assert [job.name for job in taken] == ["f99|x"]  # type: ignore[attr-defined]
    scheduler.job_done(taken[0])  # type: ignore[arg-type]
    time.sleep(0.1)
    # The next frame wakes it; it then sleeps until the next reasoning step is due (max_rate_hz),
    # and the frames that come meanwhile replace each other without waking it.
    looks = scheduler.looks
    for number in range(100, 110):
        scheduler.offer_frame(f"f{number}")
    time.sleep(0.2)
    assert scheduler.looks == looks + 1
    wait_for(lambda: len(taken) == 2, "the next reasoning step, when due")
    assert taken[1].name == "f109|x"  # type: ignore[attr-defined]
    scheduler.job_done(taken[1])  # type: ignore[arg-type]
    scheduler.close()
    consumer.join(timeout=5)
    assert not consumer.is_alive()


# --- following: the last answer's targets on the frames between reasoning steps ----------------


def follow_job(frame: str, target: str) -> RecordingJob:
    return RecordingJob(f"{frame}~{target}", JobKind.FOLLOW)


@pytest.fixture
def following(clock: FakeClock) -> WorkScheduler[str]:
    scheduler: WorkScheduler[str] = WorkScheduler(frame_job, follow_job, clock=clock)
    scheduler.resume()
    scheduler.set_max_rate(1.0)
    scheduler.set_follow_rate(10.0)
    return scheduler


def run_for(
    scheduler: WorkScheduler[str], clock: FakeClock, seconds: float, job_seconds: float
) -> list[str]:
    """A 30 Hz camera for ``seconds``; each job takes ``job_seconds``; the names of what ran."""
    ran = []
    for tick in range(int(seconds * 30)):
        clock.now += 1 / 30
        scheduler.offer_frame(f"f{tick}")
        job = take(scheduler)
        if job is not None:
            ran.append(job.name)
            clock.now += job_seconds
            finish(scheduler, job)
    return ran


def test_frames_between_reasoning_steps_are_followed_at_the_follow_rate(
    following: WorkScheduler[str], clock: FakeClock
) -> None:
    following.set_instruction("the cup")
    following.set_follow_target("answer")
    ran = run_for(following, clock, 4.0, job_seconds=0.01)
    reasoned = [name for name in ran if "|" in name]
    followed = [name for name in ran if "~" in name]
    # The camera's 4 s, and the jobs' own time on top: max_rate_hz 1 gives one reasoning step a
    # second, follow_rate_hz 10 fills the rest of each second.
    assert 4 <= len(reasoned) <= 5
    assert 8 * len(reasoned) <= len(followed) <= 9 * len(reasoned)
    assert following.stats().frames_followed == len(followed)


def test_a_follow_never_runs_into_the_next_reasoning_step(
    following: WorkScheduler[str], clock: FakeClock
) -> None:
    following.set_instruction("the cup")
    following.set_follow_target("answer")
    following.offer_frame("f")
    reasoning = take(following)
    assert reasoning is not None and "|" in reasoning.name
    finish(following, reasoning)
    # Follows of 0.3 s each: one that would end after the next reasoning (due 1 s after the last
    # one started) does not start, so each reasoning step starts on time.
    starts = []
    for tick in range(90):
        clock.now += 1 / 30
        following.offer_frame(f"f{tick}")
        job = take(following)
        if job is not None:
            starts.append((clock.now, job.name))
            clock.now += 0.3 if "~" in job.name else 0.01
            finish(following, job)
    reasoned_at = [when for when, name in starts if "|" in name]
    assert len(reasoned_at) >= 2 and any("~" in name for _, name in starts)
    gaps = [later - earlier for earlier, later in itertools.pairwise([100.0, *reasoned_at])]
    assert all(gap < 1.0 + 1 / 30 + 1e-9 for gap in gaps), gaps


def test_goals_and_due_reasoning_come_before_following(
    following: WorkScheduler[str], clock: FakeClock
) -> None:
    following.set_follow_target("answer")
    following.offer_frame("f1")
    following.submit(goal("g"))
    assert take(following).name == "g"


def test_degraded_follows_ask_for_reasoning_at_once(
    following: WorkScheduler[str], clock: FakeClock
) -> None:
    following.set_instruction("the cup")
    following.set_follow_target("answer")
    following.offer_frame("f0")
    finish(following, take(following))  # reasoned
    clock.now += 0.2
    following.offer_frame("f1")
    followed = take(following)
    assert followed.name == "f1~answer"
    following.request_reasoning()
    finish(following, followed)
    following.offer_frame("f2")
    assert take(following).name == "f2|the cup"  # 0.2 s after the last: max_rate_hz waived


def test_a_new_instruction_is_reasoned_on_the_next_frame(
    following: WorkScheduler[str], clock: FakeClock
) -> None:
    following.set_instruction("the cup")
    following.offer_frame("f0")
    finish(following, take(following))
    clock.now += 0.1
    following.set_instruction("the plate")
    following.offer_frame("f1")
    assert take(following).name == "f1|the plate"


def test_a_goals_targets_are_followed_for_their_time_only(
    following: WorkScheduler[str], clock: FakeClock
) -> None:
    following.set_follow_target("goal answer", seconds=2.0)
    ran = run_for(following, clock, 3.0, job_seconds=0.01)
    assert ran and all(name.endswith("~goal answer") for name in ran)
    assert 17 <= len(ran) <= 21  # 10 Hz for 2 s, then nothing
    assert following.follow_target is None


def test_follow_rate_zero_is_todays_behaviour(
    following: WorkScheduler[str], clock: FakeClock
) -> None:
    following.set_follow_rate(0.0)
    following.set_instruction("the cup")
    following.set_follow_target("answer")
    ran = run_for(following, clock, 3.0, job_seconds=0.01)
    assert len(ran) == 3 and all("|" in name for name in ran)


def test_waiting_for_a_reasoning_step_that_no_follow_fits_before_does_not_spin() -> None:
    scheduler: WorkScheduler[str] = WorkScheduler(frame_job, follow_job)
    scheduler.resume()
    scheduler.set_max_rate(1.0)
    scheduler.set_follow_rate(10.0)
    scheduler.set_instruction("the cup")
    scheduler.set_follow_target("answer")
    scheduler.offer_frame("f0")
    finish(scheduler, take(scheduler))  # reasoned; the next one is due in 1 s
    scheduler.offer_frame("f1")
    follow = take(scheduler)
    assert follow is not None and follow.name == "f1~answer"
    time.sleep(0.6)  # a follow so long that another would end after the next reasoning step
    finish(scheduler, follow)
    scheduler.offer_frame("f2")
    cpu_before = time.thread_time()
    job = scheduler.next_job(timeout=1.0)  # no follow fits: wait for the reasoning step
    assert job is not None and job.name == "f2|the cup"
    assert time.thread_time() - cpu_before < 0.1  # slept ~0.4 s, did not poll
