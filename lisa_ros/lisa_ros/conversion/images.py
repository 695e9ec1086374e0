"""Convert between ROS image messages and numpy arrays, without rclpy or cv_bridge.

The functions read and write the *fields* of ``sensor_msgs/Image`` (``height``, ``width``,
``encoding``, ``is_bigendian``, ``step``, ``data``) and ``sensor_msgs/CompressedImage``
(``format``, ``data``), so they work on rclpy messages and on any object with those attributes,
and the module imports without ROS. This is the one code path the node uses for every encoding:
the PyPI ``cv-bridge`` is broken on current numpy/OpenCV, and a real ``cv_bridge`` is not
everywhere.

Decoding is exact: :func:`image_msg_to_array` returns the pixels in their own dtype, honours
row padding (``step`` larger than a row) and ``is_bigendian``, and copies only when the byte
order must change. :func:`to_rgb8` then makes the RGB picture the model needs.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "COMPRESSED_ENCODINGS",
    "ENCODINGS",
    "ImageConversionError",
    "PixelFormat",
    "array_to_image_fields",
    "compressed_msg_to_array",
    "fill_image_msg",
    "image_msg_pixels",
    "image_msg_to_array",
    "pixel_format",
    "to_rgb8",
]


class ImageConversionError(ValueError):
    """An image message (or array) that cannot be converted; the message says what is wrong."""


@dataclass(frozen=True)
class PixelFormat:
    """How one ROS encoding lays out a pixel: the channel dtype and the number of channels."""

    dtype: np.dtype
    channels: int

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


def _build_encodings() -> dict[str, PixelFormat]:
    encodings = {
        "rgb8": PixelFormat(np.dtype(np.uint8), 3),
        "bgr8": PixelFormat(np.dtype(np.uint8), 3),
        "rgba8": PixelFormat(np.dtype(np.uint8), 4),
        "bgra8": PixelFormat(np.dtype(np.uint8), 4),
        "mono8": PixelFormat(np.dtype(np.uint8), 1),
        "rgb16": PixelFormat(np.dtype(np.uint16), 3),
        "bgr16": PixelFormat(np.dtype(np.uint16), 3),
        "rgba16": PixelFormat(np.dtype(np.uint16), 4),
        "bgra16": PixelFormat(np.dtype(np.uint16), 4),
        "mono16": PixelFormat(np.dtype(np.uint16), 1),
        # Packed 4:2:2, two bytes per pixel: UYVY and YUYV.
        "yuv422": PixelFormat(np.dtype(np.uint8), 2),
        "yuv422_yuy2": PixelFormat(np.dtype(np.uint8), 2),
    }
    for pattern in ("rggb", "bggr", "gbrg", "grbg"):  # raw sensor mosaics
        encodings[f"bayer_{pattern}8"] = PixelFormat(np.dtype(np.uint8), 1)
        encodings[f"bayer_{pattern}16"] = PixelFormat(np.dtype(np.uint16), 1)
    # The OpenCV-style generic names of sensor_msgs/image_encodings.hpp: 8UC3, 32FC1, ...
    depths = {
        "8U": np.uint8,
        "8S": np.int8,
        "16U": np.uint16,
        "16S": np.int16,
        "32S": np.int32,
        "32F": np.float32,
        "64F": np.float64,
    }
    for depth, dtype in depths.items():
        for channels in range(1, 5):
            encodings[f"{depth}C{channels}"] = PixelFormat(np.dtype(dtype), channels)
    return encodings


#: Every ``sensor_msgs/Image`` encoding :func:`image_msg_to_array` reads and
#: :func:`array_to_image_fields` writes.
ENCODINGS: dict[str, PixelFormat] = _build_encodings()

#: Compressed formats :func:`compressed_msg_to_array` decodes (``CompressedImage.format`` names
#: one of them, alone or as image_transport's ``"<encoding>; <codec> compressed <encoding>"``).
COMPRESSED_ENCODINGS = ("jpeg", "png")

# Channel orders to_rgb8 understands; the OpenCV generic 8-bit names follow OpenCV's BGR order.
_RGB_ORDER = {
    "rgb8": "rgb",
    "rgb16": "rgb",
    "rgba8": "rgba",
    "rgba16": "rgba",
    "bgr8": "bgr",
    "bgr16": "bgr",
    "8UC3": "bgr",
    "bgra8": "bgra",
    "bgra16": "bgra",
    "8UC4": "bgra",
}
_TO_RGB = {
    "rgb": None,
    "rgba": cv2.COLOR_RGBA2RGB,
    "bgr": cv2.COLOR_BGR2RGB,
    "bgra": cv2.COLOR_BGRA2RGB,
}
# OpenCV names a Bayer pattern by the second row's first two pixels, one row down from ROS's
# name for it (the same table as cv_bridge's).
_BAYER_TO_RGB = {
    "rggb": cv2.COLOR_BayerBG2RGB,
    "bggr": cv2.COLOR_BayerRG2RGB,
    "gbrg": cv2.COLOR_BayerGR2RGB,
    "grbg": cv2.COLOR_BayerGB2RGB,
}
_YUV422_TO_RGB = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2}
_NATIVE_BIG_ENDIAN = sys.byteorder == "big"


def pixel_format(encoding: str) -> PixelFormat:
    """Return the layout of ``encoding``, or raise :class:`ImageConversionError` naming the
    supported ones."""
    try:
        return ENCODINGS[encoding]
    except KeyError:
        named = ", ".join(
            name for name in ENCODINGS if not name[0].isdigit() and not name.startswith("bayer")
        )
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; supported: {named}, "
            "bayer_<rggb|bggr|gbrg|grbg><8|16> "
            "and the generic 8U/8S/16U/16S/32S/32F/64F with C1..C4 (e.g. 16UC1, 32FC1). "
            "Convert other images to rgb8/bgr8 first (e.g. with image_proc)"
        ) from None


def _byte_view(data: Any) -> np.ndarray:
    """``data`` (bytes, bytearray, memoryview, array.array, numpy array or list of ints) as a
    flat uint8 array, without a copy where the buffer protocol allows."""
    if isinstance(data, (list, tuple)):
        return _list_bytes(data)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as error:
        raise ImageConversionError(
            f"image data of type {type(data).__name__} is not a byte buffer: {error}"
        ) from None


def _list_bytes(data: list | tuple) -> np.ndarray:
    """A list of ints as uint8, refusing values outside 0..255 itself: numpy 1.x casts 300 to 44
    without a word (numpy 2 raises), and a wrapped byte is a wrong pixel, not an error."""
    try:
        values = np.array(data, dtype=np.int64)
    except (OverflowError, ValueError, TypeError) as error:
        raise ImageConversionError(
            f"image data is not a sequence of bytes (0..255): {error}"
        ) from None
    if values.size and not (0 <= values.min() and values.max() <= 255):
        raise ImageConversionError(
            "image data is not a sequence of bytes (0..255): "
            f"values from {values.min()} to {values.max()}"
        )
    return values.astype(np.uint8)


def image_msg_to_array(msg: Any) -> np.ndarray:
    """Return the pixels of a ``sensor_msgs/Image`` as a read-only numpy array.

    The array has the encoding's own dtype in native byte order and shape ``(H, W)`` for one
    channel or ``(H, W, C)``; channel order is the encoding's (a bgr8 image stays BGR). It is a
    view of ``msg.data`` when no byte swap is needed, so converting a camera frame costs no
    copy; call ``.copy()`` to modify it or keep it after changing the message.

    Raises:
        ImageConversionError: unsupported encoding, zero width or height, ``step`` smaller
            than a row of pixels, or ``data`` shorter than ``step * height``.
    """
    encoding = msg.encoding
    layout = pixel_format(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError(
            f"image has zero size ({width}x{height}, encoding {encoding!r}): nothing to convert"
        )
    row_bytes = width * layout.bytes_per_pixel
    if step < row_bytes:
        raise ImageConversionError(
            f"image step {step} is smaller than width x channels x bytes per channel = "
            f"{width} x {layout.channels} x {layout.dtype.itemsize} = {row_bytes} for "
            f"encoding {encoding!r}: step must be the length of one row in bytes"
        )
    data = _byte_view(msg.data)
    if data.size < step * height:
        raise ImageConversionError(
            f"image data has {data.size} bytes, fewer than step x height = {step} x {height} = "
            f"{step * height}: the message is truncated or its step/height are wrong"
        )

    rows = data[: step * height].reshape(height, step)[:, :row_bytes]  # drops row padding
    stored = layout.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    pixels = rows.view(stored)  # the last axis stays contiguous, so this is still a view
    if layout.dtype.itemsize > 1 and bool(msg.is_bigendian) != _NATIVE_BIG_ENDIAN:
        pixels = pixels.astype(layout.dtype)  # byte swap into native order (a copy)
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    pixels = pixels.reshape(shape)
    pixels.flags.writeable = False
    return pixels


def _compressed_codec(fmt: str) -> tuple[str, str]:
    """Split a CompressedImage ``format`` into (codec, declared source encoding or "")."""
    # image_transport writes "bgr8; jpeg compressed bgr8" or "16UC1; png compressed";
    # other publishers write just "jpeg" or "png".
    source, _, rest = fmt.partition(";")
    words = (rest or source).lower().replace("jpg", "jpeg").split()
    codec = next((word for word in words if word in COMPRESSED_ENCODINGS), "")
    return codec, source.strip() if rest else ""


def compressed_msg_to_array(msg: Any) -> tuple[np.ndarray, str]:
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg or png) into ``(array, encoding)``.

    OpenCV decodes colour images in BGR order, so the encoding is ``bgr8``/``bgra8`` (or
    ``bgr16``/``bgra16`` for 16-bit png), ``mono8``, or ``mono16`` (``16UC1`` when the format
    declares a 16UC1 source, as depth images from image_transport do). Pixels are not
    rotated by EXIF tags: the array is what the camera sent.

    Raises:
        ImageConversionError: a format other than jpeg/png, or data OpenCV cannot decode.
    """
    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower():
        raise ImageConversionError(
            f"compressed image format {fmt!r} (compressedDepth) is not supported as a picture: "
            "depth goes to the node's 'depth' input (parameter depth_transport "
            "'compressedDepth'; lisa_ros.conversion.depth reads it); the model needs colour"
        )
    codec, declared = _compressed_codec(fmt)
    if not codec and fmt.strip():
        raise ImageConversionError(
            f"unsupported compressed image format {fmt!r}; supported: jpeg, png"
        )
    data = _byte_view(msg.data)
    if data.size == 0:
        raise ImageConversionError("compressed image has no data: nothing to decode")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageConversionError(
            f"cannot decode the {data.size}-byte compressed image (format {fmt!r}): "
            "the data is not a valid jpeg/png file or is truncated"
        )
    return image, _decoded_encoding(image, declared)


