"""Tests of lisa_ros.conversion.images with real sensor_msgs messages, serialized as on the wire.

Every round trip goes array -> Image/CompressedImage -> CDR bytes (rclpy.serialization, what a
subscriber receives) -> message -> array, and compares bytes, so a wrong byte order, a dropped
padding byte or a narrowed dtype fails.
"""

from __future__ import annotations

import array
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from lisa_ros.conversion.images import (
    ENCODINGS,
    ImageConversionError,
    array_to_image_fields,
    compressed_msg_to_array,
    fill_image_msg,
    image_msg_pixels,
    image_msg_to_array,
    to_rgb8,
)

try:
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header
except ImportError as error:  # the ROS-free checks at the end still run
    ROS_IMPORT_ERROR = f"rclpy/sensor_msgs not importable ({error}); run 'make setup'"
else:
    ROS_IMPORT_ERROR = ""

needs_ros = pytest.mark.skipif(bool(ROS_IMPORT_ERROR), reason=ROS_IMPORT_ERROR or "ROS available")

HEIGHT, WIDTH = 23, 37  # odd sizes: rows of odd byte length catch stride mistakes


def _random_pixels(
    encoding: str, rng: np.random.Generator, height: int = HEIGHT, width: int = WIDTH
) -> np.ndarray:
    """Pixels over the dtype's whole range (floats include inf, -0.0 and NaN)."""
    layout = ENCODINGS[encoding]
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    if layout.dtype.kind == "f":
        pixels = rng.normal(0, 1e3, size=shape).astype(layout.dtype)
        flat = pixels.reshape(-1)
        flat[:4] = [np.inf, -np.inf, -0.0, np.nan]
        return pixels
    info = np.iinfo(layout.dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=layout.dtype)


def _over_the_wire(msg):
    return deserialize_message(serialize_message(msg), type(msg))


