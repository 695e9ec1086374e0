"""Turning one LISA answer on one frame into ROS messages, and publishing them.

Every message built here carries the header of the source frame (stamp and frame_id), so outputs
can be matched with the camera image, synchronised with other sensors and placed in TF.

A message is built only for a topic someone subscribes to, and at most once per answer: the
overlay, the label image and the full-size masks of ~/segmentation cost milliseconds per frame
that a headless robot, or a camera-rate stream, should not pay. Pixels are only touched by
whole-array numpy and OpenCV calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from lisa_ros_interfaces.msg import MaskInfo, Segmentation, StageTime
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
from std_msgs.msg import Header, String

from lisa_ros.image_conversion import fill_image_msg
from lisa_ros.model.result import MaskRecord, SegmentationResult
from lisa_ros.visualization import draw_overlay, label_image

__all__ = [
    "Answer",
    "ResultPublishers",
    "copy_header",
    "mask_images",
    "mask_info",
    "stage_times",
]


def copy_header(header: Header) -> Header:
    """A copy of ``header``, so later changes to the source message cannot leak into outputs."""
    stamp = Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec)  # not the source's Time object
    return Header(stamp=stamp, frame_id=header.frame_id)


@dataclass
class Answer:
    """One answer of LISA on one frame, with everything the output messages need.

    The per-mask images and infos are built on first use and shared by the action result and
    ~/segmentation.
    """

    header: Header
    camera_info: CameraInfo
    instruction: str
    image_rgb: np.ndarray
    result: SegmentationResult
    node_timings: Mapping[str, float] = field(default_factory=dict)

    @cached_property
    def mask_images(self) -> list[Image]:
        return mask_images(self.result.masks, self.header)

    @cached_property
    def mask_infos(self) -> list[MaskInfo]:
        return [mask_info(record) for record in self.result.mask_records()]

    @property
    def timings(self) -> list[StageTime]:
        return stage_times({**self.node_timings, **self.result.timings})

    def segmentation_msg(self) -> Segmentation:
        return Segmentation(
            header=copy_header(self.header),
            camera_info=self.camera_info,
            instruction=self.instruction,
            text=self.result.text,
            masks=self.mask_images,
            mask_info=self.mask_infos,
            timings=self.timings,
        )


def mask_images(masks: np.ndarray, header: Header) -> list[Image]:
    """One mono8 image per mask: 255 inside, 0 outside, with the source ``header``."""
    images = []
    for mask in masks:
        image = Image()
        fill_image_msg(
            image, mask.view(np.uint8) * np.uint8(255), "mono8", header=copy_header(header)
        )
        images.append(image)
    return images


def label_image_msg(masks: np.ndarray, header: Header) -> Image:
    """All masks in one mono8 image: 0 background, ``k`` for mask ``k`` (1-based), later wins."""
    return fill_image_msg(Image(), label_image(masks), "mono8", header=copy_header(header))


def overlay_msg(image_rgb: np.ndarray, masks: np.ndarray, text: str, header: Header) -> Image:
    """The frame with the masks in distinct colours and the answer written on it, as bgr8."""
    # cvtColor swaps the channels many times faster than copying a reversed numpy view.
    overlay_bgr = cv2.cvtColor(draw_overlay(image_rgb, masks, text), cv2.COLOR_RGB2BGR)
    return fill_image_msg(Image(), overlay_bgr, "bgr8", header=copy_header(header))


def mask_info(record: MaskRecord) -> MaskInfo:
    """``record`` as the message carries it (``lisa-ask`` reads it back with ``mask_record``)."""
    x, y, width, height = record.bbox_xywh
    return MaskInfo(
        seg_index=record.index,
        phrase=record.phrase,
        text_offset=record.text_offset,
        bbox=RegionOfInterest(x_offset=x, y_offset=y, width=width, height=height),
        area=record.area_px,
        score=record.score,
    )


def stage_times(timings: Mapping[str, float]) -> list[StageTime]:
    """StageTime entries for the durations (seconds) in ``timings``."""
    return [StageTime(stage=stage, seconds=float(seconds)) for stage, seconds in timings.items()]


class ResultPublishers:
    """The node's result topics: ~/text, ~/masks (label image), ~/overlay and ~/segmentation.

    Args:
        publishers: name -> (lifecycle) publisher for "text", "masks", "overlay", "segmentation".
    """

    TOPICS = ("text", "masks", "overlay", "segmentation")

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
        }
        return {
            topic: builders[topic]()
            for topic, publisher in self._publishers.items()
            if publisher.get_subscription_count() > 0
        }
