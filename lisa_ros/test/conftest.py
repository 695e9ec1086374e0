"""What both kinds of test share: the tiny LISA checkpoint's reference run and its recorded outputs.

The tests are sorted by what they need:

- ``unit/``: no ROS package (where ROS 2 is installed, a few also round-trip real messages). CI
  runs them on the ROS Jazzy user's numpy, OpenCV and Pillow too (scripts/test_jazzy.sh), in a venv
  without rclpy: nothing here may import ROS.
- ``graph/``: processes on a real DDS graph and in-process rclpy nodes; its conftest.py brings the
  graph fixtures.

The modules at this level are helpers for both kinds (mask_parity, file_mode_check, fresh_python,
hand_made_results, squares): tests import them, never one another. The tiny model's files and
scripted replies are in ``testbed`` (beside this folder), which the benchmarks use too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from testbed.tiny_lisa import FIXTURE, IMAGE


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
