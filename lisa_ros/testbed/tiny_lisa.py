"""Where the tiny LISA checkpoint of the reference run lies (fixtures/lisa-tiny-7b, see its README):
the checkpoint in the released format, its CLIP vision tower, the image of the reference run.

A module rather than a conftest.py, which tests must not import: test/, test/unit/ and test/graph/
each have a conftest.py, and which one ``import conftest`` found would depend on collection order.
The benchmarks default to this model too.
"""

from __future__ import annotations

from testbed import FIXTURES

FIXTURE = FIXTURES / "lisa-tiny-7b"
CHECKPOINT = FIXTURE / "checkpoint"
CLIP = FIXTURE / "clip"
IMAGE = FIXTURE / "image.png"

# The node's model parameters for the tiny checkpoint on the CPU, as `ros2 launch` arguments (and,
# each after a "-p", as `ros2 run ... --ros-args` parameters).
ON_CPU = (f"model:={CHECKPOINT}", f"vision_tower:={CLIP}", "precision:=fp32", "device:=cpu")


def ros_parameters(*assignments: str) -> list[str]:
    """``name:=value`` assignments as the ``-p name:=value`` pairs of ``--ros-args``."""
    return [word for assignment in assignments for word in ("-p", assignment)]
