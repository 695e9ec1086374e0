"""lisa_node's ``adapter`` parameter on a real ROS 2 graph: a ``lisa-finetune`` folder makes the
node answer as the fine-tuned model; a folder that does not fit fails configure, says so, and the
node stays up.

The tiny fixture learns to answer "the red square" with "It is [SEG] ." and a mask of the square
(as in test_finetune.py, on one image for a short run). Two real ``lisa_node`` processes (the
product's console script, no scripted answers) serve the same goal: ``tuned``, first given a
corrupt adapter and then the trained one, and ``base`` without an adapter, which babbles and
finds no square.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray
from lisa_ros_interfaces.action import Segment
from node_graph import CONFIG, NODE_START_TIMEOUT, LisaClient, bgr8_msg, mono8_array
from squares import INSTRUCTION, settings, write_squares

from lisa_ros.data import load_dataset
from lisa_ros.evaluation import intersection_and_union, mask_iou
from lisa_ros.model.adapter import LISA_MODULES_FILE
from lisa_ros.training.trainer import finetune
from testbed.tiny_lisa import CHECKPOINT, CLIP

Result = Segment.Result


def start_node(processes, name: str, *parameters: str):
    """The product's lisa_node on the fixture checkpoint, on the CPU, answers of up to 16 tokens."""
    args = ["--ros-args", "--params-file", str(CONFIG), "-r", f"__node:={name}"]
    for parameter in (
        f"model:={CHECKPOINT}",
        f"vision_tower:={CLIP}",
        "precision:=fp32",
        "device:=cpu",
        "max_new_tokens:=16",
        *parameters,
    ):
        args += ["-p", parameter]
    return processes.start_console_script("lisa_node", *args)


@pytest.fixture(scope="module")
def setup(module_processes, graph, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapter")
    broken = folder / "broken"
    # Both nodes start (and base loads its model) while the adapter trains.
    tuned = start_node(module_processes, "tuned", "autostart:=false", f"adapter:={broken}")
    base = start_node(module_processes, "base")
    squares = write_squares(folder / "squares", 1)
    # One image, a short run at a higher rate than test_finetune's: "It is [SEG] ." and the mask.
    trained = finetune(
        settings(squares, folder / "trained", steps=40, batch_size=1, learning_rate=1e-2)
    ).adapter
    shutil.copytree(trained, broken)
    (broken / LISA_MODULES_FILE).write_bytes((trained / LISA_MODULES_FILE).read_bytes()[:1000])
    (sample,) = load_dataset(squares)
    clients = {name: LisaClient(graph, f"/{name}") for name in ("tuned", "base")}
    for client in clients.values():
        client.wait_for_server(timeout=NODE_START_TIMEOUT)
    return {
        "processes": {"tuned": tuned, "base": base},
        "clients": clients,
        "adapter": trained,
        "broken": broken,
        "image": bgr8_msg(sample.image()),
        "square": sample.mask.astype(bool),
    }


def ask(setup, name: str):
    status, result, _ = setup["clients"][name].run(INSTRUCTION, setup["image"])
    return status, result


def iou_with_square(setup, result) -> float:
    masks = [mono8_array(msg) == 255 for msg in result.masks]
    predicted = np.any(masks, axis=0) if masks else np.zeros_like(setup["square"])
    return mask_iou(*intersection_and_union(predicted, setup["square"]))


def test_an_adapter_that_does_not_fit_fails_configure_naming_it_and_the_node_stays_up(setup):
    client, process, broken = (
        setup["clients"]["tuned"],
        setup["processes"]["tuned"],
        setup["broken"],
    )
    assert client.transition("configure") is False
    assert client.state() == "unconfigured"
    process.wait_for_output(
        rf"Could not load LISA .*adapter '{re.escape(str(broken))}': "
        rf"{re.escape(LISA_MODULES_FILE)} does not fit this model.*configure again",
        10,
    )
    status, result = ask(setup, "tuned")
    assert result.error_code == Result.MODEL_NOT_READY
    assert "the model is not loaded" in result.error_message and str(broken) in result.error_message
    process.wait_for_output(r"\[WARN\].*Goal aborted \(MODEL_NOT_READY\): the model is not", 10)
    assert process.running


def test_the_node_with_the_trained_adapter_answers_as_the_fine_tuned_model(setup):
    client, process = setup["clients"]["tuned"], setup["processes"]["tuned"]
    assert client.set_parameters(adapter=str(setup["adapter"]))[0].successful
    assert client.transition("configure") is True, process.output
    assert client.transition("activate") is True
    status, result = ask(setup, "tuned")
    assert status == GoalStatus.STATUS_SUCCEEDED and result.error_code == Result.SUCCESS, (
        result.error_message
    )
    assert "[SEG]" in result.text
    assert len(result.masks) == 1
    assert iou_with_square(setup, result) > 0.9


def test_diagnostics_show_the_loaded_adapter_beside_the_model(setup, graph):
    values: dict[str, dict[str, str]] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            values[status.name] = {kv.key: kv.value for kv in status.values}

    subscription = graph.node.create_subscription(
        DiagnosticArray, "/diagnostics", on_diagnostics, 10
    )
    try:
        graph.wait_until(lambda: {"/tuned", "/base"} <= values.keys(), 10, "both nodes' status")
    finally:
        graph.node.destroy_subscription(subscription)
    tuned, base = values["/tuned"], values["/base"]
    assert (tuned["model"], tuned["adapter"]) == (str(CHECKPOINT), str(setup["adapter"]))
    assert (base["model"], base["adapter"]) == (str(CHECKPOINT), "")


def test_the_node_without_the_adapter_finds_no_square(setup):
    status, result = ask(setup, "base")
    assert status == GoalStatus.STATUS_SUCCEEDED, result.error_message
    assert result.error_code in (Result.SUCCESS, Result.NOTHING_FOUND), result.error_message
    assert iou_with_square(setup, result) < 0.1
