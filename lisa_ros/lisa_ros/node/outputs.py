"""Turning one LISA answer on one frame into ROS messages, and publishing them.

Every message built here carries the header of the source frame (stamp and frame_id), so outputs
can be matched with the camera image, synchronised with other sensors and placed in TF.

Images are built only for topics that have subscribers: the overlay and the label image cost a few
milliseconds per frame that a headless robot should not pay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

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

    The per-mask images are built once and shared by the action result and ~/segmentation.
    """

    header: Header
    camera_info: CameraInfo
    instruction: str
    image_rgb: np.ndarray
    result: SegmentationResult
    node_timings: Mapping[str, float] = field(default_factory=dict)
    _mask_images: list[Image] | None = field(default=None, repr=False)

    @property
    def mask_images(self) -> list[Image]:
        if self._mask_images is None:
            self._mask_images = mask_images(self.result.masks, self.header)
        return self._mask_images

    @property
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
        fill_image_msg(image, mask.view(np.uint8) * np.uint8(255), "mono8", header=copy_header(header))
        images.append(image)
    return images


def label_image_msg(masks: np.ndarray, header: Header) -> Image:
    """All masks in one mono8 image: 0 background, ``k`` for mask ``k`` (1-based), later wins."""
    image = Image()
    fill_image_msg(image, label_image(masks), "mono8", header=copy_header(header))
    return image


def overlay_msg(image_rgb: np.ndarray, masks: np.ndarray, text: str, header: Header) -> Image:
    """The frame with the masks in distinct colours and the answer written on it, as bgr8."""
    overlay_rgb = draw_overlay(image_rgb, masks, text)
    image = Image()
    fill_image_msg(image, np.ascontiguousarray(overlay_rgb[..., ::-1]), "bgr8", header=copy_header(header))
    return image


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

    def __init__(self, publishers: Mapping[str, Any]) -> None:
        self._text = publishers["text"]
        self._masks = publishers["masks"]
        self._overlay = publishers["overlay"]
        self._segmentation = publishers["segmentation"]

    def publish(self, answer: Answer) -> None:
        """Publish ``answer`` on every topic (images only where someone listens)."""
        self._text.publish(String(data=answer.result.text))
        masks = answer.result.masks
        if self._masks.get_subscription_count() > 0:
            self._masks.publish(label_image_msg(masks, answer.header))
        if self._overlay.get_subscription_count() > 0:
            self._overlay.publish(overlay_msg(answer.image_rgb, masks, answer.result.text, answer.header))
        self._segmentation.publish(answer.segmentation_msg())