def _decoded_encoding(image: np.ndarray, declared: str) -> str:
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype == np.uint8:
        names = {1: "mono8", 3: "bgr8", 4: "bgra8"}
    elif image.dtype == np.uint16:
        names = {1: "16UC1" if declared == "16UC1" else "mono16", 3: "bgr16", 4: "bgra16"}
    else:
        names = {}
    if channels not in names:
        raise ImageConversionError(
            f"decoded compressed image has {channels} channel(s) of {image.dtype}: not supported"
        )
    return names[channels]


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """Return the ``H x W x 3`` uint8 C-contiguous RGB picture the model takes.

    - ``rgb8`` is returned as is (a copy only if rows are not contiguous);
    - ``bgr8``, ``bgra8``, ``rgba8`` (and ``8UC3``/``8UC4``, BGR by OpenCV convention) are
      reordered, alpha dropped; 16-bit colour is scaled to 8 bits;
    - Bayer mosaics are demosaiced, ``yuv422`` (UYVY) and ``yuv422_yuy2`` (YUYV) converted;
    - ``mono8``/``8UC1`` is replicated into three channels;
    - any other single channel (``mono16``, ``16UC1``, ``32FC1`` depth, ...) is stretched
      linearly so its finite minimum maps to 0 and its finite maximum to 255, NaN/inf to 0.

    LISA reasons about colour pictures: a depth or thermal image gives it only a grey picture
    to look at, so expect weaker answers than on the camera's colour stream.

    Raises:
        ImageConversionError: an encoding with no RGB meaning (e.g. ``32FC3``), or an array
            whose shape or dtype does not match ``encoding``.
    """
    layout = pixel_format(encoding)
    _check_array(array, encoding, layout)
    if encoding.startswith("bayer_"):
        rgb = cv2.cvtColor(
            np.ascontiguousarray(array, dtype=layout.dtype), _BAYER_TO_RGB[encoding[6:10]]
        )
        return _scale_16_to_8(rgb) if layout.dtype.itemsize == 2 else rgb
    if encoding in _YUV422_TO_RGB:
        if array.shape[1] % 2:
            raise ImageConversionError(
                f"a {encoding} image must have an even width, got {array.shape[1]}"
            )
        return cv2.cvtColor(np.ascontiguousarray(array), _YUV422_TO_RGB[encoding])
    if layout.channels == 1:
        gray = array if array.dtype == np.uint8 else _stretch_to_uint8(array)
        return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2RGB)
    order = _RGB_ORDER.get(encoding)
    if order is None:
        raise ImageConversionError(
            f"cannot make an RGB picture from a {encoding} image: its channels have no colour "
            "meaning; publish rgb8/bgr8 (or a single-channel image)"
        )
    if array.dtype.itemsize == 2:  # rgb16 and friends, in either byte order
        array = _scale_16_to_8(array)
    code = _TO_RGB[order]
    if code is None:
        return np.ascontiguousarray(array)
    return cv2.cvtColor(np.ascontiguousarray(array), code)


