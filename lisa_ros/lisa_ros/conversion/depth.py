"""Read depth images from ROS messages into numpy arrays, without rclpy or cv_bridge.

Like :mod:`lisa_ros.conversion.images`, the functions read message *fields* (duck-typed), so they
work on rclpy messages and on any object with those attributes, and the module imports without
ROS. Two kinds of message carry a depth image aligned to the colour camera:

- a raw ``sensor_msgs/Image`` in ``16UC1`` (or ``mono16``), millimetres, or ``32FC1``, metres:
  :func:`depth_msg_to_array`;
- a ``sensor_msgs/CompressedImage`` of image_transport's ``compressedDepth`` transport (the topic
  ``<depth>/compressedDepth``): :func:`compressed_depth_msg_to_array`, with
  :func:`compressed_depth_size` to read the picture's size from its headers before decoding
  anything, and :func:`compressed_depth_fields` to write one.

The compressedDepth wire format implemented here is the one of the
``compressed_depth_image_transport`` package of ros-perception/image_transport_plugins (ROS 2
branches; the layout is unchanged since ROS 1), as defined by its
``include/compressed_depth_image_transport/compression_common.h`` (``.hpp``; ``ConfigHeader``),
``src/codec.cpp`` (format string, quantization, RVL framing), ``src/rvl_codec.cpp`` (RVL) and
``src/compressed_depth_publisher.cpp`` (parameter defaults):

- ``format`` is ``"<encoding>; compressedDepth <codec>"`` with codec ``png`` or ``rvl``; older
  publishers wrote ``"<encoding>; compressedDepth"`` (png), the oldest just ``"<encoding>"``.
- ``data`` starts with a 12-byte header, the C struct ``{int32 format; float32 depthParam[2]}``
  copied in host (in practice little-endian) order: ``format`` is 0 (``INV_DEPTH``), the floats
  are the quantization parameters ``A`` and ``B`` (meaningful for ``32FC1`` only; a 16-bit
  publisher may leave them uninitialised, so they are not read for 16-bit images).
- then, for ``png``, a 16-bit single-channel PNG file; for ``rvl``, ``uint32 cols``,
  ``uint32 rows`` (little-endian) and the RVL stream: 32-bit little-endian words, each holding
  eight 4-bit nibbles read from the most significant end; a number is written 3 bits per nibble,
  lowest bits first, the nibble's high bit set while more follow; the stream repeats (number of
  zero pixels, number of non-zero pixels, then each non-zero pixel as the zig-zag coded
  difference to the previous non-zero pixel, starting from 0), and the last word is padded with
  zero nibbles.
- ``16UC1``/``mono16`` pixels are millimetres as they are (the publisher zeroes pixels beyond
  ``depth_max`` metres). ``32FC1`` metres are stored as quantized inverse depth:
  ``A = q (q + 1)`` and ``B = 1 - A / depth_max`` (``q`` = ``depth_quantization``, default 100;
  ``depth_max`` default 10 m; all in float32), each depth ``d < depth_max`` becomes
  ``uint16(A / d + B)`` (truncated), anything else 0; decoding gives ``A / (v - B)`` for
  ``v != 0`` and NaN for 0. With the defaults the decoded depth is never below the true one and
  at most ``d**2 / (A - d)`` above it (0.1 mm at 1 m, 0.9 mm at 3 m); the nearest depth stored
  is ``A / (65535 - B)`` (about 0.15 m).
"""

from __future__ import annotations

import math
import struct
from typing import Any

import cv2
import numpy as np

from lisa_ros.conversion.images import ImageConversionError, _byte_view, image_msg_to_array

__all__ = [
    "COMPRESSED_DEPTH_CODECS",
    "DEPTH_ENCODINGS",
    "DepthConversionError",
    "compressed_depth_fields",
    "compressed_depth_msg_to_array",
    "compressed_depth_size",
    "depth_msg_to_array",
]

#: Depth encodings read and written: 16-bit millimetres (``16UC1``, ``mono16``) and float
#: metres (``32FC1``).
DEPTH_ENCODINGS: tuple[str, ...] = ("16UC1", "mono16", "32FC1")

