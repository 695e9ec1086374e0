"""Turning one LISA answer on one frame into ROS messages, and publishing them.

Every 2D message built here carries the header of the source frame (stamp and frame_id), so
outputs can be matched with the camera image, synchronised with other sensors and placed in TF.
Every 3D output (the targets in mask_info, ~/markers, ~/points) is in the frame of the depth image
paired with it, and carries that image's header.

A message is built only for a topic someone subscribes to, and at most once per answer: the
overlay, the label image, the full-size masks of ~/segmentation, the 3D targets and the point
cloud cost milliseconds per frame that a headless robot, or a camera-rate stream, should not pay.
Pixels are only touched by whole-array numpy and OpenCV calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import cv2
import numpy as np
from lisa_ros_interfaces.msg import MaskInfo, Segmentation, StageTime
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, RegionOfInterest
from std_msgs.msg import Header, String
from visualization_msgs.msg import MarkerArray

from lisa_ros.conversion.images import image_msg_pixels
from lisa_ros.geometry import Target3D
from lisa_ros.model.follow_quality import MaskDrift
from lisa_ros.model.result import MaskRecord, SegmentationResult
from lisa_ros.visualization import draw_overlay, label_image

from .depth import DecodedDepth, DepthPartner, locate_masks
from .headers import copy_header
from .inputs import InputError
from .pairing import nanoseconds
from .target_messages import fill_target, marker_array, point_cloud

__all__ = [
    "Answer",
    "Followed",
    "ResultPublishers",
    "mask_images",
    "mask_info",
    "stage_times",
]


@dataclass(frozen=True)
class Followed:
    """What a followed answer rests on: the reasoned frame, and how far each mask moved since."""

    reasoned_header: Header
    drifts: Sequence[MaskDrift]


@dataclass
class Answer:
    """One answer of LISA on one frame, with everything the output messages need.

    The per-mask images, infos and 3D targets are built on first use and shared by the action
    result, ~/segmentation, ~/markers and ~/points.
    """

    header: Header
    camera_info: CameraInfo
    instruction: str
    image_rgb: np.ndarray
    result: SegmentationResult
    depth: DepthPartner = field(default_factory=lambda: DepthPartner.none("no depth image"))
    followed: Followed | None = None  # None: LISA reasoned on this very frame
    node_timings: Mapping[str, float] = field(default_factory=dict)
    # True: the masks decoded while the answer is still being written (``text`` so far)
    partial: bool = False

    @cached_property
    def mask_images(self) -> list[Image]:
        return mask_images(self.result.masks, self.header)

    @cached_property
    def mask_infos(self) -> list[MaskInfo]:
        count = len(self.result.mask_logits)
        drifts = self.followed.drifts if self.followed is not None else [None] * count
        return [
            fill_target(mask_info(record, drift), target, self.depth_status)
            for record, target, drift in zip(
                self.result.mask_records(), self.targets, drifts, strict=True
            )
        ]

    @property
    def reasoned_header(self) -> Header:
        """The header of the frame LISA reasoned on (this frame's own when it did here)."""
        return copy_header(self.followed.reasoned_header if self.followed else self.header)

    @property
    def reasoning_age(self) -> float:
        """This frame's stamp minus the reasoned frame's, in seconds."""
        reasoned = self.followed.reasoned_header if self.followed else self.header
        return (nanoseconds(self.header.stamp) - nanoseconds(reasoned.stamp)) / 1e9

    @cached_property
    def _depth_frame(self) -> DecodedDepth | str:
        """The decoded depth, or why there is none."""
        if len(self.result.mask_logits) == 0:
            return "the answer has no mask"
        try:
            return self.depth.load(self.image_rgb.shape[:2])
        except InputError as error:
            return str(error)

    @cached_property
    def targets(self) -> list[Target3D | None]:
        """Per mask, its 3D target (centroid and extents, without its points), or None when the
        frame has no usable depth."""
        return self._locate(with_points=False)

    @cached_property
    def _cloud_targets(self) -> list[Target3D | None]:
        """The targets with their points, located again for ~/points alone: the points cost as
        much as the rest of locating, and only a cloud subscriber needs them."""
        return self._locate(with_points=True)

    def _locate(self, *, with_points: bool) -> list[Target3D | None]:
        depth = self._depth_frame
        if isinstance(depth, str):
            return [None] * len(self.result.mask_logits)
        masks, settings = self.result.masks, self.depth.settings
        return list(locate_masks(masks, depth, settings, with_points=with_points))

    @property
    def depth_header(self) -> Header:
        """The header of the depth the targets are in (the image's when there is none)."""
        depth = self._depth_frame
        return copy_header(depth.header if isinstance(depth, DecodedDepth) else self.header)

    @property
    def depth_status(self) -> str:
        depth = self._depth_frame
        return depth if isinstance(depth, str) else ""

    @property
    def timings(self) -> list[StageTime]:
        return stage_times({**self.node_timings, **self.result.timings})

    def segmentation_msg(self) -> Segmentation:
        return Segmentation(
            header=copy_header(self.header),
            camera_info=self.camera_info,
            instruction=self.instruction,
            text=self.result.text,
            followed=self.followed is not None,
            partial=self.partial,
            reasoned_header=self.reasoned_header,
            reasoning_age=self.reasoning_age,
            masks=self.mask_images,
            mask_info=self.mask_infos,
            depth_header=self.depth_header,
            depth_status=self.depth_status,
            timings=self.timings,
        )

    def markers_msg(self) -> MarkerArray:
        return marker_array(self.targets, self.result.phrases, self.depth_header)

    def points_msg(self) -> PointCloud2:
        return point_cloud(self._cloud_targets, self.image_rgb, self.depth_header)


# The images below are computed straight into their messages' data (image_msg_pixels): one buffer
# a message instead of an array, a bytes object and rclpy's copy of it.


def mask_images(masks: np.ndarray, header: Header) -> list[Image]:
    """One mono8 image per mask: 255 inside, 0 outside, with the source ``header``."""
    images = []
    for mask in masks:
        image = Image(header=copy_header(header))
        pixels = image_msg_pixels(image, *mask.shape, "mono8")
        np.multiply(mask.view(np.uint8), np.uint8(255), out=pixels)
        images.append(image)
    return images


def label_image_msg(masks: np.ndarray, header: Header) -> Image:
    """All masks in one mono8 image: 0 background, ``k`` for mask ``k`` (1-based), later wins."""
    image = Image(header=copy_header(header))
    label_image(masks, out=image_msg_pixels(image, *masks.shape[1:], "mono8"))
    return image


def overlay_msg(image_rgb: np.ndarray, masks: np.ndarray, text: str, header: Header) -> Image:
    """The frame with the masks in distinct colours and the answer written on it, as bgr8."""
    image = Image(header=copy_header(header))
    pixels = image_msg_pixels(image, *image_rgb.shape[:2], "bgr8")
    # cvtColor swaps the channels many times faster than copying a reversed numpy view.
    cv2.cvtColor(draw_overlay(image_rgb, masks, text), cv2.COLOR_RGB2BGR, dst=pixels)
    return image


def mask_info(record: MaskRecord, drift: MaskDrift | None = None) -> MaskInfo:
    """``record`` as the message carries it (``lisa-ask`` reads it back with ``mask_record``),
    with how far it moved from the reasoned mask when it was followed (``drift``)."""
    x, y, width, height = record.bbox_xywh
    info = MaskInfo(
        seg_index=record.index,
        phrase=record.phrase,
        text_offset=record.text_offset,
        bbox=RegionOfInterest(x_offset=x, y_offset=y, width=width, height=height),
        area=record.area_px,
        score=record.score,
        area_ratio=1.0,
        centre_shift=0.0,
        box_iou=1.0,
    )
    if drift is not None:
        info.area_ratio = min(drift.area_ratio, 3.0e38)  # float32: inf stays readable as large
        info.centre_shift, info.box_iou = drift.centre_shift, drift.box_iou
    return info


def stage_times(timings: Mapping[str, float]) -> list[StageTime]:
    """StageTime entries for the durations (seconds) in ``timings``."""
    return [StageTime(stage=stage, seconds=float(seconds)) for stage, seconds in timings.items()]


class ResultPublishers:
    """The node's result topics: ~/text, ~/masks (label image), ~/overlay, ~/segmentation,
    ~/markers and ~/points.

    Args:
        publishers: name -> (lifecycle) publisher for each of :attr:`TOPICS`.
    """

    TOPICS = ("text", "masks", "overlay", "segmentation", "markers", "points")

    def __init__(self, publishers: Mapping[str, Any]) -> None:
        self._publishers = {topic: publishers[topic] for topic in self.TOPICS}

    def publish(self, answer: Answer) -> None:
        """Publish ``answer`` on every topic someone subscribes to."""
        for topic, message in self.messages(answer).items():
            self._publishers[topic].publish(message)

    def messages(self, answer: Answer) -> dict[str, Any]:
        """The message of ``answer`` for each topic that has a subscriber, built once each."""
        builders: dict[str, Callable[[], Any]] = {
            "text": lambda: String(data=answer.result.text),
            "masks": lambda: label_image_msg(answer.result.masks, answer.header),
            "overlay": lambda: overlay_msg(
                answer.image_rgb, answer.result.masks, answer.result.text, answer.header
            ),
            "segmentation": answer.segmentation_msg,
            "markers": answer.markers_msg,
            "points": answer.points_msg,
        }
        if answer.followed is not None or answer.partial:
            # a followed frame says nothing new (the answer is the reasoned one), and ~/text
            # carries complete answers only
            del builders["text"]
        return {
            topic: builders[topic]()
            for topic, publisher in self._publishers.items()
            if topic in builders and publisher.get_subscription_count() > 0
        }
