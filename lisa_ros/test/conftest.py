"""Shared fixtures: the tiny LISA checkpoint of the reference run and its recorded outputs, and
(as plugins) the ROS graph fixtures of ros_harness.py (ros_env, ros_processes, ros_node) and
node_graph.py (module_processes, graph), so test modules use them without importing them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["ros_harness", "node_graph"]

FIXTURE = Path(__file__).parent / "fixtures" / "lisa-tiny-7b"
CHECKPOINT = FIXTURE / "checkpoint"
CLIP = FIXTURE / "clip"
IMAGE = FIXTURE / "image.png"


@pytest.fixture(scope="session")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "reference.npz") as arrays:
        return {name: arrays[name] for name in arrays.files}


@pytest.fixture(scope="session")
def reference_info() -> dict:
    return json.loads((FIXTURE / "reference.json").read_text())


@pytest.fixture(scope="session")
def fixture_image() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(IMAGE).convert("RGB"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: a test that takes a minute or more (make test and CI run it; "
        "skip it locally with ./scripts/test.sh .venv -m 'not slow')",
    )