#: Codecs of the compressedDepth transport (the ``<codec>`` of its format string).
COMPRESSED_DEPTH_CODECS: tuple[str, ...] = ("png", "rvl")

# compression_common.h: struct ConfigHeader { compressionFormat format; float depthParam[2]; }.
_CONFIG_HEADER = struct.Struct("<iff")
_INV_DEPTH = 0
# RVL payload: uint32 cols, uint32 rows before the RVL words.
_RVL_SIZE = struct.Struct("<II")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG signature, IHDR length and type, width, height, bit depth, colour type.
_PNG_IHDR = struct.Struct(">8sI4sIIBB")
# The largest dimension a PNG may declare (PNG specification: 2**31 - 1).
_PNG_MAX_DIMENSION = 2**31 - 1
# An RVL number has at most 11 nibbles (33 bits); more means a corrupted stream.
_RVL_MAX_NIBBLES = 11

_COLOUR_HINTS = ("rgb", "bgr", "bayer", "yuv", "C3", "C4")


class DepthConversionError(ImageConversionError):
    """A depth message that cannot be converted; the message says what is wrong and what to do."""


# --- raw sensor_msgs/Image ---------------------------------------------------------------------


def depth_msg_to_array(msg: Any) -> np.ndarray:
    """Return the pixels of a raw depth ``sensor_msgs/Image`` as a read-only ``(H, W)`` array.

    ``16UC1``/``mono16`` give uint16 millimetres, ``32FC1`` float32 metres, in native byte order
    (``is_bigendian`` honoured) and without row padding; the array is a view of ``msg.data``
    unless the byte order had to change.

    Raises:
        DepthConversionError: an encoding other than :data:`DEPTH_ENCODINGS` (e.g. a colour
            topic remapped to depth), zero size, a ``step`` shorter than a row, or data shorter
            than ``step * height``.
    """
    encoding = str(msg.encoding)
    if encoding not in DEPTH_ENCODINGS:
        raise DepthConversionError(
            _wrong_encoding(encoding, f"the depth image has encoding {encoding!r}")
        )
    try:
        return image_msg_to_array(msg)
    except ImageConversionError as error:
        raise DepthConversionError(f"the {encoding} depth image is unreadable: {error}") from None


def _wrong_encoding(encoding: str, what: str) -> str:
    message = f"{what}; depth must be 16UC1 (millimetres) or 32FC1 (metres)"
    if any(hint in encoding for hint in _COLOUR_HINTS):
        return f"{message}: is 'depth' remapped to a colour topic?"
    return f"{message}: remap 'depth' to the camera's depth image aligned to the colour camera"


# --- compressedDepth: format string and headers -------------------------------------------------


def _parse_format(fmt: str) -> tuple[str, str]:
    """Split a compressedDepth ``format`` into (depth encoding, codec), or raise."""
    encoding, separator, rest = fmt.partition(";")
    encoding = encoding.strip()
    if not separator and encoding.lower() not in ("jpeg", "jpg", "png"):
        # Without a ';' the plugin's decoder takes the whole format as the encoding, png-coded.
        codec = "png"
    else:
        lowered = rest.lower().split()
        if "compresseddepth" not in lowered:
            raise DepthConversionError(
                f"format {fmt!r} is not a compressedDepth format: this looks like the "
                "'compressed' transport; subscribe to <depth>/compressedDepth, or to the raw "
                "depth image"
            )
        following = lowered[lowered.index("compresseddepth") + 1 :]
        codec = following[0] if following else "png"
        if codec not in COMPRESSED_DEPTH_CODECS:
            raise DepthConversionError(
                f"compressedDepth codec {codec!r} (format {fmt!r}) is not supported; set the "
                "publisher's compressedDepth 'format' parameter to png or rvl"
            )
    if encoding not in DEPTH_ENCODINGS:
        raise DepthConversionError(
            _wrong_encoding(
                encoding, f"the compressedDepth image has encoding {encoding!r} (format {fmt!r})"
            )
        )
    return encoding, codec


