"""lisa_node's lifecycle, driven over its lifecycle services from another process (this one).

One node (autostart false) goes through a whole life in the order of the tests below: started with
a model folder that does not exist, configure fails and the node stays up and says why; the model
is fixed and configure/activate succeed; deactivate stops a running generation; cleanup unloads
the model; configure again; shutdown. Plus: the parameters the node declares are the YAML's, and a
bad value in the parameters stops the node at start-up with the reason.
"""

from __future__ import annotations

import threading
import time

import pytest
import yaml
from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lisa_ros_interfaces.action import Segment
from node_graph import (
    CHECKPOINT,
    CONFIG,
    LONG_REPLY,
    LisaClient,
    bgr8_msg,
    fixture_rgb,
    start_lisa,
)
from rcl_interfaces.srv import DescribeParameters, ListParameters

from lisa_ros.node.parameters import PARAMETERS

Result = Segment.Result
MISSING_MODEL = "/nonexistent/LISA-7B-v1"


class Diagnostics:
    def __init__(self, graph, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.statuses: list[DiagnosticStatus] = []
        graph.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_message, 50)

    def _on_message(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.statuses.extend(s for s in msg.status if s.name == self.name)

    def latest(self) -> DiagnosticStatus | None:
        with self.lock:
            return self.statuses[-1] if self.statuses else None


@pytest.fixture(scope="module")
def lisa(module_processes, graph):
    process = start_lisa(
        module_processes,
        "autostart:=false",
        model=MISSING_MODEL,
        replies={"long": LONG_REPLY},
        slow={"long": 0.05},
    )
    client = LisaClient(graph)
    client.wait_for_server(timeout=60)
    return client, process, Diagnostics(graph, "/lisa")


def call(graph, service_type, name: str, request):
    client = graph.node.create_client(service_type, name)
    assert client.wait_for_service(timeout_sec=10)
    try:
        # A service can be discovered before its reply writer has matched this client (DDS
        # discovery runs per endpoint): a first reply is then lost. Ask again, as ros2 CLI users do.
        for attempt in range(3):
            future = client.call_async(request)
            try:
                return graph.wait_for_future(future, 10, name)
            except pytest.fail.Exception:
                client.remove_pending_request(future)
                if attempt == 2:
                    raise
    finally:
        graph.node.destroy_client(client)


def test_the_node_declares_exactly_the_yaml_parameters_with_descriptions(lisa, graph) -> None:
    listed = call(
        graph, ListParameters, "/lisa/list_parameters", ListParameters.Request()
    ).result.names
    ours = set(listed) - {"use_sim_time", "start_type_description_service"}
    in_yaml = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
    assert ours == set(in_yaml) == {parameter.name for parameter in PARAMETERS}
    described = call(
        graph,
        DescribeParameters,
        "/lisa/describe_parameters",
        DescribeParameters.Request(names=sorted(ours)),
    ).descriptors
    assert all(len(d.description) > 20 for d in described)
    ranges = {d.name: d for d in described}
    assert ranges["max_rate_hz"].floating_point_range[0].to_value == 1000.0
    assert "one of: 'queue', 'reject', 'preempt'" in ranges["busy_policy"].additional_constraints


def test_an_unconfigured_node_answers_goals_with_model_not_ready(lisa) -> None:
    client, process, _ = lisa
    assert client.state() == "unconfigured"
    status, result, _ = client.run("the cup", bgr8_msg(fixture_rgb()))
    assert status == GoalStatus.STATUS_ABORTED
    assert result.error_code == Result.MODEL_NOT_READY and "configure" in result.error_message


def test_a_missing_model_folder_fails_configure_with_the_reason_and_the_node_stays_up(
    lisa, graph
) -> None:
    client, process, diagnostics = lisa
    assert client.transition("configure") is False
    assert client.state() == "unconfigured"
    process.wait_for_output(f"Could not load LISA '{MISSING_MODEL}'.*configure again", 5)
    graph.wait_until(
        lambda: (d := diagnostics.latest()) is not None and d.level == DiagnosticStatus.ERROR,
        5,
        "an ERROR diagnostic",
    )
    assert MISSING_MODEL in diagnostics.latest().message
    status, result, _ = client.run("the cup", bgr8_msg(fixture_rgb()))
    assert result.error_code == Result.MODEL_NOT_READY
    assert (
        "the model is not loaded" in result.error_message and MISSING_MODEL in result.error_message
    )
    assert process.running


def test_after_fixing_the_model_configure_and_activate_serve_goals(lisa, graph) -> None:
    client, process, diagnostics = lisa
    assert client.set_parameters(model=str(CHECKPOINT))[0].successful
    assert client.transition("configure") is True
    assert client.state() == "inactive"
    graph.wait_until(
        lambda: diagnostics.latest().level == DiagnosticStatus.OK, 5, "the diagnostic back to OK"
    )
    status, result, _ = client.run("the cup", bgr8_msg(fixture_rgb()))
    assert result.error_code == Result.MODEL_NOT_READY and "inactive" in result.error_message

    assert client.transition("activate") is True
    assert client.state() == "active"
    status, result, _ = client.run("what is in front of the robot?")  # no image, no camera yet
    assert status == GoalStatus.STATUS_ABORTED
    assert result.error_code == Result.NO_IMAGE and "no camera frame" in result.error_message
    status, result, _ = client.run("the cup", bgr8_msg(fixture_rgb()))
    assert status == GoalStatus.STATUS_SUCCEEDED and result.error_code == Result.SUCCESS


def value_of(status: DiagnosticStatus, key: str) -> str:
    return next(kv.value for kv in status.values if kv.key == key)


def test_diagnostics_show_the_loaded_model_and_that_a_new_one_waits_for_configure(
    lisa, graph
) -> None:
    client, process, diagnostics = lisa
    assert client.state() == "active"
    try:
        assert client.set_parameters(model=MISSING_MODEL)[0].successful
        process.wait_for_output(
            r"model set to .*the loaded model serves until the next cleanup and configure", 5
        )
        since = len(diagnostics.statuses)
        graph.wait_until(lambda: len(diagnostics.statuses) > since, 5, "a diagnostics message")
        status = diagnostics.latest()
        assert value_of(status, "model") == str(CHECKPOINT)  # what serves, not the parameter
        assert value_of(status, "pending_parameters") == "model"
        assert (
            status.level == DiagnosticStatus.OK and "next cleanup and configure" in status.message
        )
        status_code, result, _ = client.run("the cup", bgr8_msg(fixture_rgb()))
        assert status_code == GoalStatus.STATUS_SUCCEEDED  # the loaded model still answers
    finally:
        assert client.set_parameters(model=str(CHECKPOINT))[0].successful
    since = len(diagnostics.statuses)
    graph.wait_until(lambda: len(diagnostics.statuses) > since, 5, "a diagnostics message")
    assert value_of(diagnostics.latest(), "pending_parameters") == ""


def test_deactivate_stops_a_running_generation_and_activate_resumes(lisa) -> None:
    client, process, _ = lisa
    goal = client.send("a long answer please", bgr8_msg(fixture_rgb()))
    goal.wait_for_feedback(lambda f: f.tokens_generated >= 3, 30, "generation to start")
    started = time.monotonic()
    assert client.transition("deactivate") is True
    status, result = goal.result(timeout=10)
    assert time.monotonic() - started < 3.0
    assert status == GoalStatus.STATUS_ABORTED
    assert result.error_code == Result.MODEL_NOT_READY and "deactivated" in result.error_message
    assert client.state() == "inactive"

    assert client.transition("activate") is True
    status, result, _ = client.run("the cup", bgr8_msg(fixture_rgb()))
    assert status == GoalStatus.STATUS_SUCCEEDED


def test_cleanup_unloads_the_model_and_configure_loads_it_again(lisa) -> None:
    client, process, _ = lisa
    assert client.transition("deactivate") is True
    assert client.transition("cleanup") is True
    assert client.state() == "unconfigured"
    process.wait_for_output(r"Cleaned up: model unloaded", 5)
    status, result, _ = client.run("the cup", bgr8_msg(fixture_rgb()))
    assert result.error_code == Result.MODEL_NOT_READY

    assert client.transition("configure") is True
    assert client.transition("activate") is True
    status, result, _ = client.run("the cup", bgr8_msg(fixture_rgb()))
    assert status == GoalStatus.STATUS_SUCCEEDED


def test_shutdown_finalizes_the_node(lisa) -> None:
    client, process, _ = lisa
    assert client.transition("shutdown") is True
    assert client.state() == "finalized"
    status, result, _ = client.run("the cup", bgr8_msg(fixture_rgb()))
    assert result.error_code == Result.MODEL_NOT_READY


def test_state_and_parameters_answer_while_the_model_loads(module_processes, graph) -> None:
    """A 7B model loads for minutes: neither a configure request nor autostart may block the
    lifecycle and parameter services meanwhile (the load is slowed here by 6 s)."""
    process = start_lisa(module_processes, "autostart:=false", name="slow_lisa", load_delay=6.0)
    client = LisaClient(graph, "/slow_lisa")
    client.wait_for_server(timeout=60)
    configuring = threading.Thread(target=client.transition, args=("configure",), daemon=True)
    configuring.start()
    process.wait_for_output(r"Loading LISA", 10)
    started = time.monotonic()
    assert client.state(timeout=5) == "configuring"
    listed = call(graph, ListParameters, "/slow_lisa/list_parameters", ListParameters.Request())
    assert "model" in listed.result.names
    assert client.transition("activate", timeout=5) is False  # refused at once, not queued
    assert time.monotonic() - started < 3.0, "the services waited for the load"
    configuring.join(timeout=60)
    assert client.state() == "inactive"


def test_a_bad_parameter_value_stops_the_node_at_start_up_with_the_reason(module_processes) -> None:
    process = start_lisa(module_processes, "busy_policy:=lifo", name="bad_lisa")
    assert process.wait(timeout=60) == 1
    assert "cannot start" in process.output
    assert "busy_policy='lifo' is not one of 'queue', 'reject', 'preempt'" in process.output


def test_cleanup_drops_every_reference_to_the_model(graph) -> None:
    """In-process: after cleanup nothing holds the model any more, so its (GPU) memory is freed."""
    import gc
    import weakref

    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from lisa_ros.node.lisa_node import LisaNode

    node = LisaNode(
        "lisa_in_process",
        context=graph.context,
        parameter_overrides=[
            Parameter("autostart", value=False),
            Parameter("model", value=str(CHECKPOINT)),
            Parameter("precision", value="fp32"),
            Parameter("device", value="cpu"),
        ],
    )
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        model = weakref.ref(node._model)
        worker = node._worker
        assert model() is not None and worker is not None and worker.is_alive()
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        gc.collect()
        assert model() is None, gc.get_referrers(model())
        assert not worker.is_alive()
    finally:
        node.destroy_node()
