"""The node's /diagnostics status (:class:`Health`) on a fake clock: WARN per cause of bad input,
throttled logging, a stopped camera, and counters under the names that say what they count."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus

from lisa_ros.node.diagnostics import (
    IMAGE_SILENT_SECONDS,
    LOG_REPEAT_SECONDS,
    WARN_SECONDS,
    Health,
    HealthSnapshot,
)
from lisa_ros.node.scheduler import SchedulerStats


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def snapshot(**changes) -> HealthSnapshot:
    values = dict(
        lifecycle_state="active",
        model="/models/lisa",
        pending_parameters=[],
        device="cpu",
        instruction=None,
        stats=None,
        last_inference_seconds=None,
    )
    values.update(changes)
    return HealthSnapshot(**values)


def status_of(health: Health, **changes) -> DiagnosticStatus:
    return health.diagnostics(snapshot(**changes), Time()).status[0]


def values_of(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def test_each_problem_is_logged_once_per_interval_and_every_cause_named_in_the_warn() -> None:
    clock = FakeClock()
    health = Health("/lisa", clock)
    assert health.input_error("depth", "depth image not usable: 400x300") is True
    clock.now += 0.5
    # The same problem with other numbers (a frame of another size) is not logged again...
    assert health.input_error("depth", "depth image not usable: 380x300") is False
    # ...another problem of the same stream is.
    assert health.input_error("depth", "depth image is in frame 'b', not 'a'") is True
    assert health.input_error("depth", "depth image not usable: 400x300") is False
    clock.now += 0.1
    assert health.input_error("camera_info", "K is all zero") is True  # another cause
    status = status_of(health)
    assert status.level == DiagnosticStatus.WARN
    # Every cause's latest reason, the newest first.
    assert status.message == "K is all zero; depth image not usable: 400x300"
    assert values_of(status)["input_errors_total"] == "5"
    clock.now += LOG_REPEAT_SECONDS
    assert health.input_error("depth", "depth image not usable: 400x300") is True


def test_the_warn_ends_by_itself_when_the_errors_stop() -> None:
    clock = FakeClock()
    health = Health("/lisa", clock)
    health.input_error("image", "camera frame dropped: unsupported image encoding 'jpeg'")
    clock.now += WARN_SECONDS - 0.1
    assert status_of(health).level == DiagnosticStatus.WARN
    clock.now += 0.2
    status = status_of(health)
    assert status.level == DiagnosticStatus.OK
    assert "jpeg" in values_of(status)["last_input_error"]  # still there to read


def test_a_stopped_camera_says_for_how_long_and_hides_the_depth_that_stopped_with_it() -> None:
    health = Health("/lisa", FakeClock())
    flowing = status_of(health, image_silence_s=0.2, depth_silence_s=0.2)
    assert flowing.level == DiagnosticStatus.OK
    stopped = status_of(health, image_silence_s=16.04, depth_silence_s=16.0)
    assert stopped.level == DiagnosticStatus.WARN
    assert stopped.message.startswith("no image for 16.0 s") and "depth" not in stopped.message
    assert values_of(stopped)["seconds_since_image"] == "16.040"
    depth_only = status_of(health, image_silence_s=0.1, depth_silence_s=5.0)
    assert depth_only.message.startswith("depth missing: no depth image for 5.0 s")
    # Inactive, nothing is expected to come.
    idle = status_of(health, lifecycle_state="inactive", image_silence_s=60.0)
    assert idle.level == DiagnosticStatus.OK
    assert status_of(health, image_silence_s=IMAGE_SILENT_SECONDS).level == DiagnosticStatus.OK


def test_counters_frames_goals_and_the_loaded_adapter_are_shown() -> None:
    stats = SchedulerStats(
        frames_received=120,
        frames_dropped_busy=30,
        frames_reasoned=10,
        goals_waiting=0,
        running="idle",
        frames_followed=60,
        frames_unused=19,
    )
    status = status_of(
        Health("/lisa", FakeClock()),
        stats=stats,
        adapter="/adapters/mugs",
        goal_outcomes={"succeeded": 3, "aborted": 2},
        goal_results={"SUCCESS": 2, "NOTHING_FOUND": 1, "NO_IMAGE": 2},
    )
    values = values_of(status)
    assert (values["model"], values["adapter"]) == ("/models/lisa", "/adapters/mugs")
    assert [key for key in values][1:3] == ["model", "adapter"]  # side by side
    counted = {key: values[key] for key in values if key.startswith("frames_")}
    assert counted == {
        "frames_received": "120",
        "frames_reasoned": "10",
        "frames_followed": "60",
        "frames_dropped_busy": "30",
        "frames_unused": "19",
    }
    assert (values["goals_succeeded"], values["goals_aborted"]) == ("3", "2")
    assert (values["goals_canceled"], values["goals_rejected"]) == ("0", "0")
    assert values["goal_results"] == "NOTHING_FOUND: 1, NO_IMAGE: 2, SUCCESS: 2"
    assert "frames_processed" not in values and "frames_dropped" not in values
