"""Tests of lisa_ros.conversion.depth: raw depth images and image_transport's compressedDepth.

Round trips go through real sensor_msgs messages serialized as on the wire where ROS is
installed. The compressedDepth decoder is also checked against messages built here byte by
byte from the layout of ros-perception/image_transport_plugins' compressed_depth_image_transport
(12-byte ``<int32 format, float32 A, float32 B>`` header, then a PNG made here with
cv2.imencode, or ``<uint32 cols, uint32 rows>`` and an RVL stream written nibble by nibble), so
the tests do not only check our encoder against our decoder.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from lisa_ros.conversion.depth import (
    DEPTH_ENCODINGS,
    DepthConversionError,
    compressed_depth_fields,
    compressed_depth_msg_to_array,
    compressed_depth_size,
    depth_msg_to_array,
)
from lisa_ros.conversion.images import ImageConversionError, fill_image_msg

try:
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CompressedImage, Image
except ImportError as error:  # the ROS-free checks still run
    ROS_IMPORT_ERROR = f"rclpy/sensor_msgs not importable ({error}); run 'make setup'"
else:
    ROS_IMPORT_ERROR = ""

needs_ros = pytest.mark.skipif(bool(ROS_IMPORT_ERROR), reason=ROS_IMPORT_ERROR or "ROS available")

HEIGHT, WIDTH = 23, 37  # odd sizes: rows of odd byte length catch stride mistakes
# The plugin's defaults (compressed_depth_publisher.cpp): depth_max 10 m, depth_quantization 100.
QUANT_A = 100.0 * (100.0 + 1.0)  # 10100
QUANT_B = 1.0 - QUANT_A / 10.0  # -1009
HEADER = struct.Struct("<iff")  # compression_common.h ConfigHeader: enum format, float[2]


def _over_the_wire(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def _compressed(fmt: str, data: bytes):
    """A CompressedImage as a subscriber receives it (a plain object where ROS is missing)."""
    if ROS_IMPORT_ERROR:
        return SimpleNamespace(format=fmt, data=data)
    return _over_the_wire(CompressedImage(format=fmt, data=data))


def _millimetres(rng: np.random.Generator, height: int = HEIGHT, width: int = WIDTH):
    """Depth in mm with holes (0) in runs and single pixels, and values beyond 10 m."""
    depth = rng.integers(200, 12000, size=(height, width), dtype=np.uint16)
    depth[rng.random(depth.shape) < 0.1] = 0
    depth[3, 5:20] = 0
    depth[0, 0] = 65535
    return depth


def _png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", image)
    assert ok
    return encoded.tobytes()


# --- raw sensor_msgs/Image ---------------------------------------------------------------------


@needs_ros
@pytest.mark.parametrize("encoding", DEPTH_ENCODINGS)
def test_raw_depth_round_trip_is_exact(encoding):
    rng = np.random.default_rng(1)
    if encoding == "32FC1":
        pixels = rng.uniform(0.1, 20.0, size=(HEIGHT, WIDTH)).astype(np.float32)
        pixels[0, :3] = [np.nan, np.inf, 0.0]
    else:
        pixels = _millimetres(rng)

    received = _over_the_wire(fill_image_msg(Image(), pixels, encoding))
    depth = depth_msg_to_array(received)

    assert depth.shape == (HEIGHT, WIDTH) and depth.dtype == pixels.dtype
    assert depth.dtype.isnative and not depth.flags.writeable
    assert depth.tobytes() == pixels.tobytes()


@needs_ros
@pytest.mark.parametrize(("encoding", "dtype"), [("16UC1", np.uint16), ("32FC1", np.float32)])
def test_big_endian_raw_depth_comes_back_native(encoding, dtype):
    rng = np.random.default_rng(2)
    pixels = _millimetres(rng).astype(dtype)
    if dtype == np.float32:
        pixels /= 1000
    msg = Image(
        height=HEIGHT,
        width=WIDTH,
        encoding=encoding,
        is_bigendian=1,
        step=WIDTH * pixels.itemsize,
        data=pixels.astype(pixels.dtype.newbyteorder(">")).tobytes(),
    )

    depth = depth_msg_to_array(_over_the_wire(msg))

    assert depth.dtype == np.dtype(dtype) and depth.dtype.isnative
    np.testing.assert_array_equal(depth, pixels)


@needs_ros
@pytest.mark.parametrize("padding", [1, 6])
def test_row_padding_of_raw_depth_is_skipped(padding):
    pixels = _millimetres(np.random.default_rng(3))
    row_bytes = WIDTH * 2
    rows = np.full((HEIGHT, row_bytes + padding), 0xEE, dtype=np.uint8)  # junk in the padding
    rows[:, :row_bytes] = pixels.astype("<u2").view(np.uint8)
    msg = Image(
        height=HEIGHT,
        width=WIDTH,
        encoding="16UC1",
        step=row_bytes + padding,
        data=rows.tobytes(),
    )

    np.testing.assert_array_equal(depth_msg_to_array(_over_the_wire(msg)), pixels)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "bgra8", "8UC3", "bayer_rggb8"])
def test_colour_images_are_refused_as_depth(encoding):
    msg = SimpleNamespace(
        height=2, width=2, encoding=encoding, is_bigendian=0, step=8, data=bytes(16)
    )
    with pytest.raises(DepthConversionError) as caught:
        depth_msg_to_array(msg)
    assert str(caught.value) == (
        f"the depth image has encoding {encoding!r}; depth must be 16UC1 (millimetres) or 32FC1 "
        "(metres): is 'depth' remapped to a colour topic?"
    )
    assert isinstance(caught.value, ImageConversionError)  # callers may catch either


@pytest.mark.parametrize("encoding", ["mono8", "16SC1", "64FC1"])
def test_other_single_channel_images_are_refused_as_depth(encoding):
    msg = SimpleNamespace(
        height=1, width=1, encoding=encoding, is_bigendian=0, step=8, data=[0] * 8
    )
    with pytest.raises(DepthConversionError, match=f"has encoding '{encoding}'; depth must be"):
        depth_msg_to_array(msg)


@pytest.mark.parametrize(
    ("step", "size", "message"),
    [
        (WIDTH * 2, WIDTH * 2 * HEIGHT - 1, r"fewer than step x height = 74 x 23 = 1702"),
        (WIDTH * 2 - 1, WIDTH * 2 * HEIGHT, r"step 73 is smaller than width x channels"),
    ],
)
def test_truncated_or_misdescribed_raw_depth_is_refused(step, size, message):
    msg = SimpleNamespace(
        height=HEIGHT, width=WIDTH, encoding="16UC1", is_bigendian=0, step=step, data=bytes(size)
    )
    with pytest.raises(DepthConversionError, match=r"the 16UC1 depth image is unreadable: .*"):
        depth_msg_to_array(msg)
    with pytest.raises(DepthConversionError, match=message):
        depth_msg_to_array(msg)


# --- compressedDepth: round trips ----------------------------------------------------------------


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_compressed_16uc1_round_trip_keeps_millimetres_up_to_depth_max(codec):
    pixels = _millimetres(np.random.default_rng(4))
    fmt, data = compressed_depth_fields(pixels, codec)
    assert fmt == f"16UC1; compressedDepth {codec}"

    depth = compressed_depth_msg_to_array(_compressed(fmt, data))

    assert depth.dtype == np.uint16 and depth.shape == (HEIGHT, WIDTH)
    # The publisher zeroes pixels beyond depth_max (10 m by default).
    np.testing.assert_array_equal(depth, np.where(pixels > 10000, 0, pixels))
    assert (pixels > 10000).any() and (pixels == 0).any()

    fmt, data = compressed_depth_fields(pixels, codec, depth_max=65.535)
    np.testing.assert_array_equal(compressed_depth_msg_to_array(_compressed(fmt, data)), pixels)


@pytest.mark.parametrize("codec", ["png", "rvl"])
@pytest.mark.parametrize("metres", [0.5, 1.0, 3.0])
def test_compressed_32fc1_round_trip_is_within_the_quantization_error(codec, metres):
    rng = np.random.default_rng(int(metres * 10))
    depth = (metres + rng.uniform(-0.01, 0.01, size=(HEIGHT, WIDTH))).astype(np.float32)
    fmt, data = compressed_depth_fields(depth, codec)
    assert fmt == f"32FC1; compressedDepth {codec}"

    decoded = compressed_depth_msg_to_array(_compressed(fmt, data))

    assert decoded.dtype == np.float32 and decoded.shape == (HEIGHT, WIDTH)
    # uint16(A / d + B) truncates the inverse depth down, so decoding never gives less than d
    # and at most d / (1 - d / A) = d + d**2 / (A - d): 0.025 mm at 0.5 m, 0.9 mm at 3 m.
    error = decoded.astype(np.float64) - depth
    bound = depth.astype(np.float64) ** 2 / (QUANT_A - depth)
    slack = 1e-6 * depth  # float32 rounding of A / d and of the division back
    assert (error >= -slack).all(), error.min()
    assert (error <= bound + slack).all(), (error - bound).max()
    assert error.max() > bound.max() / 4  # a lossless path would hide a wrong formula


@pytest.mark.parametrize("codec", ["png", "rvl"])
def test_invalid_32fc1_depth_stays_invalid(codec):
    depth = np.full((3, 4), 2.0, dtype=np.float32)
    invalid = [np.nan, 0.0, np.inf, -np.inf, -1.5, 10.0, 25.0, 0.01]  # 10 m = depth_max
    depth.flat[: len(invalid)] = invalid

    decoded = compressed_depth_msg_to_array(_compressed(*compressed_depth_fields(depth, codec)))

    assert np.isnan(decoded.flat[: len(invalid)]).all()
    assert np.isfinite(decoded.flat[len(invalid) :]).all()


def test_big_endian_and_single_channel_arrays_are_encoded_as_native():
    pixels = _millimetres(np.random.default_rng(5))
    expected = compressed_depth_fields(pixels)
    assert compressed_depth_fields(pixels.astype(">u2")) == expected
    assert compressed_depth_fields(pixels[:, :, None]) == expected


@pytest.mark.parametrize(
    "array",
    [np.zeros((2, 2), np.float64), np.zeros((2, 2, 3), np.uint16), np.zeros((0, 4), np.uint16)],
)
def test_encoder_refuses_what_is_not_depth(array):
    with pytest.raises(DepthConversionError, match="depth image"):
        compressed_depth_fields(array)


def test_encoder_refuses_unknown_codecs():
    with pytest.raises(DepthConversionError, match="codec 'jpeg' is not supported"):
        compressed_depth_fields(np.ones((2, 2), np.uint16), "jpeg")


# --- compressedDepth: the wire format, built by hand ---------------------------------------------


def test_hand_built_32fc1_png_message_decodes_with_the_plugins_formula():
    # Inverse depth values v, decoded by the plugin as A / (v - B) metres, 0 meaning invalid.
    stored = np.array([[0, 1, 10100], [20000, 65535, 4000]], dtype=np.uint16)
    data = HEADER.pack(0, QUANT_A, QUANT_B) + _png(stored)

    decoded = compressed_depth_msg_to_array(_compressed("32FC1; compressedDepth png", data))

    expected = np.array(
        [[np.nan, QUANT_A / (1 - QUANT_B), QUANT_A / (10100 - QUANT_B)],
         [QUANT_A / (20000 - QUANT_B), QUANT_A / (65535 - QUANT_B), QUANT_A / (4000 - QUANT_B)]]
    )  # fmt: skip
    np.testing.assert_allclose(decoded, expected, rtol=1e-6)
    assert np.isnan(decoded[0, 0])
    # 1 decodes to depth_max (A / (1 - B) = 10 m), 65535 to the nearest depth stored (~0.152 m).
    assert decoded[0, 1] == 10.0 and 0.151 < decoded[1, 1] < 0.152


def test_hand_built_32fc1_message_uses_the_header_parameters():
    stored = np.array([[100, 2000]], dtype=np.uint16)
    data = HEADER.pack(0, 500.0, 4.0) + _png(stored)  # not the defaults: A=500, B=4
    decoded = compressed_depth_msg_to_array(_compressed("32FC1; compressedDepth png", data))
    np.testing.assert_allclose(decoded, [[500 / 96, 500 / 1996]], rtol=1e-6)


@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
def test_hand_built_16_bit_message_ignores_the_uninitialised_parameters(encoding):
    millimetres = np.array([[0, 1, 999], [4500, 10000, 65535]], dtype=np.uint16)
    # A 16-bit publisher may leave depthParam uninitialised: garbage there must not matter.
    data = HEADER.pack(0, float("nan"), -3.0e38) + _png(millimetres)

    decoded = compressed_depth_msg_to_array(_compressed(f"{encoding}; compressedDepth png", data))

    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, millimetres)


@pytest.mark.parametrize("fmt", ["16UC1; compressedDepth", "16UC1", "16UC1; compressedDepth png"])
def test_older_format_strings_mean_png(fmt):
    millimetres = _millimetres(np.random.default_rng(6))
    data = HEADER.pack(0, 0.0, 0.0) + _png(millimetres)
    np.testing.assert_array_equal(
        compressed_depth_msg_to_array(_compressed(fmt, data)), millimetres
    )


def test_encoder_writes_the_plugins_header_and_png():
    millimetres = _millimetres(np.random.default_rng(7))
    _, data = compressed_depth_fields(millimetres)
    assert data[:12] == b"\x00" * 12  # INV_DEPTH = 0 and no parameters for 16-bit depth
    ok, png = cv2.imencode(
        ".png", np.where(millimetres > 10000, 0, millimetres), [cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    assert ok and data[12:] == png.tobytes()

    metres = np.array([[0.5, 1.0, 3.0, 9.999], [0.2, np.nan, 12.0, 0.0]], dtype=np.float32)
    _, data = compressed_depth_fields(metres)
    assert data[:12] == struct.pack("<iff", 0, 10100.0, -1009.0)
    stored = cv2.imdecode(np.frombuffer(data[12:], np.uint8), cv2.IMREAD_UNCHANGED)
    # The plugin's float32 arithmetic, truncated to uint16, pixel by pixel.
    a, b = np.float32(10100.0), np.float32(-1009.0)
    expected = [int(a / d + b) if 0 < d < 10 else 0 for d in metres.ravel()]
    assert stored.dtype == np.uint16 and stored.ravel().tolist() == expected
    assert expected[:4] == [19191, 9091, 2357, 1]


def _nibbles_to_rvl(nibbles: list[int]) -> bytes:
    """Pack nibbles 8 to a 32-bit little-endian word, first nibble in the top bits."""
    nibbles = nibbles + [0] * (-len(nibbles) % 8)
    words = [
        sum(nibble << (28 - 4 * i) for i, nibble in enumerate(nibbles[start : start + 8]))
        for start in range(0, len(nibbles), 8)
    ]
    return struct.pack(f"<{len(words)}I", *words)


# Pixels 0 0 5 7 0 0 0 0 0 0 300 as RVL numbers: 2 zeros, 2 non-zeros, zig-zag(+5) = 10,
# zig-zag(+2) = 4; 6 zeros, 1 non-zero, zig-zag(300 - 7 = +293) = 586 = octal 1112. As nibbles
# (3 bits each, lowest first, 0x8 = more follow): 2 | 2 | 0xA 1 | 4 | 6 | 1 | 0xA 0x9 0x9 1.
RVL_PIXELS = [0, 0, 5, 7, 0, 0, 0, 0, 0, 0, 300]
RVL_NIBBLES = [2, 2, 0xA, 1, 4, 6, 1, 0xA, 0x9, 0x9, 1]


def test_hand_built_rvl_message_decodes():
    data = HEADER.pack(0, 0.0, 0.0) + struct.pack("<II", 11, 1) + _nibbles_to_rvl(RVL_NIBBLES)
    # Words 0x22A1461A and 0x99100000, little-endian.
    assert data[20:] == bytes([0x1A, 0x46, 0xA1, 0x22, 0x00, 0x00, 0x10, 0x99])

    msg = _compressed("16UC1; compressedDepth rvl", data)
    assert compressed_depth_size(msg) == (11, 1)
    assert compressed_depth_msg_to_array(msg).tolist() == [RVL_PIXELS]
    # ... and our encoder writes exactly these bytes.
    assert compressed_depth_fields(np.array([RVL_PIXELS], np.uint16), "rvl")[1] == data


def test_hand_built_rvl_image_ending_in_zeros_and_negative_deltas():
    # 7 3 0 0 in 2 rows of 2: 0 zeros, 2 non-zeros, +7 -> 14 (0xE 1), -4 -> 7; 2 zeros, 0.
    data = HEADER.pack(0, 0.0, 0.0) + struct.pack("<II", 2, 2)
    data += _nibbles_to_rvl([0, 2, 0xE, 1, 7, 2, 0])
    decoded = compressed_depth_msg_to_array(_compressed("16UC1; compressedDepth rvl", data))
    assert decoded.tolist() == [[7, 3], [0, 0]]


def _reference_rvl(pixels: list[int]) -> bytes:
    """RVL written the slow, obvious way, from the algorithm in rvl_codec.cpp's terms."""
    nibbles: list[int] = []

    def number(value: int) -> None:
        while True:
            nibble, value = value & 7, value >> 3
            nibbles.append(nibble | (8 if value else 0))
            if not value:
                return

    index, previous = 0, 0
    while index < len(pixels):
        zeros = 0
        while index + zeros < len(pixels) and pixels[index + zeros] == 0:
            zeros += 1
        index += zeros
        nonzeros = 0
        while index + nonzeros < len(pixels) and pixels[index + nonzeros] != 0:
            nonzeros += 1
        number(zeros)
        number(nonzeros)
        for current in pixels[index : index + nonzeros]:
            delta = current - previous
            number(2 * delta if delta >= 0 else -2 * delta - 1)
            previous = current
        index += nonzeros
    return _nibbles_to_rvl(nibbles)


