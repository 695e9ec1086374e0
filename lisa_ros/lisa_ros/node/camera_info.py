"""Pairing camera frames with their sensor_msgs/CameraInfo by stamp.

A camera driver publishes an image and its camera info with the same stamp, on two topics, and
either may arrive first. The node keeps the last few camera infos and looks the frame's stamp up
when the frame is processed (on the inference thread, by which time its info has arrived): an exact
stamp match as message_filters' ExactTime policy would give, else the newest info not newer than
the frame, else the newest. Frames of a camera that publishes no camera info get an empty one.
"""

from __future__ import annotations

import threading
from collections import deque

from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo

__all__ = ["CameraInfoCache"]


def _nanoseconds(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class CameraInfoCache:
    """The last ``size`` camera infos, thread-safe; :meth:`for_stamp` finds a frame's."""

    def __init__(self, size: int = 30) -> None:
        self._infos: deque[CameraInfo] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, info: CameraInfo) -> None:
        with self._lock:
            self._infos.append(info)

    def clear(self) -> None:
        with self._lock:
            self._infos.clear()

    def for_stamp(self, stamp: Time) -> CameraInfo:
        with self._lock:
            infos = list(self._infos)
        if not infos:
            return CameraInfo()
        wanted = _nanoseconds(stamp)
        older = [info for info in infos if _nanoseconds(info.header.stamp) <= wanted]
        if older:
            return max(older, key=lambda info: _nanoseconds(info.header.stamp))
        return infos[-1]