def _assert_same_pixels(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype and actual.dtype.isnative
    assert actual.tobytes() == expected.tobytes()  # bit-exact, NaN payloads included


def _image(encoding: str, height: int, width: int, step: int, data: bytes, is_bigendian: int = 0):
    return Image(
        height=height,
        width=width,
        encoding=encoding,
        step=step,
        data=data,
        is_bigendian=is_bigendian,
    )


# --- raw images: exact round trips ------------------------------------------------------------


@needs_ros
@pytest.mark.parametrize("check_fields", [False, True])
@pytest.mark.parametrize("encoding", ["mono8", "bgr8", "16UC1", "32FC1"])
def test_pixels_written_into_a_message_are_what_it_carries(encoding, check_fields):
    # rclpy copies an array assigned to `data` unless fields are checked (ROS_PYTHON_CHECK_FIELDS):
    # either way the pixels written must be the message's.
    expected = _random_pixels(encoding, np.random.default_rng(7))
    msg = Image(header=Header(frame_id="camera"), check_fields=check_fields)
    pixels = image_msg_pixels(msg, HEIGHT, WIDTH, encoding)
    pixels[...] = expected
    received = _over_the_wire(msg)
    assert (received.height, received.width, received.encoding) == (HEIGHT, WIDTH, encoding)
    assert received.step == WIDTH * expected[0, 0].nbytes and received.is_bigendian == 0
    assert received.header.frame_id == "camera"
    _assert_same_pixels(image_msg_to_array(received), expected)
    assert isinstance(msg.data, array.array) and len(msg.data) == expected.nbytes


@needs_ros
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_round_trip_is_bit_exact_for_every_encoding(encoding):
    pixels = _random_pixels(encoding, np.random.default_rng(len(encoding)))
    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 1700000000, 123456789

    received = _over_the_wire(fill_image_msg(Image(), pixels, encoding, header=header))

    assert received.header == header
    assert (received.height, received.width, received.encoding) == (HEIGHT, WIDTH, encoding)
    assert received.step == WIDTH * pixels[0, 0].nbytes and received.is_bigendian == 0
    _assert_same_pixels(image_msg_to_array(received), pixels)


@needs_ros
@pytest.mark.parametrize(
    "encoding", ["rgb8", "bgra8", "mono8", "mono16", "16UC1", "32FC1", "16UC3", "64FC1"]
)
@pytest.mark.parametrize("padding", [1, 3, 64])
def test_row_padding_is_skipped(encoding, padding):
    pixels = _random_pixels(encoding, np.random.default_rng(padding))
    row_bytes = WIDTH * pixels[0, 0].nbytes
    step = row_bytes + padding  # odd paddings leave multi-byte rows unaligned
    rows = np.full((HEIGHT, step), 0xAB, dtype=np.uint8)  # junk in the padding
    rows[:, :row_bytes] = pixels.reshape(HEIGHT, -1).view(np.uint8)

    received = _over_the_wire(_image(encoding, HEIGHT, WIDTH, step, rows.tobytes()))

    _assert_same_pixels(image_msg_to_array(received), pixels)


@needs_ros
@pytest.mark.parametrize(
    "encoding", ["mono16", "16UC1", "16SC1", "rgb16", "32FC1", "32SC1", "64FC1", "32FC3"]
)
@pytest.mark.parametrize("padding", [0, 5])
def test_big_endian_data_comes_back_in_native_order(encoding, padding):
    pixels = _random_pixels(encoding, np.random.default_rng(7))
    big_endian = pixels.astype(pixels.dtype.newbyteorder(">"))
    row_bytes = WIDTH * pixels[0, 0].nbytes
    rows = np.zeros((HEIGHT, row_bytes + padding), dtype=np.uint8)
    rows[:, :row_bytes] = np.frombuffer(big_endian.tobytes(), dtype=np.uint8).reshape(
        HEIGHT, row_bytes
    )

    received = _over_the_wire(
        _image(encoding, HEIGHT, WIDTH, row_bytes + padding, rows.tobytes(), is_bigendian=1)
    )

    _assert_same_pixels(image_msg_to_array(received), pixels)


@needs_ros
def test_big_endian_flag_is_irrelevant_for_8_bit_data():
    pixels = _random_pixels("bgr8", np.random.default_rng(3))
    msg = fill_image_msg(Image(), pixels, "bgr8")
    msg.is_bigendian = 1
    _assert_same_pixels(image_msg_to_array(_over_the_wire(msg)), pixels)


@pytest.mark.parametrize(
    "container", [bytes, bytearray, memoryview, list, lambda b: array.array("B", b)]
)
def test_any_object_with_image_fields_and_any_byte_container_works(container):
    """No ROS needed: a plain object with the fields of sensor_msgs/Image is enough."""
    pixels = _random_pixels("mono16", np.random.default_rng(1))
    fields = array_to_image_fields(pixels, "mono16")
    fields["data"] = container(fields["data"])
    _assert_same_pixels(image_msg_to_array(SimpleNamespace(**fields)), pixels)


@needs_ros
def test_decoded_array_is_read_only_so_the_message_cannot_be_changed_through_it():
    msg = fill_image_msg(Image(), _random_pixels("rgb8", np.random.default_rng(0)), "rgb8")
    pixels = image_msg_to_array(msg)
    with pytest.raises(ValueError, match="read-only"):
        pixels[0, 0, 0] = 1


@needs_ros
def test_fill_image_msg_assigns_bytes_layout_and_keeps_the_header_when_none_is_given():
    msg = Image()
    msg.header.frame_id = "keep_me"
    pixels = _random_pixels("32FC1", np.random.default_rng(0), height=2, width=3)
    assert fill_image_msg(msg, pixels, "32FC1") is msg
    assert msg.header.frame_id == "keep_me"
    assert (msg.height, msg.width, msg.step, msg.is_bigendian) == (2, 3, 12, 0)
    assert bytes(msg.data) == pixels.astype("<f4").tobytes()


def test_array_to_image_fields_packs_a_padded_view_and_writes_little_endian():
    base = _random_pixels("16UC1", np.random.default_rng(2), width=50)
    padded_view = base[:, :WIDTH]  # not contiguous: rows 50 pixels apart
    big_endian = padded_view.astype(">u2")
    fields = array_to_image_fields(big_endian, "16UC1")
    assert fields["step"] == WIDTH * 2 and fields["is_bigendian"] == 0
    assert fields["data"] == padded_view.astype("<u2").tobytes()
    assert isinstance(fields["data"], bytes)


def test_single_channel_arrays_may_carry_a_trailing_channel_axis():
    pixels = _random_pixels("mono8", np.random.default_rng(4))
    fields = array_to_image_fields(pixels[..., None], "mono8")
    _assert_same_pixels(image_msg_to_array(SimpleNamespace(**fields)), pixels)


# --- compressed images ------------------------------------------------------------------------


def _smooth_bgr(height: int = 48, width: int = 64) -> np.ndarray:
    """A gradient: what jpeg keeps well, unlike noise."""
    y, x = np.mgrid[:height, :width]
    return np.stack(
        [x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1
    ).astype(np.uint8)


def _compressed(image: np.ndarray, extension: str, fmt: str):
    ok, encoded = cv2.imencode(extension, image)
    assert ok
    msg = CompressedImage(format=fmt, data=encoded.tobytes())
    msg.header.frame_id = "camera"
    return _over_the_wire(msg)


@needs_ros
@pytest.mark.parametrize(
    ("encoding", "fmt", "expected_encoding"),
    [
        ("bgr8", "png", "bgr8"),
        ("bgra8", "bgra8; png compressed bgra8", "bgra8"),
        ("mono8", "mono8; png compressed mono8", "mono8"),
        ("mono16", "png", "mono16"),
        ("16UC1", "16UC1; png compressed", "16UC1"),
        ("bgr16", "bgr16; png compressed bgr16", "bgr16"),
    ],
)
def test_png_is_decoded_exactly(encoding, fmt, expected_encoding):
    pixels = _random_pixels(encoding, np.random.default_rng(5))
    decoded, decoded_encoding = compressed_msg_to_array(_compressed(pixels, ".png", fmt))
    assert decoded_encoding == expected_encoding
    _assert_same_pixels(decoded, pixels)


@needs_ros
@pytest.mark.parametrize("fmt", ["jpeg", "rgb8; jpeg compressed bgr8", "jpg"])
def test_jpeg_colour_is_decoded_close_to_the_original_in_bgr_order(fmt):
    original = _smooth_bgr()
    decoded, encoding = compressed_msg_to_array(_compressed(original, ".jpg", fmt))
    assert encoding == "bgr8" and decoded.shape == original.shape and decoded.dtype == np.uint8
    error = np.abs(decoded.astype(int) - original.astype(int))
    assert error.mean() < 2.0 and error.max() < 24
    # A channel swap would be far off: the channels differ by up to 255 at the corners.
    swapped = np.abs(decoded[..., ::-1].astype(int) - original.astype(int))
    assert swapped.mean() > 20


@needs_ros
def test_grey_jpeg_is_mono8():
    original = _smooth_bgr()[..., 0]
    decoded, encoding = compressed_msg_to_array(
        _compressed(original, ".jpg", "mono8; jpeg compressed mono8")
    )
    assert encoding == "mono8" and decoded.shape == original.shape
    assert np.abs(decoded.astype(int) - original.astype(int)).mean() < 2.0


# --- to_rgb8: what the model sees -------------------------------------------------------------


def _check_rgb8(picture: np.ndarray, height: int, width: int) -> None:
    assert picture.shape == (height, width, 3) and picture.dtype == np.uint8
    assert picture.flags.c_contiguous


def test_rgb8_is_passed_through_and_a_padded_view_made_contiguous():
    pixels = _random_pixels("rgb8", np.random.default_rng(0))
    rows = np.zeros((HEIGHT, WIDTH * 3 + 5), np.uint8)
    rows[:, : WIDTH * 3] = pixels.reshape(HEIGHT, -1)
    view = image_msg_to_array(
        SimpleNamespace(
            height=HEIGHT,
            width=WIDTH,
            encoding="rgb8",
            is_bigendian=0,
            step=WIDTH * 3 + 5,
            data=rows.tobytes(),
        )
    )
    assert not view.flags.c_contiguous
    picture = to_rgb8(view, "rgb8")
    _check_rgb8(picture, HEIGHT, WIDTH)
    np.testing.assert_array_equal(picture, pixels)


@pytest.mark.parametrize(
    ("encoding", "to_rgb"),
    [
        ("bgr8", lambda p: p[..., ::-1]),
        ("8UC3", lambda p: p[..., ::-1]),
        ("rgba8", lambda p: p[..., :3]),
        ("bgra8", lambda p: p[..., 2::-1]),
        ("8UC4", lambda p: p[..., 2::-1]),
        ("mono8", lambda p: np.repeat(p[..., None], 3, axis=2)),
        ("8UC1", lambda p: np.repeat(p[..., None], 3, axis=2)),
    ],
)
def test_8_bit_colour_orders_and_grey_become_rgb(encoding, to_rgb):
    pixels = _random_pixels(encoding, np.random.default_rng(9))
    picture = to_rgb8(pixels, encoding)
    _check_rgb8(picture, HEIGHT, WIDTH)
    np.testing.assert_array_equal(picture, to_rgb(pixels))


@pytest.mark.parametrize(
    ("encoding", "order"),
    [("rgb16", [0, 1, 2]), ("bgr16", [2, 1, 0]), ("bgra16", [2, 1, 0]), ("rgba16", [0, 1, 2])],
)
def test_16_bit_colour_is_scaled_to_8_bits(encoding, order):
    pixels = _random_pixels(encoding, np.random.default_rng(6))
    pixels.reshape(-1)[:4] = [0, 65535, 257, 32896]  # -> 0, 255, 1, 128
    expected = np.rint(pixels[..., order] / 257.0).astype(np.uint8)
    for byte_order in "<>":
        picture = to_rgb8(pixels.astype(pixels.dtype.newbyteorder(byte_order)), encoding)
        _check_rgb8(picture, HEIGHT, WIDTH)
        np.testing.assert_array_equal(picture, expected)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1", "64FC1", "16SC1"])
def test_depth_is_stretched_over_its_finite_range_to_a_grey_picture(encoding):
    dtype = ENCODINGS[encoding].dtype
    depth = np.array([[1000, 1500, 3000], [2000, 1000, 1000]], dtype=dtype)
    if dtype.kind == "f":
        depth[1, 1:] = [np.nan, np.inf]  # invalid readings of a depth camera
    picture = to_rgb8(depth, encoding)
    _check_rgb8(picture, 2, 3)
    expected = np.array([[0, 64, 255], [128, 0, 0]], dtype=np.uint8)  # (v - 1000) * 255 / 2000
    for channel in range(3):
        np.testing.assert_array_equal(picture[..., channel], expected)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_mosaics_are_demosaiced_into_the_right_colours(pattern, bits):
    """A flat colour seen through each mosaic: a wrong pattern table swaps red and blue."""
    colour = {"r": 200, "g": 100, "b": 30}
    mosaic = np.zeros((8, 10), dtype=np.uint8)
    for row in range(2):  # the pattern names the first 2x2 block, row by row
        for column in range(2):
            mosaic[row::2, column::2] = colour[pattern[2 * row + column]]
    if bits == 16:
        mosaic = mosaic.astype(np.uint16) * 257
    picture = to_rgb8(mosaic, f"bayer_{pattern}{bits}")
    _check_rgb8(picture, 8, 10)
    np.testing.assert_array_equal(picture[2:-2, 2:-2], np.broadcast_to([200, 100, 30], (4, 6, 3)))


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv422_becomes_rgb(encoding):
    # RGB (200, 100, 30) in video-range BT.601: Y 121, U (Cb) 82, V (Cr) 177.
    y, u, v = 121, 82, 177
    chroma = np.tile([u, v], 3)  # U for even pixels, V for odd ones
    luma = np.full(6, y)
    # UYVY / YUYV
    pairs = np.stack([chroma, luma], -1) if encoding == "yuv422" else np.stack([luma, chroma], -1)
    packed = np.broadcast_to(pairs, (4, 6, 2)).astype(np.uint8)
    picture = to_rgb8(packed, encoding)
    _check_rgb8(picture, 4, 6)
    assert np.abs(picture.astype(int) - [200, 100, 30]).max() <= 3
    with pytest.raises(ImageConversionError, match="even width"):
        to_rgb8(packed[:, :5], encoding)


def test_constant_or_all_invalid_depth_gives_a_black_picture_not_a_division_error():
    assert not to_rgb8(np.full((4, 5), 7, np.uint16), "mono16").any()
    assert not to_rgb8(np.full((4, 5), np.nan, np.float32), "32FC1").any()


# --- bad input: clear errors ------------------------------------------------------------------


def _fields(**overrides):
    fields = dict(height=4, width=5, encoding="rgb8", is_bigendian=0, step=15, data=bytes(60))
    fields.update(overrides)
    return fields


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"encoding": "nv12"},
            r"unsupported image encoding 'nv12'; supported: rgb8, bgr8, .*yuv422.*bayer_.*16UC1",
        ),
        ({"encoding": ""}, r"unsupported image encoding ''"),
        ({"data": bytes(59)}, r"59 bytes, fewer than step x height = 15 x 4 = 60.*truncated"),
        (
            {"step": 14},
            r"step 14 is smaller than width x channels x bytes per channel = 5 x 3 x 1 = 15",
        ),
        (
            {"encoding": "32FC1", "step": 15},
            r"step 15 is smaller than .* 5 x 1 x 4 = 20 for encoding '32FC1'",
        ),
        ({"width": 0, "step": 0, "data": b""}, r"zero size \(0x4"),
        ({"height": 0, "data": b""}, r"zero size \(5x0"),
        ({"data": [300] * 60}, r"not a sequence of bytes \(0\.\.255\): values from 300 to 300"),
        ({"data": [0] * 59 + [-1]}, r"not a sequence of bytes \(0\.\.255\): values from -1 to 0"),
        ({"data": ["x"] * 60}, r"not a sequence of bytes"),
        ({"data": 12345}, r"not a byte buffer"),
    ],
)
def test_bad_raw_images_raise_a_clear_error(overrides, message):
    with pytest.raises(ImageConversionError, match=message):
        image_msg_to_array(SimpleNamespace(**_fields(**overrides)))