@pytest.mark.parametrize("seed", range(4))
def test_rvl_matches_a_reference_written_from_the_algorithm(seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 65536, size=(13, 29), dtype=np.uint16)
    pixels[rng.random(pixels.shape) < 0.3] = 0
    pixels[2, 3:25] = 0
    pixels[5, :] = 40000  # long constant run
    if seed % 2:
        pixels[0, 0] = 0  # starting with a zero run, or not
        pixels[-1, -3:] = 0  # ending with one, or not
    else:
        pixels[0, 0], pixels[-1, -1] = 1, 65535
    data = (
        HEADER.pack(0, 0.0, 0.0)
        + struct.pack("<II", 29, 13)
        + _reference_rvl(pixels.ravel().tolist())
    )

    assert compressed_depth_fields(pixels, "rvl", depth_max=65.535)[1] == data
    decoded = compressed_depth_msg_to_array(_compressed("16UC1; compressedDepth rvl", data))
    np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize(
    "pixels", [np.zeros((4, 5), np.uint16), np.full((4, 5), 42, np.uint16)], ids=["zero", "flat"]
)
def test_rvl_of_uniform_images(pixels):
    fmt, data = compressed_depth_fields(pixels, "rvl")
    np.testing.assert_array_equal(compressed_depth_msg_to_array(_compressed(fmt, data)), pixels)