class _Parsed:
    """A compressedDepth message split into its parts, dimensions checked, pixels not decoded."""

    __slots__ = ("codec", "encoding", "fmt", "height", "params", "payload", "width")

    def __init__(self, msg: Any) -> None:
        self.fmt = str(msg.format)
        self.encoding, self.codec = _parse_format(self.fmt)
        try:
            data = _byte_view(msg.data)
        except ImageConversionError as error:
            raise DepthConversionError(
                f"the compressedDepth message is unreadable: {error}"
            ) from None
        need = _CONFIG_HEADER.size + (_PNG_IHDR.size if self.codec == "png" else _RVL_SIZE.size)
        if data.size == 0:
            raise DepthConversionError(
                "the compressedDepth message has no data: the publisher sent an empty frame; "
                "check the depth camera driver"
            )
        if data[: len(_PNG_SIGNATURE)].tobytes() == _PNG_SIGNATURE:
            raise DepthConversionError(
                "the compressedDepth data starts with a PNG file instead of its 12-byte header: "
                "it is a plain 'compressed' png image; subscribe to <depth>/compressedDepth or to "
                "the raw depth image"
            )
        if data.size < _CONFIG_HEADER.size:
            raise DepthConversionError(
                f"the compressedDepth message is truncated ({data.size} bytes, needs at least "
                f"{_CONFIG_HEADER.size} for its header): check the publisher and the transport"
            )
        if data.size < need:
            raise DepthConversionError(
                f"the compressedDepth message is truncated ({data.size} bytes, needs at least "
                f"{need} for its header and the {self.codec} image's header): check the "
                "publisher and the transport"
            )
        _, quant_a, quant_b = _CONFIG_HEADER.unpack_from(data[: _CONFIG_HEADER.size].tobytes())
        self.params = (np.float32(quant_a), np.float32(quant_b))
        self.payload = data[_CONFIG_HEADER.size :]
        head = self.payload[: need - _CONFIG_HEADER.size].tobytes()
        if self.codec == "png":
            self.width, self.height = self._png_size(head)
        else:
            self.width, self.height = _RVL_SIZE.unpack(head)
            if self.width == 0 or self.height == 0:
                raise DepthConversionError(
                    f"the compressedDepth rvl image declares size {self.width}x{self.height}: "
                    "the message is corrupted; check the publisher"
                )

    def _png_size(self, head: bytes) -> tuple[int, int]:
        signature, _, chunk, width, height, bit_depth, colour = _PNG_IHDR.unpack(head)
        if signature != _PNG_SIGNATURE or chunk != b"IHDR":
            raise DepthConversionError(
                f"the compressedDepth data (format {self.fmt!r}) holds no PNG file after its "
                "12-byte header: the message is corrupted or not compressedDepth; check the "
                "publisher"
            )
        if not (0 < width <= _PNG_MAX_DIMENSION and 0 < height <= _PNG_MAX_DIMENSION):
            raise DepthConversionError(
                f"the compressedDepth PNG declares size {width}x{height}: the message is "
                "corrupted; check the publisher"
            )
        if bit_depth != 16 or colour != 0:
            raise DepthConversionError(
                f"the compressedDepth PNG is {bit_depth}-bit with PNG colour type {colour}, not "
                "16-bit greyscale (type 0): it is not a depth image; check the publisher"
            )
        return width, height


def compressed_depth_size(msg: Any) -> tuple[int, int]:
    """Return ``(width, height)`` of a compressedDepth ``sensor_msgs/CompressedImage``.

    Only the headers are read (the PNG's IHDR chunk, or RVL's size words), no pixel is
    decoded, so a caller can refuse an oversized frame (or a decompression bomb) first.

    Raises:
        DepthConversionError: a format that is not compressedDepth of a depth encoding, or
            data too short or malformed to hold the headers.
    """
    parsed = _Parsed(msg)
    return parsed.width, parsed.height


