"""What the tests (``test/``) and the benchmarks (``benchmarks/``) both run on, so neither reaches
into the other: the tiny LISA checkpoint's files (:mod:`testbed.tiny_lisa`), the token ids of its
scripted replies (:mod:`testbed.fixture_replies`), a lisa_node whose model answers by script
(:mod:`testbed.scripted_lisa_node`) and the settings of a DDS graph that stays on this machine
(:mod:`testbed.local_dds`).

Not part of the installed lisa_ros (setup.py installs only the ``lisa_ros`` package): it is imported
from the lisa_ros package folder, where pytest (pytest.ini's pythonpath) and ``python -m`` run.
Importing it loads neither ROS nor torch; only ``scripted_lisa_node`` needs them.
"""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # the lisa_ros package folder
FIXTURES = PACKAGE / "fixtures"  # data files: the tiny model, photos, a ReasonSeg sample, rosdep
CONFIG = PACKAGE / "config" / "lisa.yaml"
DEMO = PACKAGE / "demo"