# --- compressedDepth: size without decoding ------------------------------------------------------


@pytest.mark.parametrize("codec", ["png", "rvl"])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_size_from_the_headers_equals_the_decoded_size(codec, dtype):
    depth = _millimetres(np.random.default_rng(8), height=31, width=17).astype(dtype)
    msg = _compressed(*compressed_depth_fields(depth, codec))

    assert compressed_depth_size(msg) == (17, 31)
    assert compressed_depth_msg_to_array(msg).shape == (31, 17)


def test_size_is_read_without_decoding_pixels():
    # Header plus the PNG's signature and IHDR only: the size is known, the pixels are not.
    png = _png(np.zeros((4000, 3000), np.uint16))
    msg = _compressed("16UC1; compressedDepth png", HEADER.pack(0, 0.0, 0.0) + png[:33])
    assert compressed_depth_size(msg) == (3000, 4000)
    with pytest.raises(DepthConversionError, match="cannot be decoded: it is truncated"):
        compressed_depth_msg_to_array(msg)

    rvl = _compressed("16UC1; compressedDepth rvl", HEADER.pack(0, 0, 0) + struct.pack("<II", 9, 7))
    assert compressed_depth_size(rvl) == (9, 7)


# --- compressedDepth: bad messages ---------------------------------------------------------------


