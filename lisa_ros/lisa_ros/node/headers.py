"""Headers of the node's outputs, copied from their source message."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from std_msgs.msg import Header

__all__ = ["copy_header"]


def copy_header(header: Header) -> Header:
    """A copy of ``header``, so later changes to the source message cannot leak into outputs."""
    stamp = Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec)  # not the source's Time object
    return Header(stamp=stamp, frame_id=header.frame_id)
