"""One list per load option, readable without torch: the lazy `lisa_ros.model` and its options.

The ROS parameters, `lisa-segment` and the drawing code read the precisions, quantizations,
device names and `[SEG]` from the model package; that is only free when importing them does not
import torch and transformers (seconds), which a fresh interpreter shows.
"""

from __future__ import annotations

import pytest
from fresh_python import assert_import_without_torch, run_python

from lisa_ros.model.options import DEVICE_FORMS, device_problem

TORCH_FREE = [
    "lisa_ros.model",
    "lisa_ros.model.options",
    "lisa_ros.model.prompt",
    "lisa_ros.model.errors",
    "lisa_ros.model.result",
    "lisa_ros.visualization",
    "lisa_ros.cli.segment",
]  # and the node's modules: graph/test_node_options.py


def test_the_model_package_options_and_their_users_import_without_torch() -> None:
    assert_import_without_torch(TORCH_FREE)


def test_the_public_names_still_import_from_the_package() -> None:
    completed = run_python(
        """
        import lisa_ros.model as package
        from lisa_ros.model import (
            LisaLoadError, LisaModel, LisaOutOfMemoryError, SegmentationResult, build_model,
            load_model,
        )
        from lisa_ros.model.lisa import LisaModel as defined_model
        from lisa_ros.model.loading import build_model as defined_build, load_model as defined_load

        assert (LisaModel, build_model, load_model) == (defined_model, defined_build, defined_load)
        assert all(hasattr(package, name) for name in package.__all__)
        assert set(package.__all__) <= set(dir(package))
        try:
            package.no_such_name
        except AttributeError as error:
            assert "no_such_name" in str(error)
        else:
            raise AssertionError("an unknown name must raise AttributeError")
        """
    )
    assert completed.returncode == 0, completed.stderr


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:0", "cuda:12"])
def test_documented_device_names_pass(name: str) -> None:
    assert device_problem(name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("gpu", "is not 'cpu', 'cuda' or 'cuda:<index>'"),
        ("", "is not 'cpu', 'cuda' or 'cuda:<index>'"),
        ("cpu:0", "is not"),
        ("CUDA", "is not"),
        ("cuda:", "write cuda:<index>"),
        ("cuda:x", "write cuda:<index>"),
        ("cuda:-1", "write cuda:<index>"),
    ],
)
def test_other_device_names_are_refused_with_the_accepted_forms(name: str, reason: str) -> None:
    problem = device_problem(name)
    assert problem is not None and reason in problem


def test_a_callers_spelling_of_pick_a_device_is_accepted_and_listed() -> None:
    assert device_problem("", auto="") is None
    assert device_problem("gpu", auto="") == "is not '', 'cpu', 'cuda' or 'cuda:<index>'"
    assert DEVICE_FORMS == ("cpu", "cuda", "cuda:<index>")