def _png_message(codec: str = "png") -> bytes:
    return compressed_depth_fields(_millimetres(np.random.default_rng(9)), codec)[1]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"the compressedDepth message has no data: the publisher sent an empty frame"),
        (bytes(7), r"truncated \(7 bytes, needs at least 12 for its header\)"),
        (bytes(12), r"truncated \(12 bytes, needs at least 38 for its header and the png image"),
        (_png_message()[:37], r"truncated \(37 bytes, needs at least 38 for its header and"),
        (_png_message()[: len(_png_message()) // 2], r"PNG of the compressedDepth message cannot"),
        (_png_message()[:-12], r"cannot be decoded: it is truncated or corrupted"),
        (_png(np.zeros((3, 3), np.uint16)), r"data starts with a PNG file instead of its 12-byte"),
        (bytes(12) + b"GIF89a" + bytes(40), r"holds no PNG file after its 12-byte header"),
        (bytes(12) + _png(np.zeros((3, 3), np.uint8)), r"PNG is 8-bit .* not 16-bit greyscale"),
        (bytes(12) + _png(np.zeros((3, 3, 3), np.uint16)), r"16-bit with PNG colour type 2"),
    ],
    ids=[
        "empty",
        "short-header",
        "header-only",
        "header-and-part-of-ihdr",
        "half-png",
        "png-without-end",
        "plain-png",
        "not-png",
        "8-bit-png",
        "colour-png",
    ],
)
def test_bad_compressed_depth_png_is_refused_with_a_clear_error(data, message):
    msg = _compressed("16UC1; compressedDepth png", data)
    with pytest.raises(DepthConversionError, match=message):
        compressed_depth_msg_to_array(msg)


