"""A camera frame as the node received it: converted to RGB, and paired with its depth image,
only when a job needs it (on the inference thread, never in the subscription callback)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage
from std_msgs.msg import Header

from .depth import DepthPartner, DepthSettings
from .inputs import ImageLimits, InputError, compressed_to_rgb, image_to_rgb
from .pairing import CameraStreams, nanoseconds

__all__ = ["Frame"]


@dataclass(frozen=True)
class Frame:
    """A camera frame as received (conversion and pairing are deferred to the inference thread)."""

    msg: Any  # sensor_msgs/Image or sensor_msgs/CompressedImage
    streams: CameraStreams | None = None  # None: an image without a camera (goal image)
    received: float = field(default_factory=time.perf_counter)  # when the node got it
    # When the node got it by the node's clock (seconds; sim time when use_sim_time is set), for
    # the age that max_frame_age_s bounds; None: unknown (never too old).
    received_at: float | None = None

    @property
    def header(self) -> Header:
        return self.msg.header

    @property
    def camera_info(self) -> CameraInfo:
        """The camera info published with this frame (empty when there is none)."""
        if self.streams is None:
            return CameraInfo()
        return self.streams.camera_info_for(self.msg.header.stamp)

    def depth(self, settings: DepthSettings) -> DepthPartner:
        """The depth image paired with this frame, looked up and decoded only when an output
        needs it."""
        streams = self.streams
        if streams is None:
            return DepthPartner.none("the image came without a depth image")
        stamp = self.msg.header.stamp
        # The candidates held now, the first to arrive stamped at or after the frame, and those
        # held at the lookup: the frame's own depth image may come a little after it, and a long
        # inference must not push it out meanwhile.
        candidates = streams.depths.hold(stamp)

        def lookup() -> tuple[Any, CameraInfo, InputError | None]:
            held = candidates.messages()
            depth = streams.depths.nearest(stamp, settings.max_skew_s, also=held)
            if depth is None:
                reason = _no_depth_reason(streams, held, stamp, settings.max_skew_s)
                return None, CameraInfo(), reason
            return depth, streams.camera_info_for(stamp), None

        def refused(error: InputError) -> None:
            streams.report(error.cause, f"no 3D targets: {error}")

        return DepthPartner.paired_later(lookup, self.msg.header, settings, refused)

    def to_rgb(self, limits: ImageLimits) -> np.ndarray:
        if isinstance(self.msg, CompressedImage):
            return compressed_to_rgb(self.msg, limits)
        return image_to_rgb(self.msg, limits)


def _no_depth_reason(
    streams: CameraStreams, held: list[Any], stamp: Any, max_skew_s: float
) -> InputError:
    """Why a frame has no depth partner; a stream problem (cause "depth") only when depth comes
    but not with the frame's stamp: a camera without depth is a 2D camera, not a fault."""
    nearest = streams.depths.nearest(stamp, also=held)
    if nearest is None:
        return InputError(
            "no depth image has arrived on the depth topic: remap 'depth' to the depth image "
            "registered to the colour camera for 3D targets"
        )
    skew = abs(nanoseconds(nearest.header.stamp) - nanoseconds(stamp)) / 1e9
    return InputError(
        f"no depth image within depth_max_skew_s={max_skew_s:g} s of the image (the nearest is "
        f"{skew:.3f} s away): is the depth stream running, and stamped like the colour images?",
        cause="depth",
    )
