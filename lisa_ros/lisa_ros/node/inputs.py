"""Checking what users send the node: images (raw or compressed) and instructions.

Every rejection raises :class:`InputError` with one sentence that says what was wrong and what to
do, which the node puts in the action result (``INVALID_INPUT``) or in a log line and a diagnostic
for topics. Sizes are checked *before* decoding, so an oversized frame or a decompression bomb
costs nothing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from lisa_ros.conversion.images import (
    ImageConversionError,
    compressed_msg_to_array,
    image_msg_to_array,
    to_rgb8,
)

__all__ = ["ImageLimits", "InputError", "check_instruction", "compressed_to_rgb", "image_to_rgb"]


class InputError(ValueError):
    """Input the node cannot use; the message is meant for the person who sent it.

    ``cause`` names the input at fault ("image", "depth", "camera_info", "instruction") when it
    is a stream to report as a whole (logged once per cause, see :mod:`.diagnostics`); "" when
    nothing is wrong with the streams (e.g. a camera without depth answers in 2D).
    """

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class ImageLimits:
    min_side: int
    max_side: int


def check_image_size(width: int, height: int, limits: ImageLimits) -> None:
    """Refuse empty images and images outside ``[min_side, max_side]`` pixels per side."""
    if width <= 0 or height <= 0:
        raise InputError(f"the image is empty ({width}x{height}): send a frame with pixels in it")
    if min(width, height) < limits.min_side:
        raise InputError(
            f"the image is {width}x{height} pixels; both sides must be at least {limits.min_side} "
            "(parameter min_image_side)"
        )
    if max(width, height) > limits.max_side:
        raise InputError(
            f"the image is {width}x{height} pixels; the node accepts at most {limits.max_side} per "
            "side (parameter max_image_side): downscale it or raise the limit"
        )


def image_to_rgb(msg: Any, limits: ImageLimits) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 ``(H, W, 3)``; InputError for anything unusable."""
    check_image_size(msg.width, msg.height, limits)
    try:
        return to_rgb8(image_msg_to_array(msg), msg.encoding)
    except ImageConversionError as error:
        raise InputError(str(error)) from error


def compressed_to_rgb(msg: Any, limits: ImageLimits) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> RGB uint8 ``(H, W, 3)``; InputError if unusable."""
    width, height = _compressed_size(bytes(msg.data), msg.format)
    check_image_size(width, height, limits)
    try:
        array, encoding = compressed_msg_to_array(msg)
        return to_rgb8(array, encoding)
    except ImageConversionError as error:
        raise InputError(str(error)) from error


def _compressed_size(data: bytes, declared_format: str) -> tuple[int, int]:
    """Width and height from a jpeg/png header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InputError("the compressed image holds no data: send a jpeg or png")
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError):
        raise InputError(
            f"the compressed image ({len(data)} bytes, format {declared_format!r}) is not a "
            "readable jpeg or png: check the publisher's image_transport plugin"
        ) from None


def check_instruction(instruction: str, max_chars: int) -> str:
    """Return the instruction without surrounding whitespace; InputError if empty or too long."""
    if len(instruction) > max_chars:
        raise InputError(
            f"the instruction has {len(instruction)} characters; the limit is {max_chars} "
            "(parameter max_instruction_chars): shorten it"
        )
    stripped = instruction.strip()
    if not stripped:
        raise InputError(
            "the instruction is empty: say what to segment, e.g. 'the mug nearest to the robot'"
        )
    return stripped