def test_corrupted_png_is_refused():
    data = bytearray(_png_message())
    data[60] ^= 0xFF  # inside the compressed pixels: a zlib or CRC error
    msg = _compressed("16UC1; compressedDepth png", bytes(data))
    with pytest.raises(DepthConversionError, match="cannot be decoded: it is truncated or corrupt"):
        compressed_depth_msg_to_array(msg)


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (19, r"truncated \(19 bytes, needs at least 20 for its header and the rvl image's"),
        (20, r"rvl data \(0 bytes\) ends before its 851 pixels"),
        (0.5, r"rvl data \(\d+ bytes\) ends before its 851 pixels: the message is truncated"),
    ],
)
def test_truncated_rvl_is_refused(cut, message):
    data = _png_message("rvl")
    data = data[: int(len(data) * cut) if cut < 1 else cut]
    with pytest.raises(DepthConversionError, match=message):
        compressed_depth_msg_to_array(_compressed("16UC1; compressedDepth rvl", data))


def test_rvl_runs_beyond_the_image_are_refused():
    data = HEADER.pack(0, 0, 0) + struct.pack("<II", 2, 2) + _nibbles_to_rvl([5, 0])
    with pytest.raises(DepthConversionError, match="runs that do not add up to its 4 pixels"):
        compressed_depth_msg_to_array(_compressed("16UC1; compressedDepth rvl", data))
    empty = HEADER.pack(0, 0, 0) + struct.pack("<II", 0, 2)
    with pytest.raises(DepthConversionError, match="declares size 0x2: the message is corrupted"):
        compressed_depth_size(_compressed("16UC1; compressedDepth rvl", empty))


