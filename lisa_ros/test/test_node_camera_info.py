"""Frames are paired with the camera info of their own stamp, whichever topic delivered first."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from lisa_ros.node.camera_info import CameraInfoCache


def info(sec: int, nanosec: int = 0, width: int = 640) -> CameraInfo:
    return CameraInfo(header=Header(stamp=Time(sec=sec, nanosec=nanosec)), width=width)


def test_exact_stamp_wins_even_when_newer_infos_arrived() -> None:
    cache = CameraInfoCache()
    for sec in (10, 11, 12):
        cache.add(info(sec, width=sec))
    assert cache.for_stamp(Time(sec=11)).width == 11


def test_without_an_exact_match_the_newest_info_not_newer_than_the_frame() -> None:
    cache = CameraInfoCache()
    cache.add(info(10, width=1))
    cache.add(info(10, 500_000_000, width=2))
    cache.add(info(12, width=3))
    assert cache.for_stamp(Time(sec=11)).width == 2
    assert cache.for_stamp(Time(sec=9)).width == 3  # older than every info: the newest


def test_no_camera_info_gives_an_empty_one_and_the_cache_is_bounded() -> None:
    cache = CameraInfoCache(size=3)
    assert cache.for_stamp(Time(sec=1)) == CameraInfo()
    for sec in range(10):
        cache.add(info(sec, width=sec))
    assert cache.for_stamp(Time(sec=2)).width == 9  # 0..6 forgotten: nothing older than 2 is left
    cache.clear()
    assert cache.for_stamp(Time(sec=2)) == CameraInfo()