# --- compressedDepth: decoding ------------------------------------------------------------------


def compressed_depth_msg_to_array(msg: Any) -> np.ndarray:
    """Decode a compressedDepth ``sensor_msgs/CompressedImage`` into an ``(H, W)`` array.

    Returns uint16 millimetres for ``16UC1``/``mono16`` and float32 metres for ``32FC1``
    (pixels the publisher marked invalid, i.e. stored as 0, are NaN). Decoding allocates
    ``width * height`` pixels: check :func:`compressed_depth_size` first when the sender is
    not trusted.

    Raises:
        DepthConversionError: a format that is not compressedDepth of a depth encoding, a
            missing or short header, truncated or corrupted PNG/RVL data, or quantization
            parameters that are not finite.
    """
    parsed = _Parsed(msg)
    if parsed.codec == "png":
        stored = _decode_png(parsed)
    else:
        count = parsed.width * parsed.height
        stream = parsed.payload[_RVL_SIZE.size :]
        stored = _rvl_decode(stream, count).reshape(parsed.height, parsed.width)
    if parsed.encoding != "32FC1":
        return stored
    quant_a, quant_b = parsed.params
    if not (math.isfinite(quant_a) and math.isfinite(quant_b)) or quant_a == 0:
        raise DepthConversionError(
            f"the compressedDepth header's quantization parameters ({quant_a}, {quant_b}) "
            "cannot decode 32FC1 depth: the message is corrupted; check the publisher"
        )
    meters = np.full(stored.shape, np.nan, dtype=np.float32)
    np.divide(quant_a, stored.astype(np.float32) - quant_b, out=meters, where=stored != 0)
    return meters