def test_32fc1_with_broken_quantization_parameters_is_refused():
    data = HEADER.pack(0, float("nan"), 1.0) + _png(np.ones((2, 2), np.uint16))
    with pytest.raises(DepthConversionError, match="quantization parameters .* cannot decode"):
        compressed_depth_msg_to_array(_compressed("32FC1; compressedDepth png", data))


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("16UC1; png compressed", r"is not a compressedDepth format: .* 'compressed' transport"),
        ("png", r"format 'png' is not a compressedDepth format"),
        ("8UC1", r"compressedDepth image has encoding '8UC1' .* remap 'depth'"),
        ("rgb8; compressedDepth png", r"encoding 'rgb8' .* remapped to a colour topic\?"),
        ("16UC1; compressedDepth jpeg", r"codec 'jpeg' .* set the publisher's compressedDepth"),
    ],
)
def test_non_depth_formats_are_refused(fmt, message):
    msg = _compressed(fmt, _png_message())
    with pytest.raises(DepthConversionError, match=message):
        compressed_depth_size(msg)
    with pytest.raises(DepthConversionError, match=message):
        compressed_depth_msg_to_array(msg)


def test_module_imports_without_ros():
    code = (
        "import sys; import lisa_ros.conversion.depth; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('rclpy', 'sensor_msgs', 'std_msgs', 'cv_bridge')); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
