"""Frames are paired with the camera info and depth image of their own stamp, whichever topic
delivered first."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from lisa_ros.conversion.images import fill_image_msg
from lisa_ros.node.depth import DepthSettings
from lisa_ros.node.frames import Frame
from lisa_ros.node.pairing import MAX_WAITING, CameraStreams, StampedBuffer


def info(sec: int, nanosec: int = 0, width: int = 640) -> CameraInfo:
    return CameraInfo(header=Header(stamp=Time(sec=sec, nanosec=nanosec)), width=width)


def depth(sec: int, nanosec: int = 0, width: int = 640) -> Image:
    return Image(header=Header(stamp=Time(sec=sec, nanosec=nanosec)), width=width)


def depth_msg(sec: int, millimetres: int) -> Image:
    """A 4x4 16UC1 depth image of one reading."""
    header = Header(stamp=Time(sec=sec), frame_id="cam")
    return fill_image_msg(Image(), np.full((4, 4), millimetres, np.uint16), "16UC1", header)


def calibrated_streams(depth_buffer: int) -> CameraStreams:
    """Streams with a 4x4 camera's calibration at stamp 5 and a depth buffer of that size."""
    streams = CameraStreams(depths=StampedBuffer(depth_buffer))
    k = [4.0, 0.0, 1.5, 0.0, 4.0, 1.5, 0.0, 0.0, 1.0]
    streams.camera_infos.add(CameraInfo(header=Header(stamp=Time(sec=5)), k=k))
    return streams


def test_exact_stamp_wins_even_when_newer_infos_arrived() -> None:
    streams = CameraStreams()
    for sec in (10, 11, 12):
        streams.camera_infos.add(info(sec, width=sec))
    assert streams.camera_info_for(Time(sec=11)).width == 11


def test_without_an_exact_match_the_nearest_stamp() -> None:
    streams = CameraStreams()
    streams.camera_infos.add(info(10, width=1))
    streams.camera_infos.add(info(10, 500_000_000, width=2))
    streams.camera_infos.add(info(12, width=3))
    assert streams.camera_info_for(Time(sec=11)).width == 2
    assert streams.camera_info_for(Time(sec=11, nanosec=800_000_000)).width == 3
    assert streams.camera_info_for(Time(sec=9)).width == 1  # older than every info: the oldest


def test_a_tie_goes_to_the_newer_message() -> None:
    buffer: StampedBuffer[Image] = StampedBuffer(5)
    buffer.add(depth(10, width=1))
    buffer.add(depth(12, width=2))
    assert buffer.nearest(Time(sec=11)).width == 2


def test_depth_further_than_the_skew_is_no_partner() -> None:
    buffer: StampedBuffer[Image] = StampedBuffer(5)
    buffer.add(depth(10, width=1))
    buffer.add(depth(10, 40_000_000, width=2))
    assert buffer.nearest(Time(sec=10, nanosec=30_000_000), max_skew_s=0.02).width == 2
    assert buffer.nearest(Time(sec=10, nanosec=70_000_000), max_skew_s=0.02) is None
    assert buffer.nearest(Time(sec=10, nanosec=70_000_000), max_skew_s=0.05).width == 2


def test_no_camera_info_gives_an_empty_one_and_the_buffers_are_bounded() -> None:
    streams = CameraStreams(camera_infos=StampedBuffer(3))
    assert streams.camera_info_for(Time(sec=1)) == CameraInfo()
    for sec in range(10):
        streams.camera_infos.add(info(sec, width=sec))
    assert streams.camera_info_for(Time(sec=2)).width == 7  # 0..6 forgotten: 7 is the nearest left
    streams.clear()
    assert streams.camera_info_for(Time(sec=2)) == CameraInfo()


def test_time_since_the_last_message_tracks_a_stream_that_stops() -> None:
    now = [100.0]
    buffer: StampedBuffer[Image] = StampedBuffer(5, clock=lambda: now[0])
    assert buffer.seconds_since_last() is None
    buffer.add(depth(1))
    now[0] = 103.5
    assert buffer.seconds_since_last() == 3.5
    buffer.clear()
    assert buffer.seconds_since_last() is None and buffer.newest() is None


def test_a_frame_keeps_its_depth_partner_while_a_long_inference_fills_the_buffer() -> None:
    streams = calibrated_streams(depth_buffer=3)
    streams.depths.add(depth_msg(5, 1000))
    frame = Frame(Image(header=Header(stamp=Time(sec=5), frame_id="cam")), streams)
    depth = frame.depth(DepthSettings(max_skew_s=0.5))  # taken when the job starts
    for sec in range(6, 12):  # a long inference: newer depth images push stamp 5 out
        streams.depths.add(depth_msg(sec, 3000))
    assert streams.depths.nearest(Time(sec=5), 0.5) is None
    loaded = depth.load((4, 4))
    assert loaded.header.stamp.sec == 5 and float(loaded.meters[0, 0]) == 1.0


def test_a_frames_partner_that_comes_after_it_is_kept_until_the_lookup() -> None:
    # An idle node takes a frame before its depth image, published a moment later, has come;
    # the inference then lets newer ones push that depth image out of the buffer.
    streams = calibrated_streams(depth_buffer=3)
    streams.depths.add(depth_msg(4, 2000))  # the previous frame's, within the skew
    frame = Frame(Image(header=Header(stamp=Time(sec=5), frame_id="cam")), streams)
    depth = frame.depth(DepthSettings(max_skew_s=1.5))  # taken when the job starts
    for sec in range(5, 12):  # its own depth image, then those a long inference lets in
        streams.depths.add(depth_msg(sec, 1000 if sec == 5 else 3000))
    assert streams.depths.nearest(Time(sec=5)).header.stamp.sec == 9  # 5 pushed out
    loaded = depth.load((4, 4))
    assert loaded.header.stamp.sec == 5 and float(loaded.meters[0, 0]) == 1.0


def test_frames_waiting_for_a_partner_are_bounded_and_let_go_when_it_comes() -> None:
    buffer: StampedBuffer[Image] = StampedBuffer(2)
    buffer.add(depth(1))
    assert buffer.hold(Time(sec=1)).messages()[-1].header.stamp.sec == 1  # its partner is there
    waiting = [buffer.hold(Time(sec=2)) for _ in range(MAX_WAITING + 4)]
    buffer.add(depth(2))
    # The oldest four went beyond the bound: they keep what was held when they asked.
    assert [c.messages()[-1].header.stamp.sec for c in waiting] == [1] * 4 + [2] * MAX_WAITING
    buffer.add(depth(3))  # nothing later is nearer: the frames that got stamp 2 keep it
    assert [c.messages()[-1].header.stamp.sec for c in waiting] == [1] * 4 + [2] * MAX_WAITING
    assert buffer.hold(Time(sec=3)).messages()[-1].header.stamp.sec == 3
