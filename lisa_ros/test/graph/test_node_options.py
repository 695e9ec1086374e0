"""The node offers the model's load options and imports without torch, like the rest of the
options' users (test_model_options.py): torch comes with the model, on configure."""

from __future__ import annotations

from fresh_python import assert_import_without_torch

from lisa_ros.model.options import PRECISIONS, QUANTIZATIONS

NODE_MODULES = [
    "lisa_ros.node.parameters",
    "lisa_ros.node.scheduler",
    "lisa_ros.node.lisa_node",
    "lisa_ros.node.jobs",
    "lisa_ros.node.segment_action",
    "lisa_ros.node.outputs",
    "lisa_ros.cli.ask",
]


def test_the_node_modules_import_without_torch() -> None:
    assert_import_without_torch(NODE_MODULES)


def test_the_node_and_the_cli_offer_exactly_the_load_options() -> None:
    from lisa_ros.cli.segment import build_parser
    from lisa_ros.node.parameters import spec

    assert spec("precision").choices == tuple(PRECISIONS)
    assert spec("quantization").choices == ("", *QUANTIZATIONS)
    choices = {action.dest: action.choices for action in build_parser()._actions}
    assert tuple(choices["precision"]) == tuple(PRECISIONS)
    assert tuple(choices["quantization"]) == QUANTIZATIONS


def test_the_busy_policies_the_node_offers_are_the_ones_the_scheduler_runs() -> None:
    from lisa_ros.node.parameters import spec
    from lisa_ros.node.scheduler import BUSY_POLICIES

    assert spec("busy_policy").choices == BUSY_POLICIES
