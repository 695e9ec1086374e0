"""The node's output messages: headers copied from the source frame, one record per mask as the
CLIs save it."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed in this venv: run 'make setup'")
pytest.importorskip(
    "lisa_ros_interfaces", reason="lisa_ros_interfaces is not built: run 'make setup'"
)

from builtin_interfaces.msg import Time  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from test_mask_record import two_masks  # noqa: E402

from lisa_ros.cli_io import result_record  # noqa: E402
from lisa_ros.node.ask import mask_record  # noqa: E402
from lisa_ros.node.outputs import copy_header, mask_info  # noqa: E402


def test_copy_header_shares_nothing_with_the_source_header() -> None:
    source = Header(stamp=Time(sec=1700000000, nanosec=123), frame_id="camera_optical")
    copy = copy_header(source)
    source.stamp.sec, source.stamp.nanosec, source.frame_id = 1, 2, "elsewhere"
    assert (copy.stamp.sec, copy.stamp.nanosec) == (1700000000, 123)
    assert copy.frame_id == "camera_optical"


def test_mask_info_carries_the_record_that_lisa_ask_saves() -> None:
    result = two_masks()
    records = result.mask_records()
    infos = [mask_info(record) for record in records]
    assert [mask_record(info) for info in infos] == records
    assert (infos[1].seg_index, infos[1].text_offset, infos[1].area) == (1, 35, 16)
    box = infos[0].bbox
    assert (box.x_offset, box.y_offset, box.width, box.height) == (2, 1, 3, 2)
    # The same masks give the same result.json entries from lisa-segment and from lisa-ask.
    read_back = [mask_record(info) for info in infos]
    from_node = result_record({}, result.text, read_back, result.timings)
    assert from_node == result_record({}, result.text, records, result.timings)
