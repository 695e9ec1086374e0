"""Reasoning's share of the inference thread: following keeps flowing when reasoning is slow.

A simulated camera, inference thread and fake clock run the real WorkScheduler for a minute of
simulated time with reasoning steps longer than 1/max_rate_hz (the case of issue 19, item 7: on
a CPU or a Jetson-class GPU reasoning is always due, and without a share not one frame is
followed). ROS-free and model-free, like the scheduler.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from lisa_ros.node.scheduler import RATE_WINDOW_SECONDS, JobKind, WorkScheduler

REASONING_SECONDS = 1.6  # a CPU reasoning step of the issue, with max_rate_hz 1
FOLLOW_SECONDS = 0.1
GOAL_SECONDS = 0.5
STEP = 0.005  # the simulation's clock step (s)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Job:
    label: str  # "reason", "follow" or "goal"
    frame: int
    kind: JobKind = JobKind.FRAME

    def request_stop(self, reason: object) -> None:
        pass

    def run(self) -> None:
        pass


def reason(frame: int, instruction: str) -> Job:
    return Job("reason", frame)


def follow(frame: int, target: str) -> Job:
    return Job("follow", frame, JobKind.FOLLOW)


@dataclass
class Run:
    """What the inference thread ran: (start, end, kind) of each job."""

    jobs: list[tuple[float, float, str]] = field(default_factory=list)

    def kinds(self, kind: str) -> list[tuple[float, float, str]]:
        return [job for job in self.jobs if job[2] == kind]

    def busy_share(self, kind: str, start: float, end: float) -> float:
        busy = sum(min(e, end) - max(s, start) for s, e, k in self.jobs if k == kind and e > start)
        return busy / (end - start)


class Simulation:
    """A camera at ``camera_hz`` and one inference thread whose jobs take fixed times."""

    def __init__(self, share: float, camera_hz: float = 15.0, **seconds: float) -> None:
        self.clock = FakeClock()
        self.scheduler: WorkScheduler[int] = WorkScheduler(reason, follow, clock=self.clock)
        self.scheduler.resume()
        self.scheduler.set_max_rate(1.0)
        self.scheduler.set_follow_rate(10.0)
        self.scheduler.set_reasoning_share(share)
        self.scheduler.set_instruction("the cup")
        self.scheduler.set_follow_target("answer")
        self.camera_period = 1.0 / camera_hz
        self.seconds = {"reason": REASONING_SECONDS, "follow": FOLLOW_SECONDS, "goal": GOAL_SECONDS}
        self.seconds.update(seconds)
        self.frames = itertools.count()
        self.next_frame = self.clock.now
        self.running: tuple[Job, float] | None = None
        self.run = Run()
        # Called with each job as it ends (e.g. a follow whose masks degraded).
        self.on_done: Callable[[Job], None] = lambda job: None

    def advance(self, seconds: float, goals_at: Iterable[float] = ()) -> Run:
        end = self.clock.now + seconds
        goals = sorted(self.clock.now + offset for offset in goals_at)
        while self.clock.now < end:
            self.clock.now += STEP
            if self.clock.now >= self.next_frame:
                self.scheduler.offer_frame(next(self.frames))
                self.next_frame += self.camera_period
            while goals and self.clock.now >= goals[0]:
                goals.pop(0)
                self.scheduler.submit(Job("goal", -1, JobKind.GOAL))
            if self.running is not None and self.clock.now >= self.running[1]:
                job = self.running[0]
                self.scheduler.job_done(job)  # type: ignore[arg-type]
                self.on_done(job)
                self.running = None
            if self.running is None:
                job = self.scheduler.next_job(timeout=0)
                if job is not None:
                    ends = self.clock.now + self.seconds[job.label]
                    self.running = (job, ends)
                    self.run.jobs.append((self.clock.now, ends, job.label))
        return self.run


def test_slow_reasoning_keeps_its_share_and_following_gets_the_rest() -> None:
    sim = Simulation(share=0.5)
    start = sim.clock.now
    run = sim.advance(60.0)
    end = sim.clock.now
    # Reasoning steps of 1.6 s reserve 1.6 s each for following: one step every 3.2 s, reasoning
    # busy half the time, follows at their 10 Hz for the other half.
    assert run.busy_share("reason", start, end) == pytest.approx(0.5, abs=0.05)
    assert len(run.kinds("reason")) / 60.0 == pytest.approx(1 / 3.2, abs=0.03)
    assert len(run.kinds("follow")) / 60.0 == pytest.approx(0.5 * 10.0, abs=0.6)
    # Followed frames flow between every two reasoning steps, not only at the start.
    reasoning_starts = [s for s, _, _ in run.kinds("reason")]
    for earlier, later in itertools.pairwise(reasoning_starts):
        between = [s for s, _, k in run.jobs if k == "follow" and earlier < s < later]
        assert len(between) >= 10, (earlier - start, len(between))


def test_without_a_share_slow_reasoning_starves_following_and_stats_say_so() -> None:
    # reasoning_share 1: reasoning first, as before the share existed; the starvation.
    sim = Simulation(share=1.0)
    run = sim.advance(60.0)
    assert len(run.kinds("reason")) >= 35
    assert len(run.kinds("follow")) == 0
    stats = sim.scheduler.stats()
    assert stats.followed_hz == 0.0
    assert stats.reasoned_hz == pytest.approx(1 / REASONING_SECONDS, abs=0.11)
    assert "following starved" in stats.starvation and "reasoning_share 1" in stats.starvation


def test_the_stats_report_the_achieved_rates_over_the_window() -> None:
    sim = Simulation(share=0.5)
    run = sim.advance(40.0)
    now = sim.clock.now
    window = now - RATE_WINDOW_SECONDS

    def started_in_window(kind: str) -> int:
        return sum(1 for s, _, k in run.jobs if k == kind and s >= window)

    stats = sim.scheduler.stats()
    assert stats.reasoned_hz == pytest.approx(started_in_window("reason") / RATE_WINDOW_SECONDS)
    assert stats.followed_hz == pytest.approx(started_in_window("follow") / RATE_WINDOW_SECONDS)
    assert stats.followed_hz > 3.0 and stats.starvation == ""
    assert stats.frames_followed == len(run.kinds("follow"))


def test_just_after_activation_the_rates_are_over_the_time_active() -> None:
    sim = Simulation(share=0.5)
    run = sim.advance(2.0)
    stats = sim.scheduler.stats()
    assert len(run.kinds("reason")) == 1
    assert stats.reasoned_hz == pytest.approx(1 / 2.0, rel=0.01)


def test_fast_reasoning_is_left_at_max_rate_hz() -> None:
    # A 0.2 s reasoning step reserves 0.2 s after it ends: over before the next step is due.
    sim = Simulation(share=0.5, reason=0.2)
    run = sim.advance(20.0)
    assert len(run.kinds("reason")) == pytest.approx(20, abs=1)
    assert len(run.kinds("follow")) / 20.0 == pytest.approx(10.0 * 0.8, abs=1.0)


def test_follows_longer_than_the_reserved_time_still_run_between_reasoning_steps() -> None:
    # A follow of 2 s never ends before a reasoning step is due: it starts in the reserved time
    # and delays the next step by what it overruns (one follow at most).
    sim = Simulation(share=0.5, reason=1.0, follow=2.0)
    run = sim.advance(30.0)
    kinds = [k for _, _, k in run.jobs]
    assert kinds[:6] == ["reason", "follow"] * 3
    assert all(a != b for a, b in itertools.pairwise(kinds)), kinds
    # With the follow's 2 s, reasoning keeps 1/3 of the thread: one step every 3 s.
    assert len(run.kinds("reason")) == pytest.approx(10, abs=1)


def test_goals_go_first_even_in_the_time_reserved_for_following() -> None:
    sim = Simulation(share=0.5)
    # The first reasoning step runs 0-1.6 s and reserves up to 3.2 s for following.
    run = sim.advance(60.0, goals_at=[2.0, 2.01, 20.0])
    goals = run.kinds("goal")
    assert len(goals) == 3
    # Each goal starts as soon as the running job (a 0.1 s follow, or a reasoning step) ends.
    assert goals[0][0] - (sim.clock.now - 60.0 + 2.0) <= FOLLOW_SECONDS + 2 * 0.005
    assert goals[1][0] == pytest.approx(goals[0][1], abs=0.006)
    # Goals are not reasoning steps: their time reserves nothing for following, and following
    # still gets its share around them.
    assert len(run.kinds("follow")) / 60.0 == pytest.approx(5.0, abs=0.7)


def test_degraded_follows_ask_for_reasoning_at_once_inside_the_reserved_time() -> None:
    sim = Simulation(share=0.5)
    sim.advance(1.7)  # the first reasoning step ended at 1.6 s; following is reserved to 3.2 s
    follows_before = len(sim.run.kinds("follow"))
    # From now on, each follow finds the masks degraded and asks for reasoning.
    sim.on_done = lambda job: job.label == "follow" and sim.scheduler.request_reasoning()
    run = sim.advance(20.0)
    kinds = [k for s, _, k in run.jobs]
    start = kinds.index("follow")
    assert follows_before == 1
    # Reason, follow (degraded), reason at once, ...: the reservation and max_rate_hz are waived,
    # and following still gets the one frame that shows whether the new answer holds.
    assert kinds[start:] == ["follow", "reason"] * ((len(kinds) - start) // 2) + (
        ["follow"] if (len(kinds) - start) % 2 else []
    )
    assert len(run.kinds("reason")) >= 20.0 / (REASONING_SECONDS + FOLLOW_SECONDS + 0.1)


def test_no_starvation_is_reported_when_following_is_off() -> None:
    sim = Simulation(share=1.0)
    sim.scheduler.set_follow_target(None)
    run = sim.advance(30.0)
    stats = sim.scheduler.stats()
    assert len(run.kinds("reason")) >= 15 and stats.starvation == ""
    assert stats.followed_hz == 0.0


def test_reasoning_share_is_checked() -> None:
    scheduler: WorkScheduler[int] = WorkScheduler(reason, follow)
    for share in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="reasoning_share"):
            scheduler.set_reasoning_share(share)
    scheduler.set_reasoning_share(1.0)
