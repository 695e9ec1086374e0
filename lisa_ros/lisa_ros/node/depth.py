"""The depth of one colour frame: checked, decoded on first use, and a 3D target for each mask.

A frame's depth partner (found by :mod:`.pairing`, or sent in a goal) stays a message until an
output needs 3D: a node whose ~/segmentation, result and ~/markers nobody reads decodes no depth.
Then it is checked in the order that costs least (frame, size from the headers, then the pixels),
so a wrong stream is refused before a decompression, and every refusal is one sentence that says
what to fix. For topic frames a refusal leaves the answer 2D with the sentence as its
``depth_status`` and is also reported (``on_refused``: a log line and a WARN on /diagnostics), as
an unusable stream is a setup to fix, not one frame's bad luck; a goal that brings an unusable
depth image is refused with INVALID_INPUT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage
from std_msgs.msg import Header

from lisa_ros.conversion.depth import (
    DepthConversionError,
    compressed_depth_msg_to_array,
    compressed_depth_size,
    depth_msg_to_array,
)
from lisa_ros.geometry import (
    GeometryError,
    Target3D,
    check_camera_matrix,
    depth_scale_factor,
    depth_to_meters,
    locate,
)

from .inputs import InputError

__all__ = ["DEPTH_TRANSPORTS", "DecodedDepth", "DepthSettings", "DepthPartner", "locate_masks"]

#: How the node subscribes depth: sensor_msgs/Image on 'depth', or image_transport's
#: compressedDepth (sensor_msgs/CompressedImage) on '<depth>/compressedDepth'.
DEPTH_TRANSPORTS = ("raw", "compressedDepth")


@dataclass(frozen=True)
class DepthSettings:
    """The depth parameters a job reads (see the parameter table for their meaning)."""

    max_skew_s: float = 0.05
    unit_scale: float = 0.0  # metres per unit of 16UC1 depth; 0: millimetres (REP 118)
    min_m: float = 0.1
    max_m: float = 10.0
    erode_px: int = 3


@dataclass(frozen=True)
class DecodedDepth:
    """Depth ready for :func:`lisa_ros.geometry.locate`."""

    header: Header  # the depth image's: the frame and time of every 3D output
    meters: np.ndarray  # float32, NaN where there is no reading
    camera_matrix: np.ndarray  # the colour camera's K, (3, 3)


#: Finds a frame's depth partner when it is needed: (depth message or None, camera info, why
#: there is no depth).
PartnerLookup = Callable[[], "tuple[Any, CameraInfo, InputError | None]"]


class DepthPartner:
    """What one colour frame has for 3D: a depth message and camera info, or why it has none.

    ``load`` decodes at most once; its result (or refusal) is kept, so the action result,
    ~/segmentation, ~/markers and ~/points of one answer share one decoding. A camera frame's
    partner is looked up only then (:meth:`paired_later`), among the depth images held when its
    job started and those that came since: one stamped like the frame is found even if it came
    in after the colour image, or was pushed out of the buffer during the inference.
    """

    def __init__(
        self,
        msg: Any = None,
        camera_info: CameraInfo | None = None,
        *,
        image_header: Header | None = None,
        settings: DepthSettings = DepthSettings(),
        missing: str = "",
    ) -> None:
        self._msg = msg
        self._camera_info = camera_info if camera_info is not None else CameraInfo()
        self._image_header = image_header if image_header is not None else Header()
        self._settings = settings
        self._missing = InputError(missing) if msg is None else None
        self._loaded: DecodedDepth | InputError | None = None
        self._lookup: PartnerLookup | None = None
        self._on_refused: Callable[[InputError], None] | None = None

    @classmethod
    def none(cls, reason: str) -> DepthPartner:
        """No depth for this frame, for ``reason`` (said in the result's depth_status)."""
        return cls(missing=reason)

    @classmethod
    def paired_later(
        cls,
        lookup: PartnerLookup,
        image_header: Header,
        settings: DepthSettings,
        on_refused: Callable[[InputError], None] | None = None,
    ) -> DepthPartner:
        """The depth ``lookup()`` finds for the frame of ``image_header``, on first use;
        ``on_refused`` is told once when the streams gave none usable (an error with a cause)."""
        depth = cls(image_header=image_header, settings=settings, missing="not looked up")
        depth._lookup = lookup
        depth._on_refused = on_refused
        return depth

    @property
    def settings(self) -> DepthSettings:
        return self._settings

    def load(self, image_hw: tuple[int, int]) -> DecodedDepth:
        """The decoded depth for a colour image of ``image_hw``; InputError says why there is
        none."""
        if self._lookup is not None:
            msg, self._camera_info, missing = self._lookup()
            self._lookup = None
            self._msg, self._missing = msg, missing if msg is None else None
        if self._loaded is None:
            if self._missing is not None:
                self._loaded = self._missing
            else:
                try:
                    self._loaded = self._decode(image_hw)
                except InputError as error:
                    self._loaded = InputError(str(error), error.cause)
            if isinstance(self._loaded, InputError) and self._loaded.cause and self._on_refused:
                self._on_refused(self._loaded)
        if isinstance(self._loaded, InputError):
            # A new exception every time, and none kept that was raised: a raised exception's
            # traceback holds the frames it passed through, with this object, the image and the
            # masks in their locals, a cycle that only Python's rare full collections free (the
            # node grew by ~45 MB a minute while following a camera without depth).
            raise InputError(str(self._loaded), self._loaded.cause)
        return self._loaded

    def _decode(self, image_hw: tuple[int, int]) -> DecodedDepth:
        msg = self._msg
        depth_frame, image_frame = msg.header.frame_id, self._image_header.frame_id
        if depth_frame != image_frame:
            raise InputError(
                f"the depth image is in frame '{depth_frame}' but the colour image in "
                f"'{image_frame}': 3D targets need depth registered (aligned) to the colour "
                "camera, e.g. a RealSense's aligned_depth_to_color/image_raw",
                cause="depth",
            )
        compressed = isinstance(msg, CompressedImage)
        try:
            width, height = compressed_depth_size(msg) if compressed else (msg.width, msg.height)
            # Before decoding: a depth image may be no larger than the (size-checked) colour image.
            depth_scale_factor(image_hw, (height, width))
            camera_matrix = _camera_matrix(self._camera_info)
            pixels = compressed_depth_msg_to_array(msg) if compressed else depth_msg_to_array(msg)
            unit = self._settings.unit_scale if pixels.dtype == np.uint16 else 0.0
            meters = depth_to_meters(pixels, unit or None)
        except (DepthConversionError, GeometryError) as error:
            raise InputError(f"depth image not usable: {error}", cause="depth") from error
        return DecodedDepth(header=msg.header, meters=meters, camera_matrix=camera_matrix)


def _camera_matrix(camera_info: CameraInfo) -> np.ndarray:
    try:
        return check_camera_matrix(np.asarray(camera_info.k, dtype=np.float64))
    except GeometryError as error:
        raise InputError(
            f"the colour camera's camera_info cannot place depth in 3D ({error}): is "
            "'camera_info' remapped to the colour camera's calibration?",
            cause="camera_info",
        ) from error


def locate_masks(
    masks: np.ndarray, depth: DecodedDepth, settings: DepthSettings, *, with_points: bool
) -> list[Target3D]:
    """One 3D target per mask of ``masks`` (N, H, W) in ``depth``'s frame; ``with_points`` also
    gathers each mask's points (for ~/points), which costs about as much again."""
    return [
        locate(
            mask,
            depth.meters,
            depth.camera_matrix,
            min_depth=settings.min_m,
            max_depth=settings.max_m,
            erode_px=settings.erode_px,
            with_points=with_points,
        )
        for mask in masks
    ]
