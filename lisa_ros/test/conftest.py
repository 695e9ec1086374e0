"""Shared fixtures: the tiny LISA checkpoint of the reference run and its recorded outputs.

The tests in this folder need no ROS package (where ROS 2 is installed, a few also round-trip
real messages): CI runs them on the ROS Jazzy user's numpy, OpenCV and Pillow too
(scripts/test_jazzy.sh). The tests that need ROS 2 live in ros/, whose conftest.py brings the
graph fixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_lisa import FIXTURE, IMAGE


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
