"""The node's output headers are copies of the source frame's: later changes to it cannot leak."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed in this venv: run 'make setup'")

from builtin_interfaces.msg import Time  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from lisa_ros.node.outputs import copy_header  # noqa: E402


def test_copy_header_shares_nothing_with_the_source_header() -> None:
    source = Header(stamp=Time(sec=1700000000, nanosec=123), frame_id="camera_optical")
    copy = copy_header(source)
    source.stamp.sec, source.stamp.nanosec, source.frame_id = 1, 2, "elsewhere"
    assert (copy.stamp.sec, copy.stamp.nanosec, copy.frame_id) == (1700000000, 123, "camera_optical")