@needs_ros
def test_a_truncated_real_message_is_rejected():
    msg = fill_image_msg(Image(), np.zeros((480, 640, 3), np.uint8), "bgr8")
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(
        ImageConversionError, match="921599 bytes, fewer than step x height = 1920 x 480"
    ):
        image_msg_to_array(_over_the_wire(msg))


def test_image_conversion_error_is_a_value_error():
    assert issubclass(ImageConversionError, ValueError)


def _valid_png() -> bytes:
    return cv2.imencode(".png", _smooth_bgr())[1].tobytes()


@pytest.mark.parametrize(
    ("fmt", "data", "message"),
    [
        (
            "jpeg",
            b"not an image at all",
            r"cannot decode the 19-byte compressed image \(format 'jpeg'\)",
        ),
        ("png", None, r"cannot decode .* not a valid jpeg/png file or is truncated"),
        ("png", b"", r"compressed image has no data"),
        ("tiff", b"II*\x00", r"unsupported compressed image format 'tiff'; supported: jpeg, png"),
        ("16UC1; compressedDepth png", b"\x00" * 20, r"compressedDepth\) is not supported"),
    ],
)
def test_bad_compressed_images_raise_a_clear_error(fmt, data, message):
    if data is None:
        data = _valid_png()[:100]  # a truncated png
    with pytest.raises(ImageConversionError, match=message):
        compressed_msg_to_array(SimpleNamespace(format=fmt, data=data))