def _stretch_to_uint8(channel: np.ndarray) -> np.ndarray:
    values = channel.astype(np.float64 if channel.dtype.itemsize > 4 else np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(channel.shape, dtype=np.uint8)
    low, high = values[finite].min(), values[finite].max()
    scale = 255.0 / (high - low) if high > low else 0.0
    stretched = np.where(finite, (values - low) * scale, 0.0)
    return np.rint(stretched).astype(np.uint8)


def _scale_16_to_8(array: np.ndarray) -> np.ndarray:
    # 0..65535 -> 0..255 with rounding, as cv_bridge does (factor 255/65535 = 1/257).
    return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _check_array(array: np.ndarray, encoding: str, layout: PixelFormat) -> None:
    if not isinstance(array, np.ndarray):
        raise ImageConversionError(
            f"expected a numpy array for a {encoding} image, got {type(array).__name__}"
        )
    # (H, W) or (H, W, 1) for one channel, (H, W, C) otherwise.
    channels = {2: 1, 3: array.shape[-1]}.get(array.ndim)
    if (
        channels != layout.channels or array.dtype.newbyteorder("=") != layout.dtype
    ):  # any byte order
        raise ImageConversionError(
            f"a {encoding} image needs {layout.channels} channel(s) of {layout.dtype}, got an "
            f"array of shape {array.shape} and dtype {array.dtype}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageConversionError(f"image has zero size (shape {array.shape}): nothing to convert")


def array_to_image_fields(array: np.ndarray, encoding: str) -> dict[str, Any]:
    """Return the ``sensor_msgs/Image`` fields holding ``array`` as ``encoding``.

    Rows are packed (``step = width x channels x bytes``), multi-byte data little-endian
    (``is_bigendian = 0``) and ``data`` is ``bytes``: assigning bytes to an rclpy message is
    about a hundred times faster than assigning a numpy array.
    """
    layout = pixel_format(encoding)
    _check_array(array, encoding, layout)
    height, width = array.shape[:2]
    little_endian = np.ascontiguousarray(array, dtype=layout.dtype.newbyteorder("<"))
    return {
        "height": height,
        "width": width,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": width * layout.bytes_per_pixel,
        "data": little_endian.tobytes(),
    }


def image_msg_pixels(msg: Any, height: int, width: int, encoding: str) -> np.ndarray:
    """Size the ``sensor_msgs/Image`` ``msg`` for ``height`` x ``width`` pixels of ``encoding``
    and return its ``data`` as a writable ``(height, width[, channels])`` array.

    For pixels computed straight into the message (``np.multiply(..., out=pixels)``,
    ``cv2.cvtColor(..., dst=pixels)``): :func:`fill_image_msg` copies an array into a bytes object
    and rclpy copies that again into the message, two fresh buffers a frame, which at 1280x720
    cost more than computing the pixels (each new page of a buffer is faulted in). ``data`` is an
    ``array.array('B')``, what rclpy keeps for a ``uint8[]`` field; its contents are undefined
    until written.
    """
    layout = pixel_format(encoding)
    step = width * layout.bytes_per_pixel
    msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = (
        height,
        width,
        encoding,
        0,
        step,
    )
    # rclpy keeps a copy of what is assigned (unless ROS_PYTHON_CHECK_FIELDS is set): one byte,
    # then grown in place to the image's size, so the message's own array is the only buffer.
    msg.data = array.array("B", b"\0")
    data = msg.data
    data *= step * height
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    return np.frombuffer(data, dtype=layout.dtype.newbyteorder("<")).reshape(shape)


def fill_image_msg(msg: Any, array: np.ndarray, encoding: str, header: Any = None) -> Any:
    """Write ``array`` into the ``sensor_msgs/Image`` ``msg`` (see :func:`array_to_image_fields`)
    and return it; ``header`` (e.g. the source frame's) is assigned too when given."""
    for name, value in array_to_image_fields(array, encoding).items():
        setattr(msg, name, value)
    if header is not None:
        msg.header = header
    return msg