def _decode_png(parsed: _Parsed) -> np.ndarray:
    size = parsed.payload.size
    try:
        image = cv2.imdecode(parsed.payload, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise DepthConversionError(
            f"the {size}-byte PNG of the compressedDepth message cannot be decoded: it is "
            "truncated or corrupted; check the publisher and the transport"
        )
    if image.dtype != np.uint16 or image.shape != (parsed.height, parsed.width):
        raise DepthConversionError(
            f"the compressedDepth PNG decodes to {image.shape} {image.dtype}, not the "
            f"{parsed.height}x{parsed.width} uint16 its header declares: the message is "
            "corrupted; check the publisher"
        )
    return image


def _rvl_decode(stream: np.ndarray, count: int) -> np.ndarray:
    """Decode ``count`` uint16 pixels from the RVL byte ``stream`` (see the module docstring)."""
    truncated = DepthConversionError(
        f"the compressedDepth rvl data ({stream.size} bytes) ends before its {count} pixels: "
        "the message is truncated or corrupted; check the publisher and the transport"
    )
    words = stream[: stream.size // 4 * 4].view("<u4").astype(np.uint32)
    shifts = np.arange(28, -1, -4, dtype=np.uint32)
    nibbles = ((words[:, None] >> shifts) & 0xF).astype(np.uint8).ravel()
    # A number ends at the first nibble without the continuation bit (0x8).
    ends = np.flatnonzero(nibbles < 8)
    if ends.size < 2:
        raise truncated
    nibbles = nibbles[: ends[-1] + 1]
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    position = np.arange(nibbles.size) - np.repeat(starts, lengths)
    position = np.minimum(position, _RVL_MAX_NIBBLES)
    digits = (nibbles & 7).astype(np.int64) << (3 * position)
    numbers = np.add.reduceat(digits, starts)
    numbers[lengths > _RVL_MAX_NIBBLES] = -1

    # Walk the runs: (zeros, non-zeros, one number per non-zero pixel), until count pixels.
    values = numbers.tolist()
    zero_runs: list[int] = []
    nonzero_runs: list[int] = []
    delta_at: list[int] = []
    index, remaining = 0, count
    while remaining > 0:
        if index + 2 > len(values):
            raise truncated
        zeros, nonzeros = values[index], values[index + 1]
        remaining -= zeros + nonzeros
        if zeros < 0 or nonzeros < 0 or remaining < 0:
            raise DepthConversionError(
                f"the compressedDepth rvl data encodes runs that do not add up to its {count} "
                "pixels: the message is corrupted; check the publisher"
            )
        zero_runs.append(zeros)
        nonzero_runs.append(nonzeros)
        delta_at.append(index + 2)
        index += 2 + nonzeros
    if index > len(values):
        raise truncated

    runs = np.array(nonzero_runs, dtype=np.int64)
    total = int(runs.sum())
    first = np.repeat(np.array(delta_at, dtype=np.int64), runs)
    offset = np.arange(total) - np.repeat(np.cumsum(runs) - runs, runs)
    coded = numbers[first + offset]
    if coded.size and coded.min() < 0:
        raise DepthConversionError(
            "the compressedDepth rvl data holds a number longer than 33 bits: the message is "
            "corrupted; check the publisher"
        )
    deltas = (coded >> 1) ^ -(coded & 1)
    pixels = np.zeros(count, dtype=np.uint16)
    lengths_by_run = np.column_stack((zero_runs, nonzero_runs)).ravel()
    nonzero = np.repeat(np.tile([False, True], len(zero_runs)), lengths_by_run)
    pixels[nonzero] = (np.cumsum(deltas) & 0xFFFF).astype(np.uint16)
    return pixels


# --- compressedDepth: encoding ------------------------------------------------------------------


def compressed_depth_fields(
    depth: np.ndarray,
    codec: str = "png",
    *,
    depth_max: float = 10.0,
    depth_quantization: float = 100.0,
    png_level: int = 9,
) -> tuple[str, bytes]:
    """Return ``(format, data)`` of the compressedDepth ``sensor_msgs/CompressedImage`` of
    ``depth``, as ROS 2's compressed_depth_image_transport publishes it.

    ``depth`` is ``(H, W)`` (or ``(H, W, 1)``) uint16 millimetres, sent as ``16UC1``, or
    float32 metres, sent as ``32FC1``; ``codec`` is ``png`` or ``rvl``. The keyword arguments
    are the publisher's parameters, with its defaults: uint16 pixels above
    ``depth_max * 1000`` become 0; float pixels are quantized as inverse depth (see the module
    docstring), and NaN, inf, pixels at or beyond ``depth_max`` and pixels at or below 0 become
    invalid. The plugin's result is undefined for depths too near to quantize (below
    ``A / (65535 - B)``, about 0.15 m with the defaults): they become invalid here.

    Raises:
        DepthConversionError: an array that is not one channel of uint16 or float32, an empty
            array, an unknown codec or parameters that cannot quantize.
    """
    if codec not in COMPRESSED_DEPTH_CODECS:
        raise DepthConversionError(
            f"compressedDepth codec {codec!r} is not supported; use one of "
            f"{', '.join(COMPRESSED_DEPTH_CODECS)}"
        )
    pixels = _check_depth_array(depth)
    if pixels.dtype == np.uint16:
        encoding = "16UC1"
        header = _CONFIG_HEADER.pack(_INV_DEPTH, 0.0, 0.0)
        limit = min(int(depth_max * 1000.0), 0xFFFF) if depth_max * 1000.0 >= 0 else 0
        stored = np.where(pixels > limit, np.uint16(0), pixels)
    else:
        encoding = "32FC1"
        stored, quant_a, quant_b = _quantize_inverse_depth(pixels, depth_max, depth_quantization)
        header = _CONFIG_HEADER.pack(_INV_DEPTH, quant_a, quant_b)
    if codec == "png":
        ok, png = cv2.imencode(".png", stored, [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
        if not ok:
            raise DepthConversionError("OpenCV could not encode the depth image as PNG")
        body = png.tobytes()
    else:
        height, width = stored.shape
        body = _RVL_SIZE.pack(width, height) + _rvl_encode(stored.ravel())
    return f"{encoding}; compressedDepth {codec}", header + body


def _check_depth_array(depth: Any) -> np.ndarray:
    if not isinstance(depth, np.ndarray):
        raise DepthConversionError(f"expected a numpy array of depth, got {type(depth).__name__}")
    shape = depth.shape
    if depth.ndim == 3 and shape[2] == 1:
        depth = depth[:, :, 0]
    native = depth.dtype.newbyteorder("=")
    if depth.ndim != 2 or native not in (np.dtype(np.uint16), np.dtype(np.float32)):
        raise DepthConversionError(
            f"a depth image must be (H, W) uint16 millimetres or float32 metres, got shape "
            f"{shape} and dtype {depth.dtype}: convert it (e.g. .astype(np.float32))"
        )
    if depth.size == 0:
        raise DepthConversionError(f"the depth image has zero size (shape {shape})")
    return np.ascontiguousarray(depth, dtype=native)


def _quantize_inverse_depth(
    depth: np.ndarray, depth_max: float, depth_quantization: float
) -> tuple[np.ndarray, float, float]:
    """The plugin's 32FC1 quantization, in float32 like its C++: (uint16 image, A, B)."""
    z0, d_max = np.float32(depth_quantization), np.float32(depth_max)
    quant_a = z0 * (z0 + np.float32(1.0))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        quant_b = np.float32(1.0) - quant_a / d_max
        if not (np.isfinite(quant_a) and np.isfinite(quant_b) and quant_a > 0 and d_max > 0):
            raise DepthConversionError(
                f"depth_quantization {depth_quantization} and depth_max {depth_max} cannot "
                "quantize depth: both must be positive and finite"
            )
        inverse = quant_a / depth + quant_b
    # The plugin converts float to uint16 by truncation; out-of-range values are undefined in
    # C++ and become 0 (invalid) here, like NaN and depths at or beyond depth_max.
    valid = (depth < d_max) & (depth > 0) & (inverse >= 0) & (inverse < 65536)
    stored = np.where(valid, inverse, np.float32(0)).astype(np.uint16)
    return stored, float(quant_a), float(quant_b)


def _rvl_encode(pixels: np.ndarray) -> bytes:
    """RVL-encode the flat uint16 ``pixels`` into little-endian 32-bit words."""
    nonzero = pixels != 0
    bounds = np.concatenate(([0], np.flatnonzero(nonzero[1:] != nonzero[:-1]) + 1, [pixels.size]))
    runs = np.diff(bounds)
    # Alternate (zero run, non-zero run), starting with zeros and ending with non-zeros.
    if nonzero[0]:
        runs = np.concatenate(([0], runs))
    if not nonzero[-1]:
        runs = np.concatenate((runs, [0]))
    zero_runs, nonzero_runs = runs[0::2], runs[1::2]
    values = pixels[nonzero].astype(np.int64)
    deltas = np.diff(values, prepend=0)
    coded = (deltas << 1) ^ (deltas >> 63)

    numbers = np.empty(2 * zero_runs.size + coded.size, dtype=np.int64)
    head = 2 * np.arange(zero_runs.size) + np.concatenate(([0], np.cumsum(nonzero_runs)[:-1]))
    is_delta = np.ones(numbers.size, dtype=bool)
    is_delta[head] = is_delta[head + 1] = False
    numbers[head], numbers[head + 1] = zero_runs, nonzero_runs
    numbers[is_delta] = coded

    # Each number: 3 bits per nibble, lowest first, 0x8 set while more nibbles follow.
    counts = np.ones(numbers.size, dtype=np.int64)
    for power in range(1, _RVL_MAX_NIBBLES):
        counts += numbers >= 8**power
    owner = np.repeat(np.arange(numbers.size), counts)
    position = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    nibbles = (numbers[owner] >> (3 * position)) & 7
    nibbles |= (position < counts[owner] - 1) << 3
    nibbles = np.concatenate((nibbles, np.zeros(-nibbles.size % 8, dtype=np.int64)))
    shifts = np.arange(28, -1, -4, dtype=np.int64)
    words = np.bitwise_or.reduce(nibbles.reshape(-1, 8) << shifts, axis=1)
    return words.astype("<u4").tobytes()