@pytest.mark.parametrize(
    ("array", "encoding", "message"),
    [
        (
            np.zeros((4, 5, 3), np.uint16),
            "rgb8",
            r"rgb8 image needs 3 channel\(s\) of uint8, got .* dtype uint16",
        ),
        (
            np.zeros((4, 5), np.uint8),
            "bgr8",
            r"bgr8 image needs 3 channel\(s\) of uint8, got an array of shape \(4, 5\)",
        ),
        (np.zeros((4, 5, 3), np.float32), "32FC1", r"32FC1 image needs 1 channel\(s\)"),
        (np.zeros((0, 5), np.uint8), "mono8", r"zero size"),
        (np.zeros((4, 5), np.uint8), "nv12", r"unsupported image encoding 'nv12'"),
        ([[1, 2]], "mono8", r"expected a numpy array"),
    ],
)
def test_arrays_that_do_not_match_their_encoding_are_refused(array, encoding, message):
    with pytest.raises(ImageConversionError, match=message):
        array_to_image_fields(array, encoding)
    with pytest.raises(ImageConversionError, match=message):
        to_rgb8(array, encoding)


def test_encodings_without_colour_meaning_cannot_become_rgb():
    with pytest.raises(ImageConversionError, match="cannot make an RGB picture from a 32FC3 image"):
        to_rgb8(np.zeros((2, 2, 3), np.float32), "32FC3")


def test_module_imports_without_ros():
    """The node's conversion code is part of the ROS-free core: it must not pull in rclpy."""
    code = (
        "import sys; import lisa_ros.conversion.images; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('rclpy', 'sensor_msgs', 'std_msgs', 'cv_bridge')); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
